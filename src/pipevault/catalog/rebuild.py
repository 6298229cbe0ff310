"""Cataloguing from media: the records of the stream format become catalog rows.

:class:`MediaCatalogue` is fed superblocks, each with the volume and block number it lies
at, and catalogues every object whose archive footer it reads: node, file space, object,
version (with the dates, class and attributes of its archive header), session (with the
times and totals of its session header and footer) and its pieces: one per volume, the
first from the superblock of its archive header, the next ones from the superblock where
its first chunk on that volume starts, each with the object byte range it holds. It needs
nothing but the media, and it is the one place where format records become rows, so the
same code serves two callers:

- a writer catalogues a session as its superblocks become durable (an object enters the
  catalog only once its footer is safe on media), and
- :func:`rebuild` recreates a lost catalog by scanning the volumes, with original
  timestamps (unlike bscan, which needs a pre-seeded catalog and loses job times).

Rules that make the two agree: an object's name is its archive header's ``name`` (as
:func:`name_text`) split at the last ``/`` into high- and low-level names, in the
header's file space (``/`` when empty); sessions of kind ``archive`` make archive versions,
every other kind backup versions; a version's size is the bytes its chunks hold; objects
that were aborted, or whose data a damage report names, are not catalogued (they are
listed in the report). Duplicate-discard chunk rows are not recreated: the format's
duplicate references are resolved within a session by the reader.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from pipevault.catalog import pools as pool_rows
from pipevault.catalog import sessions as session_rows
from pipevault.catalog import volumes as volume_rows
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogNotFound, CatalogRebuildFailed
from pipevault.catalog.objects import index_fields, mark_deleted
from pipevault.catalog.schema import sessions
from pipevault.catalog.writer import BatchWriter, NewVersion, Piece
from pipevault.format import (
    ArchiveFooter,
    ArchiveHeader,
    ChunkRead,
    Damage,
    ObjectEnded,
    ObjectStarted,
    ObjectStatus,
    OptionsRead,
    Scanner,
    SessionEnded,
    SessionStarted,
    SessionStatus,
    peek_header,
)
from pipevault.format.errors import FormatError

DELETED_KEY = "pv.deleted"  # session options: objects a backup found deleted on its node
ALL_OBJECTS = 0xFFFFFFFF  # an options record's object index when it applies to the session


def pack_deleted(keys: list[tuple[str, str, str]]) -> bytes:
    """The options value listing deleted objects (file space, high and low name)."""
    return json.dumps([list(k) for k in keys], separators=(",", ":")).encode("ascii")


def unpack_deleted(raw: bytes) -> list[tuple[str, str, str]]:
    """Inverse of :func:`pack_deleted`; a damaged value gives nothing, never a wrong key.

    (The options record was checked by the superblock checksum; a value that still does not
    parse was written by something else, and deleting on its word would lose versions.)
    """
    try:
        keys = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(keys, list):
        return []
    return [(k[0], k[1], k[2]) for k in keys
            if isinstance(k, list) and len(k) == 3 and all(isinstance(x, str) for x in k)]


def media_time(ns: int) -> float:
    """A format timestamp (ns since the epoch) as a catalog date (s since the epoch)."""
    return ns / 1e9


def name_text(raw: bytes) -> str:
    """A raw name as catalog text, reversibly: UTF-8, each undecodable byte as ``\\xNN`` and
    each backslash doubled (the form the mover's walk gives names it catalogues)."""
    text = raw.decode("utf-8", errors="surrogateescape")
    if "\\" not in text:
        try:
            text.encode()  # fails exactly when the name holds undecodable bytes
            return text
        except UnicodeEncodeError:
            pass
    return "".join("\\\\" if c == "\\" else f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c
                   for c in text)


def split_name(name: bytes) -> tuple[str, str]:
    """The (high-level, low-level) names of an archive header's raw name.

    ``/etc/motd`` is ``("/etc", "motd")``, ``motd`` and ``/motd`` are ``("/", "motd")``.
    """
    text = name_text(name)
    cut = text.rfind("/")
    return (text[:cut] if cut > 0 else "/", text[cut + 1:])


def attributes(header: ArchiveHeader) -> str:
    """The JSON attributes a version keeps from its archive header (sorted keys, no defaults)."""
    values: dict[str, object] = {
        "mode": header.mode, "uid": header.uid, "gid": header.gid, "owner": header.owner,
        "group": header.group, "mtime_ns": header.mtime_ns, "ctime_ns": header.ctime_ns,
        "atime_ns": header.atime_ns, "version": header.version,
        "link_target": name_text(header.link_target),
        "object_id": str(header.object_id) if header.object_id is not None else "",
        "xattrs": [[name_text(n), v.hex()] for n, v in header.xattrs],
    }
    return json.dumps({k: v for k, v in values.items() if v not in (0, "", [])}, sort_keys=True,
                      separators=(",", ":"))


def with_index(text: str, session: str, index: int, refs: tuple[int, ...]) -> str:
    """Attributes ``text`` (a JSON object) with the version's place in its media session at
    the end, as a backup writes them (``objects.index_fields``): restores find objects by it."""
    return text[:-1] + ("," if len(text) > 2 else "") + index_fields(session, index, refs)


@dataclass
class _Run:
    """The object's bytes on one volume, growing as its chunks are read."""

    volume: str
    block: int
    offset: int
    length: int


@dataclass
class _Object:
    header: ArchiveHeader
    runs: list[_Run] = field(default_factory=list)
    plain: int = 0
    refs: set[int] = field(default_factory=set)  # other objects whose chunks it repeats


@dataclass
class _Session:
    media_id: uuid.UUID
    catalog_id: int
    archive: bool
    started: float
    writer: BatchWriter
    open: _Object | None = None
    node: str = ""
    deleted: list[tuple[str, str, str]] = field(default_factory=list)
    damaged: set[int] = field(default_factory=set)
    damaged_all_after: bool = False
    objects: int = 0


@dataclass
class RebuildReport:
    """What a scan catalogued, and what it could not.

    ``skipped`` names objects left out (aborted, damaged, or never closed on these media);
    ``damage`` holds the scanner's damage reports as text; ``known`` lists sessions that
    were already in the catalog and were left alone.
    """

    sessions: int = 0
    objects: int = 0
    blocks: int = 0
    skipped: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)


class MediaCatalogue:
    """Catalogues objects from superblocks fed in media order.

    Feed each volume's superblocks in order (several volumes in the order they were
    written, so that a session spanning them is seen in sequence); call :meth:`finish`
    at the end. Not thread-safe.

    Args:
        catalog: the catalog to write; every volume fed must be in it (see
            :func:`ensure_volume`).
        batch_size: versions per transaction of each session's writer.
    """

    def __init__(self, catalog: Catalog, *, batch_size: int = 5000) -> None:
        self._catalog = catalog
        self._batch = batch_size
        self._scanner = Scanner(decode=False)
        # None: a session finished, or already catalogued; its superblocks are ignored.
        self._sessions: dict[uuid.UUID, _Session | None] = {}
        # Where each session's superblocks lie, by sequence number, while chunks may refer to them.
        self._blocks: dict[uuid.UUID, dict[int, tuple[str, int]]] = {}
        self.report = RebuildReport()

    def feed(self, volume: str, block: int, superblock: bytes | memoryview) -> None:
        """Catalogue what the superblock at ``block`` of ``volume`` completes.

        Raises:
            CatalogNotFound: the volume is not in the catalog.
            CatalogRebuildFailed: the superblock is of a format version this pipevault cannot read.
        """
        self.report.blocks += 1
        view = memoryview(superblock).cast("B")
        try:
            head = peek_header(view)
        except FormatError:
            head = None
        if head is not None and self._sessions.get(head.session_id, True) is not None:
            self._blocks.setdefault(head.session_id, {})[head.seq] = (volume, block)
        try:
            events = self._scanner.feed(view)
        except FormatError as exc:
            raise CatalogRebuildFailed(f"block {block} of volume {volume}: {exc.message}") from exc
        for event in events:
            self._event(event)

    def finish(self) -> RebuildReport:
        """Close the scan: sessions without a footer on these media are recorded as failed."""
        for event in self._scanner.finish():
            self._event(event)
        for sid, state in self._sessions.items():
            if state is None:
                continue
            if state.open is not None:
                self._skip(state, state.open.header, "never closed on these media")
            self._close(state, "failed", None)
            self.report.skipped.append(f"session {sid}: no session footer on these media")
        self._sessions = dict.fromkeys(self._sessions)
        self._blocks.clear()
        return self.report

    def _event(self, event: object) -> None:
        if isinstance(event, Damage):
            self._damage(event)
            return
        if isinstance(event, SessionStarted):
            self._start(event)
            return
        sid = getattr(event, "session_id", None)
        state = self._sessions.get(sid) if isinstance(sid, uuid.UUID) else None
        if state is None:
            return
        if isinstance(event, ObjectStarted):
            if state.open is not None:
                self._skip(state, state.open.header, "its footer was lost")
            state.open = _Object(event.header)
            # The first piece starts where the archive header is, so a restore that seeks
            # there reads the object from its beginning (an empty object has only this piece).
            where = self._blocks.get(state.media_id, {}).get(event.seq)
            if where is not None:
                state.open.runs.append(_Run(where[0], where[1], 0, 0))
        elif isinstance(event, ChunkRead) and state.open is not None:
            self._chunk(state, state.open, event)
        elif isinstance(event, ObjectEnded):
            self._end_object(state, event.footer)
        elif isinstance(event, OptionsRead) and event.options.object_index == ALL_OBJECTS:
            raw = event.options.get(DELETED_KEY)
            if raw is not None:
                state.deleted += unpack_deleted(raw)
        elif isinstance(event, SessionEnded):
            status = ("completed" if event.footer.status in (SessionStatus.COMPLETED, SessionStatus.WARNINGS)
                      else "failed")
            if state.open is not None:
                self._skip(state, state.open.header, "never closed")
            self._close(state, status, media_time(event.footer.ended_ns))
            self._sessions[event.session_id] = None
            self._blocks.pop(event.session_id, None)

    def _start(self, event: SessionStarted) -> None:
        if event.session_id in self._sessions:
            return
        header = event.header
        started = media_time(header.created_ns)
        with self._catalog.write() as conn:
            known = conn.execute(sa.select(sessions.c.id).where(
                sessions.c.media_session == str(event.session_id))).first()
            if known is not None:
                self._sessions[event.session_id] = None
                self._blocks.pop(event.session_id, None)
                self.report.known.append(str(event.session_id))
                return
            cid = session_rows.begin_session(
                conn, header.node or header.host or "unknown",
                "archive" if header.kind == "archive" else "backup",
                started=started, media_session=str(event.session_id))
        state = _Session(event.session_id, cid, header.kind == "archive", started,
                         BatchWriter(self._catalog, cid, batch_size=self._batch),
                         node=header.node or header.host or "unknown")
        self._sessions[event.session_id] = state
        self.report.sessions += 1

    def _chunk(self, state: _Session, obj: _Object, event: ChunkRead) -> None:
        where = self._blocks.get(state.media_id, {}).get(event.first_seq)
        if where is None:
            state.damaged.add(event.header.object_index)
            return
        volume, block = where
        h = event.header
        if obj.runs and obj.runs[-1].volume == volume:
            obj.runs[-1].length += h.plain_len
        else:
            obj.runs.append(_Run(volume, block, h.object_offset, h.plain_len))
        obj.plain += h.plain_len
        if h.ref is not None and h.ref[0] != h.object_index:
            obj.refs.add(h.ref[0])

    def _end_object(self, state: _Session, footer: ArchiveFooter) -> None:
        obj, state.open = state.open, None
        if obj is not None and obj.header.object_index != footer.object_index:
            self._skip(state, obj.header, "its footer was lost")
            obj = None
        if obj is None:
            self.report.skipped.append(f"object {footer.object_index} (name lost): its header was lost")
            return
        index = footer.object_index
        if footer.status == ObjectStatus.ABORTED:
            self._skip(state, obj.header, "aborted by its writer")
        elif index in state.damaged or state.damaged_all_after:
            self._skip(state, obj.header, "part of its data is damaged")
        else:
            hl, ll = split_name(obj.header.name)
            stored = media_time(obj.header.stored_ns) if obj.header.stored_ns else state.started
            state.writer.add(NewVersion(
                obj.header.filespace or "/", hl, ll, obj.plain,
                tuple(Piece(r.volume, r.block, r.offset, r.length) for r in obj.runs),
                stored=stored, obj_type=obj.header.type,
                class_name=obj.header.mgmt_class or "STANDARD",
                attributes=with_index(attributes(obj.header), str(state.media_id), index, tuple(sorted(obj.refs))),
                archive=state.archive, description=obj.header.description,
                expires=media_time(obj.header.expires_ns) if obj.header.expires_ns else None))
            state.objects += 1
            self.report.objects += 1
        # Superblocks before this object's last one hold nothing a later chunk refers to.
        blocks = self._blocks.get(state.media_id, {})
        for seq in [s for s in blocks if s < footer.last_seq]:
            del blocks[seq]

    def _damage(self, event: Damage) -> None:
        self.report.damage.append(event.describe())
        state = self._sessions.get(event.session_id) if event.session_id is not None else None
        if state is None:
            return
        for affected in event.affected:
            if affected.object_index is None:
                state.damaged_all_after = True
            else:
                state.damaged.add(affected.object_index)

    def _skip(self, state: _Session, header: ArchiveHeader, why: str) -> None:
        name = header.name.decode("utf-8", errors="backslashreplace")
        self.report.skipped.append(f"object {header.object_index} ({name}): {why}")

    def _close(self, state: _Session, status: str, ended: float | None) -> None:
        state.writer.flush()
        with self._catalog.write() as conn:
            if status == "completed" and not state.archive:
                # Deletions the backup found, as it marked them: once its session succeeded.
                for fs, hl, ll in state.deleted:
                    mark_deleted(conn, state.node, fs, hl, ll, when=state.started)
            session_rows.end_session(conn, state.catalog_id, status, ended=ended)


def ensure_volume(catalog: Catalog, name: str, pool: str, *, media_type: str, capacity: int,
                  state: str = "full", write_once: bool = False) -> None:
    """Record a volume found on media (and its pool) unless the catalog already has it."""
    with catalog.write() as conn:
        try:
            volume_rows.get_volume(conn, name)
            return
        except CatalogNotFound:
            pass
        try:
            pool_rows.get_pool(conn, pool)
        except CatalogNotFound:
            pool_rows.define_pool(conn, pool, media_type, now=catalog.clock.now())
        volume_rows.add_volume(conn, name, pool, capacity, now=catalog.clock.now(),
                               media_type=media_type, state=state, write_once=write_once)


def rebuild(catalog: Catalog, volumes: Iterable[tuple[str, Iterable[tuple[int, bytes | memoryview]]]],
            *, batch_size: int = 5000) -> RebuildReport:
    """Catalogue everything on ``volumes``: ``(volume name, [(block number, superblock)])``
    in the order the volumes were written. Sessions already in the catalog are left alone.

    Raises:
        CatalogNotFound: a volume is not in the catalog (call :func:`ensure_volume` first).
        CatalogRebuildFailed: a superblock of an unreadable format version.
    """
    cataloguer = MediaCatalogue(catalog, batch_size=batch_size)
    for name, blocks in volumes:
        for block, data in blocks:
            cataloguer.feed(name, block, data)
    return cataloguer.finish()
