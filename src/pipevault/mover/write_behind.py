"""Restored files written by threads beside the restore's event handling.

Small files are written whole, a :class:`WriteBatch` of them per task of a few writer
threads (creating a file is kernel work that runs in parallel once the GIL is released).

Large files: writing their chunks (``pwrite`` into the page cache, about a second of kernel
time per gigabyte) in the restore's writer thread made its Python wait for the kernel and the
kernel for the Python. Here
the writes, and the attributes a file gets once its data is in, are queued as the events are
handled and handed to one thread per EVENTS buffer: one thread keeps them in order, so a
file's attributes are set, and its descriptor closed, after all of its data is written.

Every few megabytes of a large file, a thread of its own starts the write-back of its pages
(:class:`Writeback`): with the kernel's default thresholds (a tenth of memory) nothing
reaches the disk until the caller's final sync otherwise, which then waits for all of it;
started early, the device writes while we decode. Once a few dozen megabytes more have been
written, the same range's pages (clean by then) are dropped from the page cache: a restore
then reuses the memory it just wrote through instead of taking ever more, as a restore of a
terabyte would otherwise take all the cache (and, in a virtual machine that hands free memory
back to its host, fresh memory costs the most to write: 1 GB in 0.51-0.57 s with the drops,
1.7-2.4 s without, measured here).

Small files are too many for that: :class:`Flusher` writes out the whole target file system
(``syncfs``) from a thread of its own each time another 16 MiB of events was handled, so the
dirty pages of tens of thousands of small files and their inodes do not all wait for the end
(a caller's final sync then finds almost nothing to write).
"""

from __future__ import annotations

import ctypes
import os
import stat
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipevault.mover.errors import DestinationError
from pipevault.mover.paths import open_new_file

try:  # optional, as the format's extension is: the Python below is its specification
    from pipevault.mover import _fastio
except ImportError:  # pragma: no cover - built wherever the test suite runs
    _fastio = None  # type: ignore[assignment]
COMPILED = _fastio is not None

_EUID, _EGID = os.geteuid(), os.getegid()
WRITEBACK_EVERY = 8 << 20  # bytes of a file written between two starts of its write-back
DROP_AFTER = 32 << 20  # bytes written (to any file) between starting a range's write-back and dropping its pages
FLUSH_EVERY = 16 << 20  # bytes of events handled between two write-outs of the file system


def _load_syncfs() -> Any:
    """libc's ``syncfs`` (not in :mod:`os`), or None where the C library has none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_syncfs = _load_syncfs()


@dataclass
class Outcome:
    """What went wrong with the operations of one buffer: ``failed`` objects (key, why, the
    parts to remove) and ``warnings`` (key, message) for objects restored without an xattr."""

    failed: list[tuple[Any, str, tuple[str, ...]]] = field(default_factory=list)
    warnings: list[tuple[Any, str]] = field(default_factory=list)


class WriteBehind:
    """Ordered writes and attribute settings of large restored files, run by one thread.

    The restore thread queues operations (:meth:`write`, :meth:`finish_file`) while it
    handles the events of one EVENTS buffer, then calls :meth:`submit`: the data views
    queued must stay valid (the buffer kept) until the future it returns is done. A file
    descriptor given to :meth:`finish_file` belongs to this object from then on (closed
    after the attributes are set, or after a failed write).

    Used by one thread (the restore's); its operations run in another.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pv-pwrite")
        self._ops: list[tuple[Any, ...]] = []
        self._inflight: deque[Future[Outcome]] = deque()
        self._writeback = Writeback()

    def write(self, key: Any, fd: int, data: memoryview | bytes, offset: int, parts: tuple[str, ...]) -> None:
        """Queue writing ``data`` at ``offset`` of the file open as ``fd``."""
        self._ops.append((key, fd, data, offset, parts, None))

    def finish_file(self, key: Any, fd: int, header: Any, written: int, parts: tuple[str, ...]) -> None:
        """Queue setting the attributes of ``header`` on ``fd`` (its size when ``written``
        differs: trailing holes), then closing it."""
        self._ops.append((key, fd, header, written, parts, True))

    def submit(self) -> Future[Outcome] | None:
        """Hand the operations queued so far to the thread; None when there were none."""
        if not self._ops:
            return None
        ops, self._ops = self._ops, []
        future = self._pool.submit(_run, ops, self._writeback)
        self._inflight.append(future)
        return future

    def done(self, wait: bool = False) -> list[Outcome]:
        """The outcomes of the submitted batches that are done (all of them with ``wait``,
        after submitting what is queued), in order."""
        if wait:
            self.submit()
        out: list[Outcome] = []
        while self._inflight and (wait or self._inflight[0].done()):
            out.append(self._inflight.popleft().result())
        return out

    def close(self) -> None:
        """Run what was submitted to its end and stop the thread (queued operations of a
        failed job are dropped, their descriptors closed)."""
        for _key, fd, *_rest, finish in self._ops:
            if finish:
                os.close(fd)
        self._ops = []
        self._pool.shutdown(wait=True)
        self._writeback.close()


class Writeback:
    """Starts the write-back of large files' pages, in a thread of its own: starting it can
    block while the device's queue is full, and the writes must not wait for that. Each
    range is advised twice: when its write-back starts, and again (dropping its pages, then
    clean) once ``DROP_AFTER`` more bytes were written.

    :meth:`wrote` and :meth:`finished` are called by the one thread that writes the files.
    Each range waiting for its drop holds a descriptor of ours: at most DROP_AFTER over the
    smallest file written here (the restore's SMALL_RESTORE) of them, plus one per file.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pv-writeback")
        self._marks: dict[int, tuple[int, int]] = {}  # fd -> (where write-back last started, bytes since)
        self._written = 0  # bytes written so far, to any file
        self._due: deque[tuple[int, int, int]] = deque()  # (drop when written reaches, our fd, start)

    def wrote(self, fd: int, offset: int, n: int) -> None:
        """``n`` bytes were written at ``offset`` (a file's writes come in offset order)."""
        self._written += n
        start, pending = self._marks.get(fd, (offset, 0))
        pending += n
        if pending >= WRITEBACK_EVERY:
            self._start(fd, start)
            start, pending = offset + n, 0
        self._marks[fd] = (start, pending)
        self._drop(self._written)

    def finished(self, fd: int) -> None:
        """The file open as ``fd`` is complete (its descriptor is about to be closed)."""
        start, pending = self._marks.pop(fd, (0, 0))
        if pending:
            self._start(fd, start)

    def _start(self, fd: int, start: int) -> None:
        try:
            own = os.dup(fd)  # our own descriptor: the file's is closed soon
        except OSError:
            return  # (out of descriptors) advice only: the final sync writes the pages all the same
        self._pool.submit(_advise, own, start, False)
        self._due.append((self._written + DROP_AFTER, own, start))

    def close(self) -> None:
        """Wait for the write-backs started (not for the data to reach the disk); the ranges
        not yet dropped are advised once more (what is clean by then goes) and let go."""
        self._drop(None)
        self._pool.shutdown(wait=True)

    def _drop(self, written: int | None) -> None:
        """Advise, a last time, the ranges due once ``written`` bytes were (all: None)."""
        while self._due and (written is None or self._due[0][0] <= written):
            _when, own, begin = self._due.popleft()
            self._pool.submit(_advise, own, begin, True)


class Flusher:
    """Writes out the dirty pages of the file system holding ``fd`` while a restore runs, in a
    thread of its own (``syncfs`` blocks until the device has them; ctypes releases the
    interpreter lock meanwhile), once per ``every`` bytes reported to :meth:`wrote`.

    Advice only: where the C library has no ``syncfs`` nothing happens. :meth:`wrote` is
    called by one thread; :meth:`close` waits for a write-out under way and ends the thread.
    The thread starts with the first write-out, not before: a restore made before its pipe
    starts must leave the pipe's process modules free to fork (see pipevault.pipe).
    """

    def __init__(self, fd: int, every: int | None = None) -> None:
        self._fd = os.dup(fd)  # ours: the caller may close its descriptor first
        self._every, self._pending = every if every is not None else FLUSH_EVERY, 0
        self._wake = threading.Event()
        self._stopping = False
        self.flushes = 0
        self._thread: threading.Thread | None = None

    def wrote(self, n: int) -> None:
        """``n`` more bytes were handled; a write-out starts once ``every`` have (if none is
        under way: then the next one covers them)."""
        self._pending += n
        if self._pending >= self._every:
            self._pending = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pv-flush", daemon=True)
                self._thread.start()
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if _syncfs is not None:
                _syncfs(self._fd)  # its errors are the final sync's to report, not ours
            self.flushes += 1

    def close(self) -> None:
        """End the thread (after the write-out under way, if any) and close the descriptor."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        os.close(self._fd)


def _advise(fd: int, start: int, last: bool) -> None:
    """Start writing the dirty pages of the file open as ``fd``, from ``start`` to its end, to
    its device, without waiting for them, and drop those already clean; closes ``fd`` when
    ``last``.

    ``POSIX_FADV_DONTNEED`` is the one call in :mod:`os` that does this on Linux (it starts
    write-back of the range, then drops the pages already clean: the restore reads a restored
    file again only for a duplicate chunk, which the kernel then reads back from the disk;
    keeping all of them cached would only evict other pages).
    """
    try:
        os.posix_fadvise(fd, start, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass  # advice only: the data is written all the same, by the final sync at the latest
    finally:
        if last:
            os.close(fd)


def _run(ops: list[tuple[Any, ...]], writeback: Writeback) -> Outcome:
    """The thread's side: each write, or finishing of a file, in order."""
    out = Outcome()
    broken: set[Any] = set()  # objects a write failed for: their later operations are skipped
    for key, fd, data, offset_or_written, parts, finish in ops:
        if key in broken:
            if finish:
                writeback.finished(fd)
                os.close(fd)
            continue
        try:
            if finish:
                writeback.finished(fd)
                _finish(key, fd, data, offset_or_written, out)
            else:
                view = memoryview(data).cast("B")
                done = 0
                while done < len(view):
                    done += os.pwrite(fd, view[done:], offset_or_written + done)
                writeback.wrote(fd, offset_or_written, done)
        except OSError as exc:
            out.failed.append((key, f"cannot write it: {exc.strerror}", parts))
            broken.add(key)
    return out


def set_owner(fd: int, h: Any) -> None:
    """Give the file open as ``fd`` the owner in header ``h`` (as root; others keep theirs)."""
    if h.uid == _EUID and h.gid == _EGID:
        return  # a new file already belongs to us
    try:
        os.fchown(fd, h.uid, h.gid)
    except PermissionError:
        pass  # not root: the files stay the restoring user's


def _finish(key: Any, fd: int, h: Any, written: int, out: Outcome) -> None:
    try:
        if written != h.size:
            os.ftruncate(fd, h.size)  # restores trailing holes; data extents are already written
        for name, value in h.xattrs:
            try:
                os.setxattr(fd, name, value)
            except OSError as exc:
                out.warnings.append((key, f"extended attribute {name!r} not restored: {exc.strerror}"))
        set_owner(fd, h)
        os.fchmod(fd, stat.S_IMODE(h.mode))
        os.utime(fd, ns=(h.atime_ns, h.mtime_ns))
    finally:
        os.close(fd)


class WriteBatch:
    """Small files written by one writer-thread task: ``(dir fd, name, fresh, data, header,
    label)`` each; ``dirs``: the directory descriptors they use, one per directory, owned by
    the batch (closed by :func:`write_batch`, or :meth:`drop`); and the task's future once
    submitted (its result: each file's error or None)."""

    __slots__ = ("dirs", "files", "future", "size")

    def __init__(self) -> None:
        self.files: list[tuple[int, str, bool, bytearray, Any, str]] = []
        self.dirs: dict[tuple[str, ...], tuple[int, bool]] = {}
        self.size = 0
        self.future: Future[list[DestinationError | OSError | None]] | None = None

    def drop(self) -> None:
        """Close the directories of a batch that will not be written."""
        for dfd, _fresh in self.dirs.values():
            os.close(dfd)
        self.dirs.clear()


def write_batch(batch: WriteBatch, compiled: bool = COMPILED) -> list[DestinationError | OSError | None]:
    """Write each small file of a batch (in a writer thread); each one's error or None.

    Compiled, the whole batch is written with the interpreter lock released (the same calls
    as :func:`write_small`): the writer threads then run beside the thread handling events
    instead of taking turns with it at every call.
    """
    errors: list[DestinationError | OSError | None] = []
    try:
        if compiled:
            done = _fastio.write_files([(dfd, name, fresh, data, h.size, h.mode, h.uid, h.gid, h.atime_ns,
                                         h.mtime_ns, tuple(h.xattrs))
                                        for dfd, name, fresh, data, h, _label in batch.files])
            return [None if r is None else _error(r, item[5]) for r, item in zip(done, batch.files, strict=True)]
        for dfd, name, fresh, data, h, label in batch.files:
            try:
                write_small(dfd, name, fresh, data, h, label)
                errors.append(None)
            except (DestinationError, OSError) as exc:
                errors.append(exc)
    finally:
        batch.drop()
    return errors


def _error(outcome: tuple[int, int], label: str) -> DestinationError | OSError:
    """The exception :func:`write_small` raises for a compiled write's ``(kind, errno)``."""
    kind, err = outcome
    if kind == _fastio.IN_THE_WAY:
        return DestinationError(f"{label} exists in the target as a directory")
    if kind == _fastio.NOT_CREATED:
        return DestinationError(f"cannot create {label}: {os.strerror(err)}")
    return OSError(err, os.strerror(err))


def write_small(dfd: int, name: str, fresh: bool, data: bytearray, h: Any, label: str) -> None:
    """Create a small file whole, with its attributes, in directory ``dfd`` (the caller's;
    runs in a writer thread).

    Raises:
        DestinationError, OSError: the file cannot be created or written.
    """
    fd = open_new_file(dfd, name, fresh, label)
    try:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        if done != h.size:
            os.ftruncate(fd, h.size)
        for xname, value in h.xattrs:
            try:
                os.setxattr(fd, xname, value)
            except OSError:
                pass  # reported as a warning for large files; a small file keeps its data
        set_owner(fd, h)
        os.fchmod(fd, stat.S_IMODE(h.mode))
        os.utime(fd, ns=(h.atime_ns, h.mtime_ns))
    finally:
        os.close(fd)
