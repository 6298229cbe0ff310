"""The buffer pool: one shared-memory segment holding the buffers and the control area.

Layout of the segment (all control words are native int64)::

    header      16 words   magic, version, state, geometry, offsets, failed slot, mode
    descriptors 5 x N      allocator id, sequence number, payload length, flags, holder
    queues      S x (8 + 2N)   per stage input queue: head, tail, closed, producers left,
                           next stamp, next out, kind, window; a ring of N buffer indices;
                           N resequencer slots (used when process modules share the queues)
    counters    I x 8      per module instance: held, buffers/bytes in, buffers/bytes out,
                           ns waiting for input, ns waiting for a free buffer, state
    topology    JSON       stage names, instances, allocators, modes
    buffers     N x size   page aligned

Queue 0 is the free list: the first stage's input queue, as in seed 002. Queue ``i`` is the
input of stage ``i``. How the queues and semaphores are implemented depends on the pipe's
modules (see :mod:`pipevault.pipe._queues`); the segment, descriptors and counters are the
same either way, so any process can read a pipe's status by its name.

Concurrency: descriptor words are written only by the module holding the buffer, counter
words only by their own instance; queue operations are full memory barriers, which orders
those writes between modules.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable

import posix_ipc

from pipevault.pipe import _names
from pipevault.pipe._layout import (
    C_BUFS_IN,
    C_BUFS_OUT,
    C_BYTES_IN,
    C_BYTES_OUT,
    C_CPU,
    C_HELD,
    C_WAIT_ALLOC,
    C_WAIT_IN,
    COUNTER_WORDS,
    FAILED,
    FINISHED,
    FREE,
    H_BUFSIZE,
    H_DATAOFF,
    H_FAILSLOT,
    H_MAGIC,
    H_MAXBUF,
    H_NALLOC,
    H_NSLOTS,
    H_NSTAGES,
    H_SHARED,
    H_STATE,
    H_TOPOLEN,
    H_TOPOOFF,
    H_VERSION,
    HEADER_WORDS,
    MAGIC,
    QUEUED,
    RUNNING,
    STOPPING,
    VERSION,
    data_offset,
    queue_base,
    topo_offset,
)
from pipevault.pipe._queues import LocalQueues, Queues, SharedQueues
from pipevault.pipe._topology import Topology
from pipevault.pipe.errors import PipeNotFound, PipeResourceError


class BufferPool:
    """A pipe's shared segment and its queues, created by the initiator or attached by name.

    Create with :meth:`create` (the initiator owns the kernel objects and must call
    :meth:`destroy`), or :meth:`attach` from any process (then :meth:`close`). Thread-safe:
    module instances call the queue operations concurrently.
    """

    def __init__(self, name: str, topo: Topology, mm: mmap.mmap,
                 monotonic: Callable[[], float]) -> None:
        self.name = name
        self.topology = topo
        self.monotonic = monotonic
        self._mm = mm
        n = topo.max_buffers
        self.n = n
        self.buffer_size = topo.buffer_size
        self.ctl = memoryview(mm).cast("B")[: data_offset(topo)].cast("q")
        self.data = memoryview(mm)[data_offset(topo):]
        self.d_alloc, self.d_seq, self.d_len, self.d_flags, self.d_holder = (
            HEADER_WORDS + k * n for k in range(5))
        self.q_base = [queue_base(topo, q) for q in range(topo.n_stages)]
        self.c_base = queue_base(topo, topo.n_stages)
        self.queues: Queues

    @classmethod
    def create(cls, name: str, topo: Topology, monotonic: Callable[[], float],
               shared: bool) -> BufferPool:
        """Create the segment (and, when ``shared``, the named semaphores) of pipe ``name``.

        ``shared`` pipes can have process modules and unbound modules attaching by name;
        thread-only pipes use in-process queues, which cost a third as much per handoff.

        Raises:
            PipeResourceError: the kernel refused (no space in /dev/shm, limits).
        """
        size = data_offset(topo) + topo.max_buffers * topo.buffer_size
        try:
            shm = posix_ipc.SharedMemory(_names.shm_name(name), posix_ipc.O_CREX, size=size)
            mm = mmap.mmap(shm.fd, size)
            shm.close_fd()
        except (posix_ipc.Error, OSError, ValueError) as exc:
            raise PipeResourceError(f"cannot create pipe {name}: {exc}") from exc
        # Pages are not touched in advance: the free list is a stack, so a pipe that keeps up
        # uses a handful of buffers again and again, and faulting in all of them up front (a
        # 64 MiB memset for the default pool) would cost more than the faults it saves.
        pool = cls(name, topo, mm, monotonic)
        pool._format(shared)
        try:
            pool.queues = SharedQueues.create(pool) if shared else LocalQueues(pool)
        except (posix_ipc.Error, OSError, ValueError) as exc:
            pool.destroy()
            raise PipeResourceError(f"cannot create the semaphores of pipe {name}: {exc}") from exc
        return pool

    @classmethod
    def attach(cls, name: str, monotonic: Callable[[], float], status_only: bool = False) -> BufferPool:
        """Attach to the running pipe ``name`` from any process on this machine.

        With ``status_only`` the pool serves status reads only (any pipe allows that);
        otherwise the pipe must have been created ``shared``.

        Raises:
            PipeNotFound: no such pipe, it is being torn down, or it takes no attachments.
        """
        try:
            shm = posix_ipc.SharedMemory(_names.shm_name(name))
            mm = mmap.mmap(shm.fd, shm.size)
            shm.close_fd()
        except posix_ipc.ExistentialError as exc:
            raise PipeNotFound(f"no running pipe named {name}") from exc
        head = memoryview(mm)[: HEADER_WORDS * 8].cast("q")
        magic, version, shared = head[H_MAGIC], head[H_VERSION], head[H_SHARED]
        topo_raw = bytes(mm[head[H_TOPOOFF]: head[H_TOPOOFF] + head[H_TOPOLEN]])
        head.release()
        if magic != MAGIC or version != VERSION:
            mm.close()
            raise PipeNotFound(f"{name} is not a pipevault pipe of layout {VERSION}")
        pool = cls(name, Topology.from_json(topo_raw), mm, monotonic)
        if status_only:
            return pool
        if not shared:
            pool.close()
            raise PipeNotFound(f"pipe {name} runs thread modules only and takes no attachments")
        try:
            pool.queues = SharedQueues.attach(pool)
        except posix_ipc.ExistentialError as exc:
            pool.close()
            raise PipeNotFound(f"pipe {name} is being torn down") from exc
        return pool

    def _format(self, shared: bool) -> None:
        topo, ctl, n = self.topology, self.ctl, self.n
        raw = topo.to_json()
        ctl[H_VERSION], ctl[H_STATE] = VERSION, RUNNING
        ctl[H_MAXBUF], ctl[H_BUFSIZE] = n, topo.buffer_size
        ctl[H_NSTAGES], ctl[H_NSLOTS], ctl[H_NALLOC] = topo.n_stages, topo.n_slots, topo.n_allocators
        ctl[H_DATAOFF], ctl[H_TOPOOFF], ctl[H_TOPOLEN] = data_offset(topo), topo_offset(topo), len(raw)
        ctl[H_FAILSLOT], ctl[H_SHARED] = -1, int(shared)
        self._mm[topo_offset(topo): topo_offset(topo) + len(raw)] = raw
        for i in range(n):
            ctl[self.d_holder + i] = FREE
            ctl[self.d_alloc + i] = -1
        # The magic last: the segment exists (by name) from its creation on, and an attach
        # (`pipevault status` reads every pipe's) must not find a magic before the topology
        # it reads next is written (it found zeros and failed on their JSON).
        ctl[H_MAGIC] = MAGIC

    def close(self) -> None:
        """Unmap the segment in this process. Buffers must not be used afterwards."""
        queues = getattr(self, "queues", None)
        if queues is not None:
            queues.close()
        self.ctl.release()
        self.data.release()
        try:
            self._mm.close()
        except BufferError:
            # A module kept a view of a buffer; the mapping goes when that view is collected.
            pass

    def destroy(self) -> None:
        """Close and remove the segment and semaphores (initiator only). Idempotent."""
        queues = getattr(self, "queues", None)
        self.close()
        if isinstance(queues, SharedQueues):
            queues.unlink()
        try:
            posix_ipc.unlink_shared_memory(_names.shm_name(self.name))
        except posix_ipc.ExistentialError:
            pass

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

    def counter(self, slot: int, word: int) -> int:
        """The index in ``ctl`` of counter ``word`` of instance ``slot``."""
        return self.c_base + slot * COUNTER_WORDS + word

    def buffer_view(self, idx: int) -> memoryview:
        """A writable view of the whole of buffer ``idx`` (``buffer_size`` bytes)."""
        off = idx * self.buffer_size
        return self.data[off: off + self.buffer_size]


__all__ = [
    "COUNTER_WORDS",
    "C_BUFS_IN",
    "C_BUFS_OUT",
    "C_BYTES_IN",
    "C_BYTES_OUT",
    "C_CPU",
    "C_HELD",
    "C_WAIT_ALLOC",
    "C_WAIT_IN",
    "FAILED",
    "FINISHED",
    "FREE",
    "H_FAILSLOT",
    "H_STATE",
    "QUEUED",
    "RUNNING",
    "STOPPING",
    "BufferPool",
]
