"""The backup and archive job: walk, read, encode in parallel, write superblocks, catalogue.

The DataPipe of a backup::

    read (1)  ->  encode (N, allocating)  ->  store (1, allocating)  ->  catalog (1)
    files into     hash, compress, encrypt     pack superblocks, append     versions into the
    pool buffers   each chunk, frame small     to the pool's volumes,       catalog at each
                   objects whole               sync, hand on the durable    durability point

``read`` is :class:`~pipevault.mover.source.SourceReader` (entries in :func:`send_order`,
data straight into pool buffers, holes skipped); ``encode`` runs the stream format's chunk
encoder, several processes at once; ``store`` is the only writer of the session (see
:mod:`pipevault.mover.store` for when an object enters the catalog, and
:mod:`pipevault.mover.catalogue` for the last stage).
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipevault.catalog import objects as object_rows
from pipevault.catalog import sessions as session_rows
from pipevault.catalog.rebuild import DELETED_KEY, pack_deleted
from pipevault.clock import SystemClock
from pipevault.events import ItemCounter, Reporter
from pipevault.format import (
    ArchiveHeader,
    ChunkEncoder,
    ChunkFooter,
    ChunkHeader,
    Compression,
    EncodedChunk,
    Encryption,
    FramedObject,
    SamplingSelector,
    SessionHeader,
    SessionKeys,
    SessionStatus,
    SessionWriter,
    fixed,
    frame_object,
    frame_whole,
)
from pipevault.media import SUPERBLOCK_SIZE
from pipevault.mover import _wire as W
from pipevault.mover.catalogue import CatalogStage, send_durable
from pipevault.mover.objmeta import header_and_doc
from pipevault.mover.plan import Plan, make_plan, send_order
from pipevault.mover.site import Site
from pipevault.mover.source import CHUNK, EXTENTS_KEY, SourceReader
from pipevault.mover.store import SYNC_EVERY, SessionStore
from pipevault.pipe import Pipe, StageContext, StageSpec, bulk_gc, preload_process_modules

BUFFER = CHUNK + (64 << 10)  # a chunk, its prefix and its encoded header and footer
# Three allocators (read, encode, store) share the pool, each up to a third, and the encoders'
# reorder window is a quota less two: with 64 the bench's tree took 1.56-1.62 s against
# 1.59-1.66 with 32 (five alternating runs).
LOCAL_BUFFERS = 64
_NONE, _CLEAR = Compression.NONE, Encryption.NONE
DELETED_PER_RECORD = 2000


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
    max_buffers: int | None = None  # pool buffers; None: LOCAL_BUFFERS here, 32 for a remote backup
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
    pipe_s: float = 0.0  # of elapsed_s, the pipe's: the rest is planning before it and closing after


# -- pipe modules ------------------------------------------------------------------------------


class ChunkEncode:
    """Middle stage (parallel, allocating): plaintext chunk buffer -> encoded chunk buffer."""

    def __init__(self, session_id: uuid.UUID, key: bytes | None, compress: bool, dedup: bool) -> None:
        self.session_id, self.key, self.compress, self.dedup = session_id, key, compress, dedup

    def run(self, ctx: StageContext) -> None:
        keys = SessionKeys.derive(self.key, self.session_id) if self.key is not None else None
        selector = SamplingSelector() if self.compress else fixed(Compression.NONE)
        # The store discards duplicates when it has their hashes (StoreStage): repeats stay raw.
        encoder = ChunkEncoder(self.session_id, keys=keys, selector=selector, dedup=self.dedup,
                               raw_repeats=self.dedup)
        P, R = W.PREFIX_LEN, W.CHUNK_ROOM
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
            enc = encoder(buf.data[P + R: P + R + n], index, seq, offset)
            head, foot = enc.header.pack(), enc.footer.pack()
            h = enc.header
            if h.compression == _NONE and h.encryption == _CLEAR and len(head) == R:
                # Stored as it is (incompressible, or a repeat the store discards): the bytes
                # are already in place after the room the reader left for the header.
                d = buf.data
                W.put_prefix(d, W.ENCODED, index, seq, offset, R, n, len(foot))
                d[P: P + R] = head
                d[P + R + n: P + R + n + len(foot)] = foot
                buf.length = P + R + n + len(foot)
                del d, enc
                ctx.send_buf(buf)
                continue
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
            framed = frame_whole(index, header, data, encoder) if n else frame_object(index, header, None)
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


@dataclass
class StoreParams:
    """Everything the store stage needs to open its own site and session writer (picklable,
    so the stage can run as a process module with its own interpreter lock). Not frozen:
    this module is compiled (``[tool.pipevault] compiled``), and a compiled frozen class
    cannot be unpickled."""

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
                    framed = FramedObject.of(index, d[pos: pos + lr], chunks, plain, stored_len, required,
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


@bulk_gc()
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
        pipe = Pipe(stages, buffer_size=BUFFER, max_buffers=max(opts.max_buffers or LOCAL_BUFFERS, 8), reporter=counter,
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
        bottleneck=result.status.bottleneck(result.elapsed_s), pipe_s=result.elapsed_s)
