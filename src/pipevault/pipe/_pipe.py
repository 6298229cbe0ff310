"""The pipe runner: creates the pool, starts every module instance, watches them, tears down.

The runner plays the local part of seed 002's Master_Monitor: it initiates the modules
(threads, or processes that attach to the pool by the pipe's name: forked from the
initiator or from a fork server, or spawned; see :func:`preload_process_modules`), watches
their state, and on any abnormal termination stops every module of the pipe, reports the
original error once, and removes the segment and semaphores.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from pipevault.clock import SYSTEM, Clock
from pipevault.errors import PipevaultError
from pipevault.events import JobFinished, Progress, Reporter
from pipevault.pipe import _names
from pipevault.pipe import _pool as P
from pipevault.pipe._context import StageContext
from pipevault.pipe._gc import BULK_THRESHOLD
from pipevault.pipe._module import StageSpec
from pipevault.pipe._status import PipeStatus, read_status
from pipevault.pipe._topology import StageShape, Topology
from pipevault.pipe.errors import (
    BufferMisuse,
    ModuleDied,
    ModuleFailed,
    PipeStopped,
)

STOP_GRACE_S = 0.6  # after a failure, how long modules get to notice before being killed
TICK_S = 0.05
_preloaded: list[str] | None = None  # what process modules import (see preload_process_modules)
_forkserver = False


def preload_process_modules(modules: Sequence[str], *, server: bool = False) -> None:
    """Have process modules start with ``modules`` imported, not in a fresh interpreter each.

    Otherwise each process module starts a fresh interpreter (spawn) that imports what it
    runs: about a second of CPU per process before it takes its first buffer. Process modules
    are forked from the initiator itself when, at the pipe's start, it runs no thread but the
    one starting them: it has imported ``modules`` already, so nothing is imported again. An
    initiator running other threads (a server) must not fork (a copy of a lock another thread
    holds stays held in the child); its modules are forked from a server that imported
    ``modules`` once, started here when other threads already run so that its import
    overlaps the job's planning; ``server=True`` starts it now regardless, for a caller that
    will run other threads when its pipes start. The first call in a process decides what
    that server imports. Returns at once.
    """
    global _preloaded
    if _preloaded is None:
        _preloaded = list(modules)
    if server or threading.active_count() > 1:
        _start_fork_server()


def _start_fork_server() -> None:
    global _forkserver
    if _forkserver or _preloaded is None:
        return
    ctx = multiprocessing.get_context("forkserver")
    # Never the default ['__main__']: the initiator's script must not run again in the server.
    ctx.set_forkserver_preload(_preloaded)
    multiprocessing.forkserver.ensure_running()
    _forkserver = True


def _process_context() -> (multiprocessing.context.ForkContext | multiprocessing.context.ForkServerContext
                            | multiprocessing.context.SpawnContext):
    """How process modules start: forked from here, from the fork server, or spawned."""
    if _preloaded is None:
        return multiprocessing.get_context("spawn")
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    _start_fork_server()
    return multiprocessing.get_context("forkserver")


@dataclass(frozen=True)
class PipeResult:
    """How a pipe ended: elapsed time, final per-stage status, and each instance's result."""

    name: str
    elapsed_s: float
    status: PipeStatus
    results: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def bytes_moved(self) -> int:
        """Payload bytes the tail stage received."""
        return self.status.stages[-1].bytes_in

    @property
    def bytes_read(self) -> int:
        """Payload bytes the first stage sent."""
        return self.status.stages[0].bytes_out


class Pipe:
    """A DataPipe on this machine.

    Build it with the stage list, then :meth:`run` it (blocking) or run it in a thread and
    call :meth:`stop` or :meth:`status` from elsewhere. A pipe runs once.

    Args:
        stages: first stage, middle stages, tail stage.
        buffer_size: bytes per buffer (64 KiB to 16 MiB, multiple of 4 KiB).
        max_buffers: buffers in the pool.
        reporter: receives :class:`Progress` every ``progress_interval`` seconds and a
            :class:`JobFinished` at the end.
        total_bytes: expected payload size, for progress percentages.
        shared: keep the queues in shared memory even when every stage is a thread, so
            unbound modules can attach by the pipe's name (always so with process stages).
    """

    def __init__(self, stages: Sequence[StageSpec], *, buffer_size: int = 1 << 20,
                 max_buffers: int = 64, name: str | None = None, clock: Clock = SYSTEM,
                 reporter: Reporter | None = None, progress_interval: float = 0.5,
                 total_bytes: int | None = None, job: str = "pipe", shared: bool = False) -> None:
        self.specs = tuple(stages)
        self.topology = Topology(tuple(StageShape(s.name, s.instances, s.allocates, s.mode)
                                       for s in self.specs), buffer_size, max_buffers)
        self.name = name or _names.new_pipe_name()
        self.clock = clock
        self.reporter = reporter
        self.progress_interval = progress_interval
        self.total_bytes = total_bytes
        self.job = job
        self.shared = shared
        self._pool: P.BufferPool | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._done: dict[int, Any] = {}
        self._errors: dict[int, BaseException] = {}
        self._started = threading.Event()
        self._changed = threading.Event()  # set whenever an instance ends or fails

    # -- public ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the pipe to stop; :meth:`run` then raises PipeStopped. Thread-safe."""
        self._stop.set()

    def status(self) -> PipeStatus | None:
        """A snapshot of the stages while running, None before start or after teardown."""
        with self._lock:
            return read_status(self._pool) if self._pool is not None else None

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until every module has been started (for callers running run() in a thread)."""
        return self._started.wait(timeout)

    def run(self) -> PipeResult:
        """Run the pipe to the end; blocks.

        Raises:
            PipevaultError: the first error any module raised (a PipevaultError it raised
                itself, ModuleFailed wrapping any other exception, ModuleDied for a process
                that died), after the whole pipe has stopped and been cleaned up.
            PipeStopped: :meth:`stop` was called.
        """
        _names.sweep_stale()
        shared = self.shared or any(s.mode == "process" for s in self.specs)
        pool = P.BufferPool.create(self.name, self.topology, self.clock.monotonic, shared)
        with self._lock:
            self._pool = pool
        threads: list[threading.Thread] = []
        procs: dict[int, tuple[BaseProcess, multiprocessing.connection.Connection]] = {}
        t0 = self.clock.monotonic()
        try:
            try:
                self._start(pool, threads, procs)
                self._started.set()
                failed_slot = self._watch(pool, threads, procs, t0)
            except BaseException:
                # Ctrl-C or a signal turned into an exception in the initiator: stop every
                # module before the segment goes away under them.
                pool.set_state(P.STOPPING)
                self._settle(threads, procs)
                raise
            elapsed = self.clock.monotonic() - t0
            if failed_slot is None and not self._stop.is_set():
                pool.set_state(P.FINISHED)
            self._settle(threads, procs)
            status = read_status(pool)
        finally:
            self._kill(procs)
            with self._lock:
                self._pool = None
            pool.destroy()
        if failed_slot is not None:
            raise self._original_error(failed_slot)
        if self._stop.is_set():
            raise PipeStopped(f"pipe {self.name} stopped on request")
        leaked = [s for s in status.stages if s.buffers_held]
        if leaked:
            raise BufferMisuse("stage(s) " + ", ".join(f"{s.name} ({s.buffers_held})" for s in leaked)
                               + " returned while still holding buffers")
        results = {spec.name: [self._done.get(self.topology.first_slot(i) + k)
                               for k in range(spec.instances)]
                   for i, spec in enumerate(self.specs)}
        if self.reporter is not None:
            self.reporter.emit(JobFinished(self.job, "completed", status.stages[0].bytes_out, elapsed,
                                           stages=tuple(s.figures() for s in status.stages)))
        return PipeResult(self.name, elapsed, status, results)

    # -- internals ---------------------------------------------------------------------------

    def _start(self, pool: P.BufferPool, threads: list[threading.Thread],
               procs: dict[int, tuple[BaseProcess, multiprocessing.connection.Connection]]) -> None:
        # Processes first: one forked from here must not find module threads running.
        mp = _process_context()
        instances = [(i, k, spec) for i, spec in enumerate(self.specs) for k in range(spec.instances)]
        for i, k, spec in instances:
            if spec.mode == "process":
                parent, child = mp.Pipe(duplex=False)
                proc = mp.Process(target=_process_main, name=f"pv:{spec.name}#{k}",
                                  args=(self.name, i, k, spec.factory, child, os.getpid()), daemon=True)
                with _main_not_reimported():
                    proc.start()
                child.close()
                procs[self.topology.first_slot(i) + k] = (proc, parent)
        for i, k, spec in instances:
            if spec.mode != "process":
                t = threading.Thread(target=self._thread_main, name=f"pv:{spec.name}#{k}",
                                     args=(pool, i, k, spec), daemon=True)
                t.start()
                threads.append(t)

    def _thread_main(self, pool: P.BufferPool, stage: int, instance: int, spec: StageSpec) -> None:
        ctx = StageContext(pool, stage, instance)
        cpu0 = time.thread_time_ns()
        try:
            result = spec.factory().run(ctx)
            ctx.finish()
        except BaseException as exc:
            self._record_error(pool, ctx.slot, exc)
        else:
            ctx.record_cpu(time.thread_time_ns() - cpu0)
            with self._lock:
                self._done[ctx.slot] = result
            self._changed.set()

    def _record_error(self, pool: P.BufferPool, slot: int, exc: BaseException) -> None:
        with self._lock:
            self._errors[slot] = exc
            if self._pool is not pool:
                return  # a straggler thread failed after teardown: the pool is gone, nothing to stop
            if not (isinstance(exc, PipeStopped) and pool.state != P.RUNNING):
                pool.set_state(P.FAILED, slot)
        self._changed.set()

    def _watch(self, pool: P.BufferPool, threads: list[threading.Thread],
               procs: dict[int, tuple[BaseProcess, multiprocessing.connection.Connection]],
               t0: float) -> int | None:
        """Wait until every instance ended or one failed; returns the failed slot or None."""
        n_slots = self.topology.n_slots
        conns = {conn: slot for slot, (_, conn) in procs.items()}
        sentinels = {proc.sentinel: slot for slot, (proc, _) in procs.items()}
        next_progress = t0 + self.progress_interval
        while True:
            if conns or sentinels:
                ready = multiprocessing.connection.wait([*conns, *sentinels], timeout=TICK_S)
            else:
                # Sleep until an instance ends or fails (or a tick passes, for progress and
                # stop requests): never spin, the modules need the GIL.
                self._changed.wait(TICK_S)
                self._changed.clear()
                ready = []
            for r in ready:
                if r in conns:
                    self._receive(pool, conns[r], conns, r)
            for r in ready:
                if r in sentinels:
                    slot = sentinels.pop(r)
                    proc = procs[slot][0]
                    proc.join(TICK_S)
                    conn = procs[slot][1]
                    if conn in conns and conn.poll():
                        self._receive(pool, slot, conns, conn)
                    with self._lock:
                        known = slot in self._done or slot in self._errors
                    if not known:
                        died = ModuleDied(f"process module {self._slot_name(slot)} (pid {proc.pid}) "
                                          f"died with {_exit_text(proc.exitcode)}")
                        self._record_error(pool, slot, died)
            if self._stop.is_set() and pool.state == P.RUNNING:
                pool.set_state(P.STOPPING)
            state = pool.state
            if state == P.FAILED:
                slot = int(pool.ctl[P.H_FAILSLOT])
                return slot if slot >= 0 else min(self._errors, default=0)
            with self._lock:
                finished = len(self._done) + len(self._errors)
            if finished == n_slots:
                return None if not self._errors or state == P.STOPPING else min(self._errors)
            now = self.clock.monotonic()
            if self.reporter is not None and now >= next_progress:
                next_progress = now + self.progress_interval
                self._progress(pool, now - t0)

    def _receive(self, pool: P.BufferPool, slot: int, conns: dict[Any, int], conn: Any) -> None:
        conns.pop(conn, None)
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return  # died before reporting: the sentinel path names it
        if kind == "done":
            with self._lock:
                self._done[slot] = payload
        else:
            self._record_error(pool, slot, payload)

    def _progress(self, pool: P.BufferPool, elapsed: float) -> None:
        assert self.reporter is not None
        status = read_status(pool)
        self.reporter.emit(Progress(self.job, status.stages[0].bytes_out, self.total_bytes,
                                    status.stages[-1].buffers_in, None, round(elapsed, 3),
                                    tuple(s.figures() for s in status.stages)))

    def _settle(self, threads: list[threading.Thread],
                procs: dict[int, tuple[BaseProcess, multiprocessing.connection.Connection]]) -> None:
        """Give every instance a moment to notice the end or the stop, then kill stragglers."""
        deadline = self.clock.monotonic() + STOP_GRACE_S
        for t in threads:
            t.join(max(0.0, deadline - self.clock.monotonic()))
        for proc, _ in procs.values():
            proc.join(max(0.0, deadline - self.clock.monotonic()))

    def _kill(self, procs: dict[int, tuple[BaseProcess, multiprocessing.connection.Connection]]) -> None:
        for proc, conn in procs.values():
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            conn.close()
            proc.close()

    def _slot_name(self, slot: int) -> str:
        for i, spec in enumerate(self.specs):
            first = self.topology.first_slot(i)
            if first <= slot < first + spec.instances:
                return f"{spec.name}#{slot - first}"
        return f"slot {slot}"

    def _original_error(self, slot: int) -> PipevaultError:
        with self._lock:
            exc = self._errors.get(slot)
        where = self._slot_name(slot)
        if exc is None:
            return ModuleDied(f"module {where} stopped the pipe without reporting an error")
        if isinstance(exc, PipevaultError):
            exc.add_note(f"in stage {where} of pipe {self.name}")
            return exc
        err = ModuleFailed(f"stage {where} failed: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


@contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start a module process without it running the initiator's main script again.

    ``spawn`` re-executes the parent's ``__main__`` in the child so that objects defined there
    can be unpickled; a script without an ``if __name__ == "__main__"`` guard would then start
    its whole job again inside the module process. Module factories come from importable
    modules, so the child is told there is no main module to prepare.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _release_fork_server() -> None:
    """Close this module's copy of the fork server's "alive" pipe end.

    The server exits when every holder of that end has closed it; multiprocessing gives one
    to each process it forks, so without this a SIGKILLed initiator would leave the server
    waiting for its modules and the modules (PDEATHSIG) waiting for the server. Module
    processes never start processes of their own, so they do not need it.
    """
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        os.close(fd)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


def _die_with_parent(initiator: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG), so a
    SIGKILLed initiator leaves no module process behind waiting on a pipe nobody stops.

    The parent is the initiator, or the fork server it started, which exits when the
    initiator does (its last connection closes)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.getppid()
    if parent == 1 or (parent != initiator and not _names.pid_alive(initiator)):
        os._exit(1)  # the initiator died before the request took effect


def _process_main(pipe: str, stage: int, instance: int, factory: Any,
                  conn: multiprocessing.connection.Connection, initiator: int) -> None:
    """Entry of a process module: attach to the pipe by name, run the module, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the initiator handles Ctrl-C for the pipe
    # A module forked from the initiator inherits its handlers: SIGTERM ends a module as it
    # ends a spawned one, whatever the initiator does with it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _release_fork_server()
    _die_with_parent(initiator)
    pool = P.BufferPool.attach(pipe, SYSTEM.monotonic)
    ctx = StageContext(pool, stage, instance)
    # This process lives for one job (see _gc); what it inherited or the server imported is
    # never garbage: frozen, a full collection neither walks it nor unshares its pages.
    gc.freeze()
    gc.set_threshold(BULK_THRESHOLD, *gc.get_threshold()[1:])
    try:
        result = factory().run(ctx)
        ctx.finish()
        # The whole process's: a module's own helper threads (readers, writers) count too.
        ctx.record_cpu(time.process_time_ns())
        conn.send(("done", result))
    except BaseException as exc:
        if not (isinstance(exc, PipeStopped) and pool.state != P.RUNNING):
            pool.set_state(P.FAILED, ctx.slot)
        try:
            conn.send(("error", exc))
        except Exception:
            conn.send(("error", ModuleFailed(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()
        pool.close()
