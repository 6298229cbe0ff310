"""Errors of the DataPipe engine (exit codes 10-19).

::

    PipeError
      PipeSpecError          the pipe's description is invalid (stages, sizes, instances)
      BufferMisuse           a primitive was used against the rules
        DoubleFree           a buffer was freed twice
        UseAfterRelease      a buffer was touched after it was sent or freed
        ForeignBuffer        a buffer that this module does not hold (or another pipe's)
        RoleViolation        a first stage received, or a tail stage sent
      ModuleFailed           a module raised an exception that is not a PipevaultError
      ModuleDied             a process module died without reporting (SIGKILL, crash)
      PipeStopped            the pipe was stopped while a module was waiting
      PipeNotFound           no running pipe has that name (attach)
      PipeResourceError      the kernel refused shared memory or semaphores
"""

from __future__ import annotations

from pipevault.errors import PipevaultError


class PipeError(PipevaultError):
    """An error of the DataPipe engine."""

    code = "pipe.error"
    exit_code = 10


class PipeSpecError(PipeError):
    """The pipe's description is invalid."""

    code = "pipe.spec"
    exit_code = 11
    hint = "Fix the stage list, instance counts or buffer sizes named in the message."


class BufferMisuse(PipeError):
    """A buffer primitive was used against the DataPipe rules."""

    code = "pipe.buffer_misuse"
    exit_code = 12
    hint = "This is a bug in the module named in the message: each buffer is sent or freed once."


class DoubleFree(BufferMisuse):
    """A buffer was freed twice."""

    code = "pipe.double_free"


class UseAfterRelease(BufferMisuse):
    """A buffer was used after it was sent on or freed."""

    code = "pipe.use_after_release"


class ForeignBuffer(BufferMisuse):
    """A module passed a buffer it does not hold, or one from another pipe."""

    code = "pipe.foreign_buffer"


class RoleViolation(BufferMisuse):
    """A first stage called receive_buf, or a tail stage called send_buf."""

    code = "pipe.role"
    hint = "First stages allocate and send; tail stages receive and free."


class ModuleFailed(PipeError):
    """A module raised an unexpected exception; the pipe was stopped."""

    code = "pipe.module_failed"
    exit_code = 13
    hint = "The module's own error is shown above; nothing after the failure was kept."


class ModuleDied(PipeError):
    """A process module died without reporting (killed or crashed); the pipe was stopped."""

    code = "pipe.module_died"
    exit_code = 14
    hint = "Check the system log for the killed process (OOM killer, signal); run the job again."


class PipeStopped(PipeError):
    """The pipe was stopped while this module was waiting for a buffer."""

    code = "pipe.stopped"
    exit_code = 15
    hint = "The pipe was stopped on request or because another module failed."


class PipeNotFound(PipeError):
    """No running pipe has the given name."""

    code = "pipe.not_found"
    exit_code = 16
    hint = "List running pipes with `pipevault status`; the pipe may have finished."


class PipeResourceError(PipeError):
    """The kernel refused the shared memory or semaphores a pipe needs."""

    code = "pipe.resources"
    exit_code = 17
    hint = "Check free space in /dev/shm and the semaphore limits; lower max_buffers or buffer_size."


class CorruptInput(PipeError):
    """Data entering a decoding stage is not valid (truncated or damaged stream)."""

    code = "pipe.corrupt_input"
    exit_code = 18
    hint = "The input is damaged or not of the expected kind; check it was written by the matching stage."


class IntegrityError(PipeError):
    """Authenticated decryption failed: wrong key, or the data was altered."""

    code = "pipe.integrity"
    exit_code = 19
    hint = "Check that the key is the one used to encrypt; if it is, the data was altered."
