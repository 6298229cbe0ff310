"""The buffer pool: one shared-memory segment holding the buffers and the control area.

Layout of the segment (all control words are little-endian int64)::

    header      16 words   magic, version, state, geometry, offsets, failed slot
    descriptors 5 x N      allocator id, sequence number, payload length, flags, holder
    queues      S x (8 + 2N)   per stage input queue: head, tail, closed, producers left,
                           next stamp, next out, kind, window; a ring of N buffer indices;
                           N resequencer slots
    counters    I x 8      per module instance: held, buffers/bytes in, buffers/bytes out,
                           ns waiting for input, ns waiting for a free buffer, state
    topology    JSON       stage names, instances, allocators, modes
    buffers     N x size   page aligned

Queue 0 is the free list: the first stage's input queue, as in seed 002. Queue ``i`` is the
input of stage ``i``. Every queue has a named POSIX semaphore counting its items and one
used as its mutex; each allocator has a quota semaphore starting at ``max_buffers //
n_allocators``; each sequencing queue has a window semaphore. All are named after the pipe,
so a process attaches by the pipe's name alone.

Concurrency: queue words are only touched under the queue's mutex; descriptor words only by
the module holding the buffer; counter words only by their own instance. Semaphore
operations are full memory barriers, which orders these writes between processes.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Any

import posix_ipc

from pipevault.pipe import _names
from pipevault.pipe._topology import Topology
from pipevault.pipe.errors import PipeNotFound, PipeResourceError, PipeStopped

MAGIC = 0x5056_5049_5045_0001  # "PVPIPE" + layout 1
VERSION = 1
POLL_S = 0.05  # how often a blocked wait looks at the pipe state; bounds stop latency

RUNNING, STOPPING, FAILED, FINISHED = 0, 1, 2, 3

H_MAGIC, H_VERSION, H_STATE, H_MAXBUF, H_BUFSIZE, H_NSTAGES, H_NSLOTS, H_NALLOC = range(8)
H_DATAOFF, H_TOPOOFF, H_TOPOLEN, H_FAILSLOT, H_SIZE = range(8, 13)
HEADER_WORDS = 16

Q_HEAD, Q_TAIL, Q_CLOSED, Q_PRODUCERS, Q_STAMP, Q_NEXTOUT, Q_KIND, Q_WINDOW = range(8)
QUEUE_HEADER = 8

C_HELD, C_BUFS_IN, C_BYTES_IN, C_BUFS_OUT, C_BYTES_OUT, C_WAIT_IN, C_WAIT_ALLOC, C_STATE = range(8)
COUNTER_WORDS = 8

FREE, QUEUED = -1, -2  # holder values besides an instance slot


class BufferPool:
    """A pipe's shared segment and semaphores, created by the initiator or attached by name.

    Create with :meth:`create` (the initiator owns the kernel objects and must call
    :meth:`destroy`), or :meth:`attach` from any process (call :meth:`close`). Thread-safe:
    every method may be called by any module instance at once.
    """

    def __init__(self, name: str, topo: Topology, mm: mmap.mmap, owner: bool,
                 sems: dict[str, Any], monotonic: Callable[[], float]) -> None:
        self.name = name
        self.topology = topo
        self.owner = owner
        self._mm = mm
        self._sems = sems
        self.monotonic = monotonic
        n = topo.max_buffers
        self.n = n
        self.buffer_size = topo.buffer_size
        self.ctl = memoryview(mm).cast("B")[: _data_offset(topo)].cast("q")
        self.data = memoryview(mm)[_data_offset(topo):]
        self.d_alloc, self.d_seq, self.d_len, self.d_flags, self.d_holder = (
            HEADER_WORDS + k * n for k in range(5))
        self.q_base = [_queue_base(topo, q) for q in range(topo.n_stages)]
        self.c_base = _counter_base(topo)
        self.items = [sems[f"q{q}.items"] for q in range(topo.n_stages)]
        self.locks = [sems[f"q{q}.lock"] for q in range(topo.n_stages)]
        self.windows = [sems.get(f"q{q}.window") for q in range(topo.n_stages)]
        self.quotas = [sems[f"a{k}.quota"] for k in range(topo.n_allocators)]

    # -- life cycle -------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, topo: Topology, monotonic: Callable[[], float]) -> BufferPool:
        """Create the segment and semaphores of a new pipe called ``name``.

        Raises:
            PipeResourceError: the kernel refused (no space in /dev/shm, limits).
        """
        size = _data_offset(topo) + topo.max_buffers * topo.buffer_size
        sems: dict[str, Any] = {}
        try:
            shm = posix_ipc.SharedMemory(_names.shm_name(name), posix_ipc.O_CREX, size=size)
            mm = mmap.mmap(shm.fd, size)
            shm.close_fd()
            for q in range(topo.n_stages):
                sems[f"q{q}.items"] = _sem(name, f"q{q}.items", topo.max_buffers if q == 0 else 0)
                sems[f"q{q}.lock"] = _sem(name, f"q{q}.lock", 1)
                if topo.stamps(q):
                    sems[f"q{q}.window"] = _sem(name, f"q{q}.window", topo.window(q))
            for k in range(topo.n_allocators):
                sems[f"a{k}.quota"] = _sem(name, f"a{k}.quota", topo.quota)
        except (posix_ipc.Error, OSError, ValueError) as exc:
            _unlink_all(name, sems)
            raise PipeResourceError(f"cannot create pipe {name}: {exc}") from exc
        # Touch every page now so the first pass through the pipe does not pay page faults.
        step = mmap.PAGESIZE
        for off in range(0, size, step):
            mm[off] = 0
        pool = cls(name, topo, mm, True, sems, monotonic)
        pool._format()
        return pool

    @classmethod
    def attach(cls, name: str, monotonic: Callable[[], float]) -> BufferPool:
        """Attach to the running pipe ``name`` from any process on this machine.

        Raises:
            PipeNotFound: no such pipe (or it is being torn down).
        """
        try:
            shm = posix_ipc.SharedMemory(_names.shm_name(name))
            mm = mmap.mmap(shm.fd, shm.size)
            shm.close_fd()
        except posix_ipc.ExistentialError as exc:
            raise PipeNotFound(f"no running pipe named {name}") from exc
        head = memoryview(mm)[: HEADER_WORDS * 8].cast("q")
        if head[H_MAGIC] != MAGIC or head[H_VERSION] != VERSION:
            head.release()
            mm.close()
            raise PipeNotFound(f"{name} is not a pipevault pipe of layout {VERSION}")
        topo = Topology.from_json(bytes(mm[head[H_TOPOOFF]: head[H_TOPOOFF] + head[H_TOPOLEN]]))
        head.release()
        sems: dict[str, Any] = {}
        try:
            for q in range(topo.n_stages):
                for what in ("items", "lock") + (("window",) if topo.stamps(q) else ()):
                    sems[f"q{q}.{what}"] = posix_ipc.Semaphore(_names.sem_name(name, f"q{q}.{what}"))
            for k in range(topo.n_allocators):
                sems[f"a{k}.quota"] = posix_ipc.Semaphore(_names.sem_name(name, f"a{k}.quota"))
        except posix_ipc.ExistentialError as exc:
            mm.close()
            raise PipeNotFound(f"pipe {name} is being torn down") from exc
        return cls(name, topo, mm, False, sems, monotonic)

    def _format(self) -> None:
        topo, ctl, n = self.topology, self.ctl, self.n
        raw = topo.to_json()
        ctl[H_MAGIC], ctl[H_VERSION], ctl[H_STATE] = MAGIC, VERSION, RUNNING
        ctl[H_MAXBUF], ctl[H_BUFSIZE] = n, topo.buffer_size
        ctl[H_NSTAGES], ctl[H_NSLOTS], ctl[H_NALLOC] = topo.n_stages, topo.n_slots, topo.n_allocators
        ctl[H_DATAOFF], ctl[H_TOPOOFF], ctl[H_TOPOLEN] = _data_offset(topo), _topo_offset(topo), len(raw)
        ctl[H_FAILSLOT] = -1
        self._mm[_topo_offset(topo): _topo_offset(topo) + len(raw)] = raw
        for i in range(n):
            ctl[self.d_holder + i] = FREE
            ctl[self.d_alloc + i] = -1
        q0 = self.q_base[0]
        for i in range(n):
            ctl[q0 + QUEUE_HEADER + i] = i
        ctl[q0 + Q_TAIL] = n
        for q in range(1, topo.n_stages):
            ctl[self.q_base[q] + Q_PRODUCERS] = topo.stages[q - 1].instances
            ctl[self.q_base[q] + Q_KIND] = (1 if topo.stamps(q) else 0) | (2 if topo.reorders(q) else 0)
            ctl[self.q_base[q] + Q_WINDOW] = topo.window(q) if topo.stamps(q) else 0

    def close(self) -> None:
        """Unmap the segment in this process. Buffers must not be used afterwards."""
        self.ctl.release()
        self.data.release()
        for s in self._sems.values():
            s.close()
        try:
            self._mm.close()
        except BufferError:
            # A module kept a view of a buffer; the mapping goes when that view is collected.
            pass

    def destroy(self) -> None:
        """Close and remove the segment and semaphores (initiator only). Idempotent."""
        self.close()
        _unlink_all(self.name, self._sems)

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> int:
        """RUNNING, STOPPING, FAILED or FINISHED."""
        return int(self.ctl[H_STATE])

    def set_state(self, state: int, failed_slot: int = -1) -> None:
        """Move the pipe to ``state``; every blocked wait notices within ``POLL_S``."""
        if state == FAILED and self.ctl[H_FAILSLOT] < 0:
            self.ctl[H_FAILSLOT] = failed_slot
        if self.ctl[H_STATE] in (RUNNING, STOPPING):
            self.ctl[H_STATE] = state

    def wait(self, sem: Any, counter: int) -> None:
        """Take one unit of ``sem``, blocking; time spent blocked is added to word ``counter``.

        Raises:
            PipeStopped: the pipe left the RUNNING state while waiting.
        """
        try:
            sem.acquire(0)
            return
        except posix_ipc.BusyError:
            pass
        ctl = self.ctl
        t0 = self.monotonic()
        try:
            while True:
                if ctl[H_STATE] != RUNNING:
                    raise PipeStopped(f"pipe {self.name} stopped")
                try:
                    sem.acquire(POLL_S)
                    return
                except posix_ipc.BusyError:
                    continue
        finally:
            if counter >= 0:
                ctl[counter] += int((self.monotonic() - t0) * 1e9)

    def lock(self, q: int) -> None:
        """Take queue ``q``'s mutex (stop-aware, so a dead holder cannot hang anyone)."""
        self.wait(self.locks[q], -1)

    # -- queues (callers hold the queue's mutex where stated) -------------------------------

    def _push(self, q: int, idx: int) -> None:
        """Append ``idx`` to queue ``q``; mutex held. Stamps the sequence number if it sequences."""
        base, ctl = self.q_base[q], self.ctl
        if ctl[base + Q_KIND] & 1:
            ctl[self.d_seq + idx] = ctl[base + Q_STAMP]
            ctl[base + Q_STAMP] += 1
        tail = ctl[base + Q_TAIL]
        ctl[base + QUEUE_HEADER + tail % self.n] = idx
        ctl[base + Q_TAIL] = tail + 1

    def put(self, q: int, idx: int) -> None:
        """Enqueue buffer ``idx`` on queue ``q`` and wake one receiver."""
        self.lock(q)
        try:
            self._push(q, idx)
        finally:
            self.locks[q].release()
        self.items[q].release()

    def put_in_order(self, q: int, idx: int, seq: int) -> None:
        """Resequencer: enqueue ``idx`` (sequence ``seq``, or a skip when ``idx`` < 0) on queue
        ``q`` once every earlier sequence number has arrived; hold it until then.

        Each item leaving in order returns a window token to the sequencing queue before.
        """
        n, ctl, base = self.n, self.ctl, self.q_base[q]
        held = base + QUEUE_HEADER + n
        released = tokens = 0
        self.lock(q)
        try:
            if seq != ctl[base + Q_NEXTOUT]:
                ctl[held + seq % n] = idx + 1 if idx >= 0 else -1
            else:
                if idx >= 0:
                    self._push(q, idx)
                    released += 1
                nxt = seq + 1
                tokens += 1
                while (h := ctl[held + nxt % n]) != 0:
                    ctl[held + nxt % n] = 0
                    if h > 0:
                        self._push(q, h - 1)
                        released += 1
                    nxt += 1
                    tokens += 1
                ctl[base + Q_NEXTOUT] = nxt
        finally:
            self.locks[q].release()
        for _ in range(released):
            self.items[q].release()
        window = self.windows[q - 1]
        assert window is not None, "a reordering queue always follows a sequencing one"
        for _ in range(tokens):
            window.release()

    def take(self, q: int, counter: int) -> int:
        """Dequeue from queue ``q``, blocking; -1 when the queue is closed and drained."""
        self.wait(self.items[q], counter)
        base, ctl = self.q_base[q], self.ctl
        self.lock(q)
        try:
            head = ctl[base + Q_HEAD]
            if head == ctl[base + Q_TAIL]:
                idx = -1
            else:
                idx = int(ctl[base + QUEUE_HEADER + head % self.n])
                ctl[base + Q_HEAD] = head + 1
        finally:
            self.locks[q].release()
        if idx < 0:
            # Closed: pass the wake-up on so every other instance of the stage ends too.
            self.items[q].release()
        return idx

    def producer_done(self, q: int) -> None:
        """One producer of queue ``q`` has finished; the last one closes the queue."""
        base = self.q_base[q]
        self.lock(q)
        try:
            self.ctl[base + Q_PRODUCERS] -= 1
            last = self.ctl[base + Q_PRODUCERS] == 0
            if last:
                self.ctl[base + Q_CLOSED] = 1
        finally:
            self.locks[q].release()
        if last:
            self.items[q].release()

    def depth(self, q: int) -> int:
        """Buffers waiting in queue ``q`` (a racy snapshot, for status only)."""
        base = self.q_base[q]
        return int(self.ctl[base + Q_TAIL] - self.ctl[base + Q_HEAD])

    def counter(self, slot: int, word: int) -> int:
        """The index in ``ctl`` of counter ``word`` of instance ``slot``."""
        return self.c_base + slot * COUNTER_WORDS + word

    def buffer_view(self, idx: int) -> memoryview:
        """A writable view of the whole of buffer ``idx`` (``buffer_size`` bytes)."""
        off = idx * self.buffer_size
        return self.data[off: off + self.buffer_size]


def _sem(pipe: str, what: str, value: int) -> Any:
    return posix_ipc.Semaphore(_names.sem_name(pipe, what), posix_ipc.O_CREX, initial_value=value)


def _unlink_all(pipe: str, sems: dict[str, Any]) -> None:
    for what, s in sems.items():
        try:
            s.close()
        except posix_ipc.Error:
            pass
        try:
            posix_ipc.unlink_semaphore(_names.sem_name(pipe, what))
        except posix_ipc.ExistentialError:
            pass
    try:
        posix_ipc.unlink_shared_memory(_names.shm_name(pipe))
    except posix_ipc.ExistentialError:
        pass


def _queue_base(topo: Topology, q: int) -> int:
    return HEADER_WORDS + 5 * topo.max_buffers + q * (QUEUE_HEADER + 2 * topo.max_buffers)


def _counter_base(topo: Topology) -> int:
    return _queue_base(topo, topo.n_stages)


def _topo_offset(topo: Topology) -> int:
    return (_counter_base(topo) + topo.n_slots * COUNTER_WORDS) * 8


def _data_offset(topo: Topology) -> int:
    end = _topo_offset(topo) + len(topo.to_json())
    return (end + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
