"""The stage queues, the free list and the counting semaphores of a pipe, in two forms.

:class:`SharedQueues` keep everything in the shared segment with named POSIX semaphores, so
process modules (and unbound modules attaching by the pipe's name) take part: a ring of
buffer indices per queue with a semaphore counting its items and one used as its mutex
(left out when the queue has one producer and one consumer), a quota semaphore per
allocator starting at ``max_buffers // n_allocators``, a window semaphore per sequencing
queue. :class:`LocalQueues` serve pipes whose modules are all threads of one process, with
``queue.SimpleQueue`` and C-level semaphores: the same rules at about a third of the cost
per handoff (``research/pipebench.md`` section 1).

Both implement :class:`Queues`. Every blocking wait looks at the pipe's state every
``POLL_S`` seconds and raises :class:`PipeStopped` once the pipe is stopping or failed, so a
dead module (even one killed while holding a queue's mutex) can never hang the others.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from typing import TYPE_CHECKING, Any, Protocol

import posix_ipc

from pipevault.pipe import _names
from pipevault.pipe._layout import (
    H_STATE,
    POLL_S,
    Q_CLOSED,
    Q_HEAD,
    Q_KIND,
    Q_NEXTOUT,
    Q_PRODUCERS,
    Q_STAMP,
    Q_TAIL,
    Q_WINDOW,
    QUEUE_HEADER,
    RUNNING,
)
from pipevault.pipe.errors import PipeStopped

if TYPE_CHECKING:
    from pipevault.pipe._pool import BufferPool


class Queues(Protocol):
    """Queue operations on buffer indices. ``counter`` is the control word that accumulates
    nanoseconds spent blocked (-1: not counted)."""

    def take(self, q: int, counter: int) -> int:
        """Next index from queue ``q`` (the free list when 0), blocking; -1 once the queue is
        closed and drained. Raises PipeStopped."""
        ...

    def put(self, q: int, idx: int) -> None:
        """Append ``idx`` to queue ``q``, stamping its sequence number if ``q`` sequences."""
        ...

    def put_in_order(self, q: int, idx: int, seq: int) -> None:
        """Resequencer: release ``idx`` (``seq``; a skip when ``idx`` < 0) to queue ``q`` once
        every earlier sequence number has arrived, returning window tokens upstream."""
        ...

    def producer_done(self, q: int) -> None:
        """One producer of ``q`` finished; the last one closes the queue."""
        ...

    def depth(self, q: int) -> int:
        """Items waiting in ``q`` (snapshot)."""
        ...

    def acquire_quota(self, allocator: int, counter: int) -> None:
        """Take one buffer of ``allocator``'s quota, blocking. Raises PipeStopped."""
        ...

    def release_quota(self, allocator: int) -> None:
        """Give one buffer back to ``allocator``'s quota."""
        ...

    def acquire_window(self, q: int, counter: int) -> None:
        """Take a place in the reorder window of sequencing queue ``q``. Raises PipeStopped."""
        ...

    def close(self) -> None:
        """Release this process's handles."""
        ...


class _Waiter:
    """Stop-aware blocking shared by both forms."""

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        self.ctl = pool.ctl
        self.monotonic = pool.monotonic

    def _stopped(self) -> PipeStopped:
        return PipeStopped(f"pipe {self.pool.name} stopped")

    def _blocked_since(self, t0: float, counter: int) -> None:
        if counter >= 0:
            self.ctl[counter] += int((self.monotonic() - t0) * 1e9)


class SharedQueues(_Waiter):
    """Queues in the shared segment with named POSIX semaphores (process modules allowed)."""

    def __init__(self, pool: BufferPool, sems: dict[str, Any]) -> None:
        super().__init__(pool)
        topo = pool.topology
        self.sems = sems
        self.n = pool.n
        self.base = pool.q_base
        self.items = [sems[f"q{q}.items"] for q in range(topo.n_stages)]
        self.locks = [sems.get(f"q{q}.lock") for q in range(topo.n_stages)]
        self.windows = [sems.get(f"q{q}.window") for q in range(topo.n_stages)]
        self.quotas = [sems[f"a{k}.quota"] for k in range(topo.n_allocators)]
        self.d_seq = pool.d_seq

    @staticmethod
    def _wanted(pool: BufferPool) -> dict[str, int]:
        topo = pool.topology
        wanted = {}
        for q in range(topo.n_stages):
            wanted[f"q{q}.items"] = topo.max_buffers if q == 0 else 0
            if not _single_ended(pool, q):
                wanted[f"q{q}.lock"] = 1
            if topo.windowed(q):
                wanted[f"q{q}.window"] = topo.window(q)
        for k in range(topo.n_allocators):
            wanted[f"a{k}.quota"] = topo.quota
        return wanted

    @classmethod
    def create(cls, pool: BufferPool) -> SharedQueues:
        """Initialise the rings in the segment and create the pipe's semaphores."""
        topo, ctl, n = pool.topology, pool.ctl, pool.n
        q0 = pool.q_base[0]
        for i in range(n):
            ctl[q0 + QUEUE_HEADER + i] = i
        ctl[q0 + Q_TAIL] = n
        for q in range(1, topo.n_stages):
            base = pool.q_base[q]
            ctl[base + Q_PRODUCERS] = topo.stages[q - 1].instances
            ctl[base + Q_KIND] = (1 if topo.stamps(q) else 0) | (2 if topo.reorders(q) else 0)
            ctl[base + Q_WINDOW] = topo.window(q) if topo.windowed(q) else 0
        sems: dict[str, Any] = {}
        try:
            for what, value in cls._wanted(pool).items():
                sems[what] = posix_ipc.Semaphore(_names.sem_name(pool.name, what), posix_ipc.O_CREX,
                                                 initial_value=value)
        except BaseException:
            _unlink(pool.name, sems)
            raise
        return cls(pool, sems)

    @classmethod
    def attach(cls, pool: BufferPool) -> SharedQueues:
        """Open the semaphores of a running shared pipe. Raises posix_ipc.ExistentialError."""
        sems = {what: posix_ipc.Semaphore(_names.sem_name(pool.name, what))
                for what in cls._wanted(pool)}
        return cls(pool, sems)

    def close(self) -> None:
        for s in self.sems.values():
            try:
                s.close()
            except posix_ipc.Error:
                pass

    def unlink(self) -> None:
        """Remove the semaphores (initiator only)."""
        _unlink(self.pool.name, self.sems)

    def _wait(self, sem: Any, counter: int) -> None:
        try:
            sem.acquire(0)
            return
        except posix_ipc.BusyError:
            pass
        ctl, t0 = self.ctl, self.monotonic()
        try:
            while True:
                if ctl[H_STATE] != RUNNING:
                    raise self._stopped()
                try:
                    sem.acquire(POLL_S)
                    return
                except posix_ipc.BusyError:
                    continue
        finally:
            self._blocked_since(t0, counter)

    def _push(self, q: int, idx: int) -> None:
        """Append ``idx`` to ring ``q``; the caller holds the mutex (or is the only producer)."""
        base, ctl = self.base[q], self.ctl
        if ctl[base + Q_KIND] & 1:
            ctl[self.d_seq + idx] = ctl[base + Q_STAMP]
            ctl[base + Q_STAMP] += 1
        tail = ctl[base + Q_TAIL]
        ctl[base + QUEUE_HEADER + tail % self.n] = idx
        ctl[base + Q_TAIL] = tail + 1

    def put(self, q: int, idx: int) -> None:
        lock = self.locks[q]
        if lock is None:
            self._push(q, idx)
        else:
            self._wait(lock, -1)
            try:
                self._push(q, idx)
            finally:
                lock.release()
        self.items[q].release()

    def put_in_order(self, q: int, idx: int, seq: int) -> None:
        n, ctl, base = self.n, self.ctl, self.base[q]
        held = base + QUEUE_HEADER + n
        released = skipped = 0
        lock = self.locks[q]
        assert lock is not None, "a reordering queue has several producers"
        self._wait(lock, -1)
        try:
            if seq != ctl[base + Q_NEXTOUT]:
                ctl[held + seq % n] = idx + 1 if idx >= 0 else -1
            else:
                h, nxt = idx + 1 if idx >= 0 else -1, seq
                while h != 0:
                    if h > 0:
                        self._push(q, h - 1)
                        released += 1
                    else:
                        skipped += 1
                    ctl[held + nxt % n] = 0
                    nxt += 1
                    h = ctl[held + nxt % n]
                ctl[base + Q_NEXTOUT] = nxt
        finally:
            lock.release()
        for _ in range(released):
            self.items[q].release()
        self._return_places(q, released, skipped)

    def _return_places(self, q: int, released: int, skipped: int) -> None:
        """Give window places back: for dropped items always, for released ones where they
        leave their run of parallel stages."""
        topo = self.pool.topology
        places = skipped + (released if topo.closes_window(q) else 0)
        if places:
            window = self.windows[topo.window_of(q)]
            assert window is not None, "a run of parallel stages always opens with a window"
            for _ in range(places):
                window.release()

    def take(self, q: int, counter: int) -> int:
        self._wait(self.items[q], counter)
        base, ctl = self.base[q], self.ctl
        lock = self.locks[q]
        if lock is not None:
            self._wait(lock, -1)
        try:
            head, tail = ctl[base + Q_HEAD], ctl[base + Q_TAIL]
            if head == tail:
                idx = -1
            elif q == 0:
                # The free list is a stack: the buffer freed last is reused first, so a pipe
                # with few buffers in flight keeps working on cache-hot memory.
                idx = int(ctl[base + QUEUE_HEADER + (tail - 1) % self.n])
                ctl[base + Q_TAIL] = tail - 1
            else:
                idx = int(ctl[base + QUEUE_HEADER + head % self.n])
                ctl[base + Q_HEAD] = head + 1
        finally:
            if lock is not None:
                lock.release()
        if idx < 0:
            # Closed: pass the wake-up on so every other instance of the stage ends too.
            self.items[q].release()
        return idx

    def producer_done(self, q: int) -> None:
        base, lock = self.base[q], self.locks[q]
        if lock is not None:
            self._wait(lock, -1)
        try:
            self.ctl[base + Q_PRODUCERS] -= 1
            last = self.ctl[base + Q_PRODUCERS] == 0
            if last:
                self.ctl[base + Q_CLOSED] = 1
        finally:
            if lock is not None:
                lock.release()
        if last:
            self.items[q].release()

    def depth(self, q: int) -> int:
        base = self.base[q]
        return int(self.ctl[base + Q_TAIL] - self.ctl[base + Q_HEAD])

    def acquire_quota(self, allocator: int, counter: int) -> None:
        self._wait(self.quotas[allocator], counter)

    def release_quota(self, allocator: int) -> None:
        self.quotas[allocator].release()

    def acquire_window(self, q: int, counter: int) -> None:
        window = self.windows[q]
        assert window is not None
        self._wait(window, counter)


def _single_ended(pool: BufferPool, q: int) -> bool:
    """Whether queue ``q`` has exactly one producer and one consumer (no mutex needed)."""
    topo = pool.topology
    return (q >= 1 and topo.stages[q - 1].instances == 1 and topo.stages[q].instances == 1
            and not topo.stamps(q) and not topo.reorders(q))


def _unlink(pipe: str, sems: dict[str, Any]) -> None:
    for what, s in sems.items():
        try:
            s.close()
        except posix_ipc.Error:
            pass
        try:
            posix_ipc.unlink_semaphore(_names.sem_name(pipe, what))
        except posix_ipc.ExistentialError:
            pass


class LocalQueues(_Waiter):
    """Queues for a pipe whose modules are all threads of this process."""

    def __init__(self, pool: BufferPool) -> None:
        super().__init__(pool)
        topo = pool.topology
        sem = multiprocessing.get_context("fork").Semaphore  # C SemLock; nothing is forked
        self.free = list(range(pool.n))  # a stack; list append/pop are atomic
        self.free_count = sem(pool.n)
        self.queues: list[queue.SimpleQueue[int]] = [queue.SimpleQueue() for _ in range(topo.n_stages)]
        self.locks = [threading.Lock() for _ in range(topo.n_stages)]
        self.stamps = [topo.stamps(q) for q in range(topo.n_stages)]
        self.next_stamp = [0] * topo.n_stages
        self.next_out = [0] * topo.n_stages
        self.held: list[dict[int, int]] = [{} for _ in range(topo.n_stages)]
        self.producers = [0] + [topo.stages[q - 1].instances for q in range(1, topo.n_stages)]
        self.quotas = [sem(topo.quota) for _ in range(topo.n_allocators)]
        self.windows = [sem(topo.window(q)) if topo.windowed(q) else None for q in range(topo.n_stages)]
        self.d_seq = pool.d_seq

    def close(self) -> None:
        return None

    def _sem_wait(self, sem: Any, counter: int) -> None:
        if sem.acquire(False):
            return
        ctl, t0 = self.ctl, self.monotonic()
        try:
            while not sem.acquire(True, POLL_S):
                if ctl[H_STATE] != RUNNING:
                    raise self._stopped()
        finally:
            self._blocked_since(t0, counter)

    def take(self, q: int, counter: int) -> int:
        if q == 0:
            self._sem_wait(self.free_count, counter)
            return self.free.pop()
        sq = self.queues[q]
        try:
            idx = sq.get_nowait()
        except queue.Empty:
            ctl, t0 = self.ctl, self.monotonic()
            try:
                while True:
                    try:
                        idx = sq.get(True, POLL_S)
                        break
                    except queue.Empty:
                        if ctl[H_STATE] != RUNNING:
                            raise self._stopped() from None
            finally:
                self._blocked_since(t0, counter)
        if idx < 0:
            sq.put(idx)  # the end marker stays for the other instances of the stage
        return idx

    def put(self, q: int, idx: int) -> None:
        if q == 0:
            self.free.append(idx)
            self.free_count.release()
        elif self.stamps[q]:
            with self.locks[q]:
                self.ctl[self.d_seq + idx] = self.next_stamp[q]
                self.next_stamp[q] += 1
                self.queues[q].put(idx)
        else:
            self.queues[q].put(idx)

    def put_in_order(self, q: int, idx: int, seq: int) -> None:
        released = skipped = 0
        held = self.held[q]
        with self.locks[q]:
            if seq != self.next_out[q]:
                held[seq] = idx
            else:
                nxt = seq
                item: int | None = idx
                while item is not None:
                    if item >= 0:
                        if self.stamps[q]:
                            self.ctl[self.d_seq + item] = self.next_stamp[q]
                            self.next_stamp[q] += 1
                        self.queues[q].put(item)
                        released += 1
                    else:
                        skipped += 1
                    nxt += 1
                    item = held.pop(nxt, None)
                self.next_out[q] = nxt
        topo = self.pool.topology
        places = skipped + (released if topo.closes_window(q) else 0)
        if places:
            window = self.windows[topo.window_of(q)]
            assert window is not None
            for _ in range(places):
                window.release()

    def producer_done(self, q: int) -> None:
        with self.locks[q]:
            self.producers[q] -= 1
            last = self.producers[q] == 0
        if last:
            self.queues[q].put(-1)

    def depth(self, q: int) -> int:
        return len(self.free) if q == 0 else self.queues[q].qsize()

    def acquire_quota(self, allocator: int, counter: int) -> None:
        self._sem_wait(self.quotas[allocator], counter)

    def release_quota(self, allocator: int) -> None:
        self.quotas[allocator].release()

    def acquire_window(self, q: int, counter: int) -> None:
        window = self.windows[q]
        assert window is not None
        self._sem_wait(window, counter)
