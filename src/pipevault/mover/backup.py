"""The backup and archive job: walk, read, encode in parallel, write superblocks, catalogue.

The DataPipe of a backup::

    read (1)  ->  encode (N, allocating)  ->  store (1)
    files into     hash, compress, encrypt     pack superblocks, append to the pool's
    pool buffers   each chunk into a new       volumes, sync, catalogue durable objects
                   pool buffer

``read`` walks the plan's entries and reads each file's data extents (holes are skipped and
described in an options record, so sparse files are stored without their holes) straight
into pool buffers with ``preadv``; ``encode`` runs the stream format's chunk encoder, several
instances at once (zstd, AES-GCM and xxh3 release the GIL); ``store`` is the only writer of
the session. See :mod:`pipevault.mover.store` for when an object enters the catalog.
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import xxhash

from pipevault.catalog import objects as object_rows
from pipevault.catalog import sessions as session_rows
from pipevault.catalog.rebuild import DELETED_KEY, pack_deleted
from pipevault.clock import SystemClock
from pipevault.events import ItemCounter, ItemWarning, Reporter
from pipevault.format import (
    ArchiveHeader,
    ChunkEncoder,
    ChunkFooter,
    ChunkHeader,
    Compression,
    EncodedChunk,
    FramedObject,
    ObjectStatus,
    ObjectType,
    SamplingSelector,
    SessionHeader,
    SessionKeys,
    SessionStatus,
    SessionWriter,
    fixed,
    frame_object,
)
from pipevault.format.errors import LimitError
from pipevault.media import SUPERBLOCK_SIZE
from pipevault.mover import _wire as W
from pipevault.mover.catalogue import CatalogStage, send_durable
from pipevault.mover.objmeta import entry_meta, header_and_doc
from pipevault.mover.plan import Plan, make_plan, send_order
from pipevault.mover.site import Site
from pipevault.mover.store import SYNC_EVERY, SessionStore
from pipevault.mover.walk import Entry, data_extents
from pipevault.pipe import Pipe, StageContext, StageSpec, preload_process_modules

CHUNK = 1 << 20
BUFFER = CHUNK + (64 << 10)  # a chunk, its prefix and its encoded header and footer
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
DELETED_PER_RECORD = 2000
_EXTENT = struct.Struct("<QQ")


def pack_extents(extents: list[tuple[int, int]]) -> bytes:
    """The options value describing a sparse file's data extents (offset, length pairs)."""
    return b"".join(_EXTENT.pack(o, n) for o, n in extents)


def unpack_extents(raw: bytes) -> list[tuple[int, int]]:
    """Inverse of :func:`pack_extents`."""
    return [_EXTENT.unpack_from(raw, i) for i in range(0, len(raw), _EXTENT.size)]


@dataclass
class BackupOptions:
    """What to back up (or archive) and how."""

    paths: list[str]
    excludes: tuple[str, ...] = ()
    full: bool = False
    archive: bool = False
    description: str = ""
    class_name: str | None = None
    expire_days: int | None = None
    instances: int = 2
    max_buffers: int = 32
    one_file_system: bool = False
    store_process: bool = True


@dataclass
class BackupResult:
    """What a backup did."""

    session: uuid.UUID
    examined: int
    sent: int
    unchanged: int
    deleted: int
    bytes_read: int
    bytes_stored: int
    elapsed_s: float
    volumes: list[str]
    warnings: list[tuple[str, str]] = field(default_factory=list)
    stages: tuple[Any, ...] = ()
    bottleneck: str | None = None


# -- pipe modules ------------------------------------------------------------------------------


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
        limit = ctx.pool.buffer_size - W.PREFIX_LEN
        chunk = min(CHUNK, limit)
        for offset, length in extents:
            end = offset + length
            pos = offset
            while pos < end:
                want = min(chunk, end - pos)
                buf = ctx.alloc_buf()
                view = buf.data[W.PREFIX_LEN: W.PREFIX_LEN + want]
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
                buf.length = W.PREFIX_LEN + n
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


class ChunkEncode:
    """Middle stage (parallel, allocating): plaintext chunk buffer -> encoded chunk buffer."""

    def __init__(self, session_id: uuid.UUID, key: bytes | None, compress: bool, dedup: bool) -> None:
        self.session_id, self.key, self.compress, self.dedup = session_id, key, compress, dedup

    def run(self, ctx: StageContext) -> None:
        keys = SessionKeys.derive(self.key, self.session_id) if self.key is not None else None
        selector = SamplingSelector() if self.compress else fixed(Compression.NONE)
        encoder = ChunkEncoder(self.session_id, keys=keys, selector=selector, dedup=self.dedup)
        P = W.PREFIX_LEN
        while (buf := ctx.receive_buf()) is not None:
            kind, index, seq, offset, n, _b, _c = W.get_prefix(buf.data)
            if kind == W.BATCH:
                self._batch(ctx, encoder, buf, n)
                continue
            if kind == W.META:
                _begin(buf, index)
                ctx.send_buf(buf)
                continue
            if kind != W.CHUNK:
                ctx.send_buf(buf)
                continue
            enc = encoder(buf.data[P: P + n], index, seq, offset)
            head, foot = enc.header.pack(), enc.footer.pack()
            stored = memoryview(enc.stored).cast("B")
            out = ctx.alloc_buf()
            d = out.data
            W.put_prefix(d, W.ENCODED, index, seq, offset, len(head), len(stored), len(foot))
            pos = P
            d[pos: pos + len(head)] = head
            pos += len(head)
            d[pos: pos + len(stored)] = stored  # copies before the input buffer is freed
            pos += len(stored)
            d[pos: pos + len(foot)] = foot
            out.length = pos + len(foot)
            del stored, enc
            ctx.free_buf(buf)
            ctx.send_buf(out)


    @staticmethod
    def _batch(ctx: StageContext, encoder: ChunkEncoder, buf: Any, count: int) -> None:
        """BATCH -> BATCH_ENCODED: each object's data encoded and its records framed here, in
        parallel, so the session's one writer only copies them (see ``frame_object``)."""
        src = buf.data
        out = ctx.alloc_buf()
        d = out.data
        rpos, wpos = W.PREFIX_LEN, W.PREFIX_LEN
        for _ in range(count):
            index, lm, n, status, digest = W.BATCH_REC.unpack_from(src, rpos)
            rpos += W.BATCH_REC.size
            header, doc = header_and_doc(src[rpos: rpos + lm], index)
            data = src[rpos + lm: rpos + lm + n]
            rpos += lm + n
            lc = len(doc)
            framed = frame_object(index, header, encoder(data, index, 0, 0) if n else None)
            records = framed.records
            W.BATCH_ENC.pack_into(d, wpos, index, len(records), lc, framed.chunks, framed.plain_len,
                                  framed.stored_len, framed.required, status, digest,
                                  framed.dedup_hash is not None, framed.dedup_hash or b"")
            wpos += W.BATCH_ENC.size
            d[wpos: wpos + len(records)] = records
            wpos += len(records)
            d[wpos: wpos + lc] = doc
            wpos += lc
            del data, framed, records
        W.put_prefix(d, W.BATCH_ENCODED, 0, a=count)
        out.length = wpos
        del d, src
        ctx.free_buf(buf)
        ctx.send_buf(out)


def _begin(buf: Any, index: int) -> None:
    """Rewrite a META buffer as the BEGIN the store takes (in place: the reader left room)."""
    d = buf.data
    P = W.PREFIX_LEN
    lm, lx = W.META_REC.unpack_from(d, P)
    pos = P + W.META_REC.size
    header, doc = header_and_doc(bytes(d[pos: pos + lm]), index)
    extents = bytes(d[pos + lm: pos + lm + lx])
    W.put_prefix(d, W.BEGIN, index, a=W.BEGIN_REC.size + len(header) + len(doc) + lx)
    W.BEGIN_REC.pack_into(d, P, len(header), len(doc), lx)
    pos = P + W.BEGIN_REC.size
    for part in (header, doc, extents):
        d[pos: pos + len(part)] = part
        pos += len(part)
    buf.length = pos
    del d


@dataclass(frozen=True)
class StoreParams:
    """Everything the store stage needs to open its own site and session writer (picklable,
    so the stage can run as a process module with its own interpreter lock)."""

    settings: Any
    passphrase: bytes | None
    node: str
    tape: Any
    session_id: uuid.UUID
    catalog_session: int
    pool: str
    key: bytes | None
    header: SessionHeader
    compress: bool
    dedup: bool
    archive: bool
    description: str
    expires: float | None
    class_name: str
    stored: float | None = None  # the backup date of every version (the catalog's clock when None)
    sync_bytes: int = SYNC_EVERY  # stored bytes between durability points (sync, then catalogue)
    deleted: tuple[tuple[str, str, str], ...] = ()  # objects the plan found deleted (noted on media)
    key_check: bytes = b""  # without key: the key check of chunks the client encrypted (remote backup)
    background_sync: bool = True  # durability points on disk sync beside the store (see mover.store)


class StoreStage:
    """Feeds the session store; closes the session at the end of the data.

    Runs in the initiator with its ``site`` (thread mode), or as a process module that opens
    its own site from the parameters: the store is the serial Python hot spot of a backup
    (stream-format records), and a process of its own takes it off the interpreter lock the
    reader and encoders share. Durable objects go on (in buffers the store allocates) to the
    :class:`~pipevault.mover.catalogue.CatalogStage` that must follow it. Result: objects and
    bytes durable, stored bytes, volumes used.
    """

    def __init__(self, params: StoreParams, site: Site | None = None) -> None:
        self.params, self.site = params, site

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p = self.params
        site = self.site if self.site is not None else Site.open(p.settings, passphrase=p.passphrase, node=p.node,
                                                                 tape=p.tape)
        writer = SessionWriter(p.header, session_id=p.session_id, size=SUPERBLOCK_SIZE, key=p.key, dedup=p.dedup,
                               discard_duplicates=p.dedup,
                               selector=SamplingSelector() if p.compress else fixed(Compression.NONE),
                               clock=site.clock, key_check=p.key_check)
        self.store = SessionStore(site, writer, p.pool, functools.partial(send_durable, ctx),
                                  sync_every=p.sync_bytes, background_sync=p.background_sync)
        try:
            self._feed(ctx)
        except BaseException:
            self.store.abort()
            raise
        finally:
            if self.site is None:
                site.close()
        return {"objects": self.store.objects, "bytes": self.store.bytes, "stored": writer.stored_bytes,
                "volumes": self.store.volumes_used}

    def _feed(self, ctx: StageContext) -> None:
        P = W.PREFIX_LEN
        doc = b""
        while (buf := ctx.receive_buf()) is not None:
            d = buf.data
            kind, _index, _seq, _offset, a, b, c = W.get_prefix(d)
            if kind == W.ENCODED:
                header = ChunkHeader.unpack(d[P: P + a])
                stored = d[P + a: P + a + b]
                footer = ChunkFooter.unpack(d[P + a + b: P + a + b + c])
                self.store.chunk(EncodedChunk(header, stored, footer))
                del stored
            elif kind == W.BATCH_ENCODED:
                pos = P
                for _ in range(a):
                    (index, lr, lc, chunks, plain, stored_len, required, status, digest, hashed,
                     dhash) = W.BATCH_ENC.unpack_from(d, pos)
                    pos += W.BATCH_ENC.size
                    framed = FramedObject(index, d[pos: pos + lr], chunks, plain, stored_len, required,
                                          dhash if hashed else None)
                    pos += lr
                    self.store.put_object(framed, status, (bytes(d[pos: pos + lc]), digest, plain))
                    pos += lc
                    del framed
            elif kind == W.BEGIN:
                lh, lc, lx = W.BEGIN_REC.unpack_from(d, P)
                pos = P + W.BEGIN_REC.size
                arch = ArchiveHeader.unpack(d[pos: pos + lh])
                doc = bytes(d[pos + lh: pos + lh + lc])
                extents = bytes(d[pos + lh + lc: pos + lh + lc + lx])
                self.store.begin(arch, {EXTENTS_KEY: extents} if extents else None)
            else:
                status, digest, stream = W.END_REC.unpack_from(d, P)
                self.store.end(status, (doc, digest, stream))
            del d
            ctx.free_buf(buf)
        deleted = list(self.params.deleted)
        for i in range(0, len(deleted), DELETED_PER_RECORD):
            # On media too, so that a catalog rebuilt from them knows what was deleted.
            self.store.session_options({DELETED_KEY: pack_deleted(deleted[i: i + DELETED_PER_RECORD])})
        self.store.close(SessionStatus.COMPLETED)


# -- the job -------------------------------------------------------------------------------------


@contextmanager
def node_lock(site: Site) -> Iterator[None]:
    """One backup or archive job per node at a time (waits for a running one)."""
    path = site.home / "locks" / f"{site.node}.job"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fail_stale_sessions(site: Site) -> None:
    """Sessions of this node still 'running' belong to a killed job (we hold the node lock)."""
    with site.catalog.write() as conn:
        for s in session_rows.list_sessions(conn, node=site.node):
            if s.status == "running":
                session_rows.end_session(conn, s.id, "failed", ended=site.clock.now())


def run_backup(site: Site, opts: BackupOptions, reporter: Reporter | None = None,
               plan: Plan | None = None) -> BackupResult:
    """Back up (or archive) ``opts.paths``; returns when every sent object is catalogued.

    Raises:
        KeyMissing, WrongPassphrase: the class encrypts and the key cannot be unlocked.
        PipevaultError: a media, catalog or pipe failure; the session is marked failed and no
            object of it that was not yet durable is in the catalog.
    """
    t0 = time.perf_counter()
    if opts.store_process:
        preload_process_modules([__name__])  # the store and catalog processes, imported while we plan
    kind = "archive" if opts.archive else "backup"
    mc = site.management_class(opts.class_name)
    key = site.key(create=True) if mc.encrypt else None
    with node_lock(site):
        _fail_stale_sessions(site)
        if plan is None:
            plan = make_plan(site, opts.paths, opts.excludes, full=opts.full, archive=opts.archive,
                             one_file_system=opts.one_file_system)
        sid = uuid.uuid4()
        now = site.clock.now()
        expires = None
        if opts.archive:
            days = opts.expire_days if opts.expire_days is not None else mc.archive_days
            expires = now + days * 86_400.0
        with site.catalog.write() as conn:
            cat_session = session_rows.begin_session(conn, site.node, kind, started=now,
                                                     media_session=str(sid))
        params = StoreParams(
            site.settings, site.passphrase, site.node, site.tape, sid, cat_session, mc.destination_pool, key,
            SessionHeader(node=site.node, job=kind, kind=kind, host=socket.gethostname(), software="pipevault"),
            mc.compress, mc.dedup, opts.archive, opts.description, expires, mc.name, stored=now,
            deleted=() if opts.archive else tuple(plan.deleted))
        # The store and the catalog run as processes of their own when the site can be reopened
        # there (opened from settings, on the real clock); otherwise (tests on a manual clock)
        # as threads.
        separate = opts.store_process and site.settings is not None and isinstance(site.clock, SystemClock)
        tail = [StageSpec("store", functools.partial(StoreStage, params), mode="process", allocates=True),
                StageSpec("catalog", functools.partial(CatalogStage, params), mode="process")] if separate else [
                StageSpec("store", functools.partial(StoreStage, params, site), allocates=True),
                StageSpec("catalog", functools.partial(CatalogStage, params, site))]
        counter = ItemCounter(reporter, len(plan.send)) if reporter is not None else None
        stages = [
            StageSpec("read", functools.partial(SourceReader, send_order(plan.send), mc.name, counter, kind,
                                                int(now * 1e9), int(expires * 1e9) if expires else 0,
                                                opts.description)),
            StageSpec("encode", functools.partial(ChunkEncode, sid, key, mc.compress, mc.dedup),
                      instances=max(1, opts.instances), allocates=True, mode="process" if separate else "thread"),
            *tail,
        ]
        pipe = Pipe(stages, buffer_size=BUFFER, max_buffers=max(opts.max_buffers, 8), reporter=counter,
                    total_bytes=plan.bytes_to_send, job=kind)
        try:
            result = pipe.run()
        except BaseException:
            with site.catalog.write() as conn:
                session_rows.end_session(conn, cat_session, "failed", ended=site.clock.now())
            raise
        with site.catalog.write() as conn:
            if not opts.archive:
                for fs, hl, ll in plan.deleted:
                    object_rows.mark_deleted(conn, site.node, fs, hl, ll, when=now)
            session_rows.end_session(conn, cat_session, "completed", ended=site.clock.now())
    stored = {**result.results["store"][0], **result.results["catalog"][0]}
    warnings = list(plan.report.errors) + list(result.results["read"][0] or [])
    return BackupResult(
        session=sid, examined=len(plan.send) + plan.unchanged, sent=stored["objects"], unchanged=plan.unchanged,
        deleted=len(plan.deleted), bytes_read=stored["bytes"], bytes_stored=stored["stored"],
        elapsed_s=time.perf_counter() - t0, volumes=stored["volumes"], warnings=warnings,
        stages=tuple(s.figures() for s in result.status.stages),
        bottleneck=result.status.bottleneck(result.elapsed_s))
