"""The first stage of a backup: the plan's entries read into pool buffers.

:class:`SourceReader` sends each entry as the encoders take it (see :mod:`._wire`): a large
file as its metadata then one CHUNK buffer per megabyte of each data extent (holes are
skipped and described in an options record, so sparse files are stored without them), read
straight into the pool buffer with ``preadv``; small files whole, many to a BATCH buffer. A
few threads open (and read, when small) the files a little ahead of it.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import xxhash

from pipevault.events import ItemCounter, ItemWarning, Reporter
from pipevault.format import (
    ObjectStatus,
    ObjectType,
)
from pipevault.format.errors import LimitError
from pipevault.mover import _wire as W
from pipevault.mover.objmeta import entry_meta
from pipevault.mover.walk import Entry, data_extents
from pipevault.pipe import StageContext

CHUNK = 1 << 20
SMALL_FILE = 256 << 10  # files up to this size travel in batches, with their metadata
BATCH_OBJECTS = 256  # most small objects in one batch buffer


def _grown(meta: bytes) -> int:
    """At most how many bytes an object's buffer space grows when the encoder turns its
    ``meta`` into an archive header and a catalog doc, frames it (chunk header, data and
    chunk footer records: under 240 bytes) and gives it the longer BATCH_ENC record: names
    appear a few times over, each byte at most six characters once escaped."""
    return 1200 + 16 * len(meta)

_EMPTY_DIGEST = xxhash.xxh3_128_digest(b"")
EXTENTS_KEY = "pv.extents"
_EXTENT = struct.Struct("<QQ")


def pack_extents(extents: list[tuple[int, int]]) -> bytes:
    """The options value describing a sparse file's data extents (offset, length pairs)."""
    return b"".join(_EXTENT.pack(o, n) for o, n in extents)


def unpack_extents(raw: bytes) -> list[tuple[int, int]]:
    """Inverse of :func:`pack_extents`."""
    return [_EXTENT.unpack_from(raw, i) for i in range(0, len(raw), _EXTENT.size)]



PREFETCH_THREADS = 4
PREFETCH_AHEAD = 8  # prefetch tasks in flight
PREFETCH_GROUP = 32  # small files per prefetch task


@dataclass(frozen=True, slots=True)
class Slurped:
    """A small file read whole by a prefetch thread: its bytes and whether it changed meanwhile."""

    data: bytes
    changed: bool


def _open_ahead(e: Entry) -> int | Slurped:
    """Prefetch one entry for the reader (runs in a pool thread, system calls in parallel).

    A small regular file is read whole (one extra byte asks whether it grew) and checked
    against its walk-time size and mtime; a larger one is opened with its first megabyte
    read ahead by the kernel; entries without data give -1.

    Raises:
        OSError: the file cannot be opened or read (the reader reports it as skipped).
    """
    if e.kind != ObjectType.FILE:
        return -1
    fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY)
    st = e.st
    if st.st_size <= SMALL_FILE and st.st_blocks * 512 >= st.st_size:
        try:
            data = os.read(fd, st.st_size + 1)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        changed = len(data) != st.st_size or after.st_mtime_ns != st.st_mtime_ns
        return Slurped(data[: st.st_size], changed)
    if st.st_size:
        os.posix_fadvise(fd, 0, min(st.st_size, 1 << 20), os.POSIX_FADV_WILLNEED)
    return fd


def _groups(entries: list[Entry]) -> Iterator[list[Entry]]:
    """The entries in prefetch tasks: a large file alone, others up to PREFETCH_GROUP a task."""
    group: list[Entry] = []
    for e in entries:
        if e.kind == ObjectType.FILE and e.st.st_size > SMALL_FILE:
            if group:
                yield group
                group = []
            yield [e]
            continue
        group.append(e)
        if len(group) == PREFETCH_GROUP:
            yield group
            group = []
    if group:
        yield group


def _open_group(entries: list[Entry]) -> list[int | Slurped | OSError]:
    """:func:`_open_ahead` of each entry (its error in its place)."""
    out: list[int | Slurped | OSError] = []
    for e in entries:
        try:
            out.append(_open_ahead(e))
        except OSError as exc:
            out.append(exc)
    return out


def _close_opened(results: list[int | Slurped | OSError]) -> None:
    for r in results:
        if isinstance(r, int) and r >= 0:
            os.close(r)


class SourceReader:
    """First stage: each entry of the plan as BEGIN, its data chunks, END. Result: warnings."""

    def __init__(self, entries: list[Entry], class_name: str, reporter: Reporter | None, job: str,
                 stored_ns: int = 0, expires_ns: int = 0, description: str = "") -> None:
        self.entries, self.class_name, self.reporter, self.job = entries, class_name, reporter, job
        self.stored_ns, self.expires_ns, self.description = stored_ns, expires_ns, description
        self._batch: Any = None  # the pool buffer collecting small objects
        self._pos = self._count = self._grow = 0

    def run(self, ctx: StageContext) -> list[tuple[str, str]]:
        warnings: list[tuple[str, str]] = []
        index = 0
        with ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="pv-open") as pool:
            ahead: deque[tuple[list[Entry], Future[list[int | Slurped | OSError]]]] = deque()
            upcoming = _groups(self.entries)
            got: list[int | Slurped | OSError] = []
            at = 0
            try:
                while True:
                    # Files are opened (small ones read whole, large ones' first megabyte read
                    # ahead by the kernel) by a few threads a little in front of this one, small
                    # files a group per task: one hand-off per file cost as much as reading it.
                    while len(ahead) < PREFETCH_AHEAD and (group := next(upcoming, None)) is not None:
                        ahead.append((group, pool.submit(_open_group, group)))
                    if not ahead:
                        break
                    group, future = ahead.popleft()
                    got, at = future.result(), 0
                    for e in group:
                        result = got[at]
                        at += 1
                        if isinstance(result, OSError):
                            self._warn(warnings, e.path, f"not backed up: {result.strerror}")
                            continue
                        fd = result if isinstance(result, int) else -1
                        try:
                            self._object(ctx, e, index, fd, warnings, result if isinstance(result, Slurped) else None)
                        finally:
                            if fd >= 0:
                                os.close(fd)
                        index += 1
                        self._counted()
                self.flush(ctx)
            finally:
                # Stopped early (the pipe failed): close what was opened and not used.
                _close_opened(got[at:])
                for _group, future in ahead:
                    if not future.cancel() and future.exception() is None:
                        _close_opened(future.result())
        return warnings

    def _counted(self) -> None:
        if isinstance(self.reporter, ItemCounter):
            self.reporter.count += 1

    def _warn(self, warnings: list[tuple[str, str]], path: str, message: str) -> None:
        warnings.append((path, message))
        if self.reporter is not None:
            self.reporter.emit(ItemWarning(self.job, path, "mover.source", message))

    def _send_meta(self, ctx: StageContext, index: int, meta: bytes, extents: bytes) -> None:
        buf = ctx.alloc_buf()
        d = buf.data
        pos = W.PREFIX_LEN + W.META_REC.size
        if pos + _grown(meta) + len(extents) > len(d):
            raise LimitError(f"object {index}: {len(meta) + len(extents)} bytes of metadata "
                             f"do not fit a {len(d)}-byte buffer")
        W.put_prefix(d, W.META, index, a=W.META_REC.size + len(meta) + len(extents))
        W.META_REC.pack_into(d, W.PREFIX_LEN, len(meta), len(extents))
        for part in (meta, extents):
            d[pos: pos + len(part)] = part
            pos += len(part)
        buf.length = pos
        del d
        ctx.send_buf(buf)

    def _object(self, ctx: StageContext, e: Entry, index: int, fd: int,
                warnings: list[tuple[str, str]], slurped: Slurped | None = None) -> None:
        st = e.st
        extents = data_extents(fd, st.st_size, st) if fd >= 0 else []
        sparse = fd >= 0 and extents != ([(0, st.st_size)] if st.st_size else [])
        meta = entry_meta(e, self.class_name, self.stored_ns, self.expires_ns, self.description)
        if not sparse and st.st_size <= SMALL_FILE and self._small(ctx, e, index, fd, meta, warnings, slurped):
            return
        if slurped is not None:  # a small file whose metadata alone fills a batch: rare, read it again
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY)
            try:
                self._large(ctx, e, index, fd, meta, [(0, st.st_size)] if st.st_size else [], False, warnings)
            finally:
                os.close(fd)
            return
        self._large(ctx, e, index, fd, meta, extents, sparse, warnings)

    def _large(self, ctx: StageContext, e: Entry, index: int, fd: int, meta: bytes,
               extents: list[tuple[int, int]], sparse: bool, warnings: list[tuple[str, str]]) -> None:
        """An object in its own buffers: META (BEGIN once encoded), one CHUNK per chunk of
        each data extent, END."""
        st = e.st
        self.flush(ctx)  # objects reach the store in index order
        self._send_meta(ctx, index, meta, pack_extents(extents) if sparse else b"")
        digest = xxhash.xxh3_128()
        status = ObjectStatus.COMPLETE
        stream = seq = 0
        limit = ctx.pool.buffer_size - W.PREFIX_LEN - W.CHUNK_ROOM - W.CHUNK_TAIL
        chunk = min(CHUNK, limit)
        start = W.PREFIX_LEN + W.CHUNK_ROOM  # room for the encoder to write in place (see _wire)
        for offset, length in extents:
            end = offset + length
            pos = offset
            while pos < end:
                want = min(chunk, end - pos)
                buf = ctx.alloc_buf()
                view = buf.data[start: start + want]
                try:
                    n = os.preadv(fd, [view], pos)
                except OSError as exc:
                    ctx.free_buf(buf)
                    self._warn(warnings, e.path, f"read error at byte {pos}: {exc.strerror}; stored up to it")
                    status = ObjectStatus.CHANGED
                    break
                if n == 0:
                    ctx.free_buf(buf)
                    status = ObjectStatus.CHANGED
                    self._warn(warnings, e.path, f"file shrank to {pos} bytes while it was read")
                    break
                digest.update(view[:n])
                W.put_prefix(buf.data, W.CHUNK, index, seq, stream, n)
                buf.length = start + n
                ctx.send_buf(buf)
                seq += 1
                stream += n
                pos += n
            if status != ObjectStatus.COMPLETE:
                break
        if fd >= 0 and status == ObjectStatus.COMPLETE:
            after = os.fstat(fd)
            if after.st_mtime_ns != st.st_mtime_ns or after.st_size != st.st_size:
                status = ObjectStatus.CHANGED
                self._warn(warnings, e.path, "changed while it was read; the version kept may be inconsistent")
        buf = ctx.alloc_buf()
        W.put_prefix(buf.data, W.END, index, a=W.END_REC.size)
        W.END_REC.pack_into(buf.data, W.PREFIX_LEN, status, digest.digest(), stream)
        buf.length = W.PREFIX_LEN + W.END_REC.size
        ctx.send_buf(buf)


    def _small(self, ctx: StageContext, e: Entry, index: int, fd: int, meta: bytes,
               warnings: list[tuple[str, str]], slurped: Slurped | None) -> bool:
        """Add a whole small object to the current batch buffer (many objects per handoff);
        False if it cannot fit even an empty batch."""
        size = len(slurped.data) if slurped is not None else e.st.st_size if fd >= 0 else 0
        need = W.BATCH_REC.size + len(meta) + size
        grow = _grown(meta)  # what the encoder adds: the batch must still fit one buffer then
        limit = ctx.pool.buffer_size
        if W.PREFIX_LEN + need + grow > limit:
            return False
        if self._batch is not None and (self._pos + self._grow + need + grow > limit
                                        or self._count >= BATCH_OBJECTS):
            self.flush(ctx)
        if self._batch is None:
            self._batch, self._pos, self._count, self._grow = ctx.alloc_buf(), W.PREFIX_LEN, 0, 0
        d = self._batch.data
        rec = self._pos
        pos = rec + W.BATCH_REC.size
        d[pos: pos + len(meta)] = meta
        pos += len(meta)
        n, status = 0, ObjectStatus.COMPLETE
        if slurped is not None:
            n = size
            d[pos: pos + n] = slurped.data
            digest = xxhash.xxh3_128_digest(slurped.data)
            if slurped.changed:
                status = ObjectStatus.CHANGED
                self._warn(warnings, e.path, "changed while it was read; the version kept may be inconsistent")
        elif size:
            view = d[pos: pos + size]
            try:
                n = os.preadv(fd, [view], 0)
            except OSError as exc:
                self._warn(warnings, e.path, f"read error: {exc.strerror}; stored empty")
                status = ObjectStatus.CHANGED
            if status == ObjectStatus.COMPLETE and (n != size or os.fstat(fd).st_mtime_ns != e.st.st_mtime_ns):
                status = ObjectStatus.CHANGED
                self._warn(warnings, e.path, "changed while it was read; the version kept may be inconsistent")
            digest = xxhash.xxh3_128_digest(view[:n])
            del view
        else:
            digest = _EMPTY_DIGEST
        W.BATCH_REC.pack_into(d, rec, index, len(meta), n, status, digest)
        del d
        self._pos = pos + n
        self._grow += grow
        self._count += 1
        return True

    def flush(self, ctx: StageContext) -> None:
        """Send the current batch of small objects, if any."""
        if self._batch is not None:
            W.put_prefix(self._batch.data, W.BATCH, 0, a=self._count)
            self._batch.length = self._pos
            ctx.send_buf(self._batch)
            self._batch = None


