"""What a module sees: buffers and the four primitives of seed 002.

A module instance gets a :class:`StageContext`. Its primitives follow the seed's rules:

- ``alloc_buf()`` takes a buffer from the free list (queue 0). It blocks while the pool is
  empty or while this stage's allocator already holds ``max_buffers // n_allocators``.
- ``send_buf(buf)`` passes a buffer to the next stage's input queue. Tail stages may not.
- ``receive_buf()`` blocks until a buffer arrives and returns it, or None once every
  instance of the previous stage has finished and the queue is drained. First stages may not.
- ``free_buf(buf)`` returns a buffer to the free list and credits its original allocator,
  whichever module frees it.

Ownership: between ``alloc_buf``/``receive_buf`` and ``send_buf``/``free_buf`` the buffer is
the module's alone; afterwards its :class:`Buffer` object is poisoned and any use raises
:class:`UseAfterRelease`. Views a module sliced from ``buf.data`` itself cannot be revoked:
a module must not keep them past the send or free.

Parallel stages: an instance of a stage with several instances sends at most one buffer for
each buffer it receives (the resequencer after the stage orders outputs by the sequence
number of their input); receiving again without sending counts as dropping the input.
"""

from __future__ import annotations

from typing import Any

from pipevault.pipe import _pool as P
from pipevault.pipe.errors import (
    BufferMisuse,
    DoubleFree,
    ForeignBuffer,
    PipeStopped,
    RoleViolation,
    UseAfterRelease,
)


class Buffer:
    """One pool buffer lent to a module: ``data`` is the whole buffer, ``length`` the payload.

    Not thread-safe: a buffer belongs to one module instance at a time.
    """

    __slots__ = ("_ctx", "_view", "index")

    def __init__(self, ctx: StageContext, index: int) -> None:
        self._ctx = ctx
        self.index = index
        off = index * ctx._bsize
        self._view: memoryview | None = ctx._data[off: off + ctx._bsize]

    def _live(self) -> memoryview:
        if self._view is None:
            raise UseAfterRelease(f"stage {self._ctx.stage_name}: buffer {self.index} was already "
                                  "sent or freed by this module")
        return self._view

    @property
    def data(self) -> memoryview:
        """The whole buffer, writable (``capacity`` bytes)."""
        return self._live()

    @property
    def capacity(self) -> int:
        """Size of the buffer in bytes."""
        return self._ctx.pool.buffer_size

    @property
    def length(self) -> int:
        """Bytes of payload at the start of the buffer."""
        self._live()
        return int(self._ctx.pool.ctl[self._ctx.pool.d_len + self.index])

    @length.setter
    def length(self, n: int) -> None:
        ctx = self._ctx
        if self._view is None or not 0 <= n <= ctx._bsize:
            self._live()
            raise BufferMisuse(f"stage {ctx.stage_name}: payload length {n} does not fit "
                               f"a {ctx._bsize}-byte buffer")
        ctx._ctl[ctx._d_len + self.index] = n

    @property
    def view(self) -> memoryview:
        """The payload: ``data[:length]``."""
        return self._live()[: self.length]

    @property
    def seq(self) -> int:
        """The sequence number the queue into a parallel stage gave this buffer (0, 1, 2, ...
        in the order the previous stage sent them); meaningless for single-instance stages."""
        self._live()
        return int(self._ctx.pool.ctl[self._ctx.pool.d_seq + self.index])

    @property
    def flags(self) -> int:
        """Free-form flag bits carried with the buffer from stage to stage."""
        self._live()
        return int(self._ctx.pool.ctl[self._ctx.pool.d_flags + self.index])

    @flags.setter
    def flags(self, value: int) -> None:
        self._live()
        self._ctx.pool.ctl[self._ctx.pool.d_flags + self.index] = value

    def set(self, payload: Any) -> None:
        """Copy ``payload`` (any bytes-like) into the buffer and set ``length`` to its size."""
        view = self._live()
        n = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
        if n > len(view):
            raise BufferMisuse(f"stage {self._ctx.stage_name}: {n} bytes do not fit a "
                               f"{len(view)}-byte buffer")
        view[:n] = payload
        self.length = n

    def _poison(self) -> None:
        view, self._view = self._view, None
        if view is not None:
            try:
                view.release()
            except BufferError:
                pass  # a view derived from it is still exported; it dies with its owner

    def __repr__(self) -> str:
        state = "released" if self._view is None else f"length={self.length}"
        return f"<Buffer {self.index} of {self._ctx.pool.name} {state}>"


class StageContext:
    """The primitives for one instance of one stage. Used only by that instance's thread."""

    def __init__(self, pool: P.BufferPool, stage: int, instance: int) -> None:
        topo = pool.topology
        self.pool = pool
        self._queues = pool.queues
        # The hot paths below read these on every buffer: attributes of self, not of the pool.
        self._ctl, self._data, self._bsize = pool.ctl, pool.data, pool.buffer_size
        self._d_alloc, self._d_holder, self._d_len = pool.d_alloc, pool.d_holder, pool.d_len
        self._d_flags, self._d_seq = pool.d_flags, pool.d_seq
        self.stage = stage
        self.instance = instance
        self.stage_name = topo.stages[stage].name
        self.slot = topo.first_slot(stage) + instance
        self.is_first = stage == 0
        self.is_tail = stage == topo.n_stages - 1
        self._allocator = topo.allocator_of[stage]
        self._out = stage + 1
        self._out_windowed = not self.is_tail and topo.windowed(self._out)
        self._out_reorders = not self.is_tail and topo.reorders(self._out)
        self._pending: int | None = None  # sequence number owed to the resequencer
        c = pool.counter(self.slot, 0)
        self._c_held, self._c_wait_in, self._c_wait_alloc = c + P.C_HELD, c + P.C_WAIT_IN, c + P.C_WAIT_ALLOC
        self._c_bufs_in, self._c_bytes_in = c + P.C_BUFS_IN, c + P.C_BYTES_IN
        self._c_bufs_out, self._c_bytes_out = c + P.C_BUFS_OUT, c + P.C_BYTES_OUT
        self._c_cpu = c + P.C_CPU

    def record_cpu(self, ns: int) -> None:
        """Note the CPU nanoseconds this instance used (its runner calls this when it ends)."""
        self._ctl[self._c_cpu] = ns

    @property
    def fill_limit(self) -> int:
        """How many bytes a first stage should put in a buffer.

        Less than the capacity by a margin, so that a later stage that compresses or
        encrypts a buffer into a new one never needs more than one buffer (zstd, lz4 and
        AES-GCM expand incompressible data by well under this margin).
        """
        size = self.pool.buffer_size
        return size - (size // 64 + 4096)

    @property
    def stopping(self) -> bool:
        """True once the pipe is stopping or failed: a long-running module should return."""
        return self.pool.state != P.RUNNING

    def alloc_buf(self) -> Buffer:
        """Take a free buffer; blocks while none is free or this allocator is at its quota.

        Raises:
            RoleViolation: this stage was not declared as allocating.
            PipeStopped: the pipe stopped while waiting.
        """
        if self._allocator < 0:
            raise RoleViolation(f"stage {self.stage_name} was not declared as allocating buffers")
        queues, ctl = self._queues, self._ctl
        if ctl[P.H_STATE] != P.RUNNING:
            raise PipeStopped(f"pipe {self.pool.name} stopped")
        queues.acquire_quota(self._allocator, self._c_wait_alloc)
        try:
            idx = queues.take(0, self._c_wait_alloc)
        except BaseException:
            queues.release_quota(self._allocator)
            raise
        ctl[self._d_alloc + idx] = self._allocator
        ctl[self._d_holder + idx] = self.slot
        ctl[self._d_len + idx] = 0
        ctl[self._d_flags + idx] = 0
        ctl[self._c_held] += 1
        return Buffer(self, idx)

    def receive_buf(self) -> Buffer | None:
        """The next buffer from the previous stage, blocking; None at the end of the data.

        Raises:
            RoleViolation: called by a first stage.
            PipeStopped: the pipe stopped while waiting.
        """
        if self.is_first:
            raise RoleViolation(f"first stage {self.stage_name} may not receive buffers")
        if self._pending is not None:
            self._skip_pending()
        idx = self._queues.take(self.stage, self._c_wait_in)
        if idx < 0:
            return None
        ctl = self._ctl
        ctl[self._d_holder + idx] = self.slot
        ctl[self._c_held] += 1
        ctl[self._c_bufs_in] += 1
        ctl[self._c_bytes_in] += ctl[self._d_len + idx]
        if self._out_reorders:
            self._pending = int(ctl[self._d_seq + idx])
        return Buffer(self, idx)

    def send_buf(self, buf: Buffer) -> None:
        """Pass ``buf`` to the next stage; the module no longer owns it.

        Raises:
            RoleViolation: called by a tail stage.
            BufferMisuse: a parallel stage sent a second buffer for one input.
            ForeignBuffer, UseAfterRelease: ``buf`` is not held by this module.
        """
        if self.is_tail:
            raise RoleViolation(f"tail stage {self.stage_name} may not send buffers")
        idx = self._check_owned(buf, "send")
        ctl = self._ctl
        if self._out_reorders:
            if self._pending is None:
                raise BufferMisuse(f"parallel stage {self.stage_name} sent more than one buffer "
                                   "for one input buffer")
            seq, self._pending = self._pending, None
        if self._out_windowed:
            self._queues.acquire_window(self._out, self._c_wait_alloc)
        n = ctl[self._d_len + idx]
        ctl[self._d_holder + idx] = P.QUEUED
        ctl[self._c_held] -= 1
        ctl[self._c_bufs_out] += 1
        ctl[self._c_bytes_out] += n
        buf._poison()
        if self._out_reorders:
            self._queues.put_in_order(self._out, idx, seq)
        else:
            self._queues.put(self._out, idx)

    def free_buf(self, buf: Buffer) -> None:
        """Return ``buf`` to the free list, crediting the allocator that allocated it.

        Raises:
            DoubleFree, ForeignBuffer, UseAfterRelease: ``buf`` is not held by this module.
        """
        idx = self._check_owned(buf, "free")
        ctl = self._ctl
        allocator = int(ctl[self._d_alloc + idx])
        ctl[self._d_holder + idx] = P.FREE
        ctl[self._c_held] -= 1
        buf._poison()
        self._queues.put(0, idx)
        self._queues.release_quota(allocator)

    def finish(self) -> None:
        """Called once when the module returned normally: settle the resequencer and tell the
        next stage that this producer is done."""
        if self._pending is not None:
            self._skip_pending()
        if not self.is_tail:
            self._queues.producer_done(self._out)

    def _skip_pending(self) -> None:
        seq, self._pending = self._pending, None
        assert seq is not None
        self._queues.put_in_order(self._out, -1, seq)

    def _check_owned(self, buf: Buffer, verb: str) -> int:
        if type(buf) is not Buffer or buf._ctx.pool is not self.pool:
            raise ForeignBuffer(f"stage {self.stage_name} tried to {verb} a buffer of another pipe")
        idx = buf.index
        holder = int(self._ctl[self._d_holder + idx])
        if buf._view is not None and holder == self.slot:
            return idx  # the common case: one check each
        if buf._view is None:
            if holder == P.FREE and verb == "free":
                raise DoubleFree(f"stage {self.stage_name} freed buffer {idx} twice")
            raise UseAfterRelease(f"stage {self.stage_name} tried to {verb} buffer {idx} after "
                                  "sending or freeing it")
        raise ForeignBuffer(f"stage {self.stage_name} tried to {verb} buffer {idx}, which "
                            "it does not hold")
