"""Moving stored data to other volumes, whole superblocks at a time, without ever losing it.

Migration and reclamation both come down to: for one source volume and some of the object
versions catalogued on it, find every superblock those objects occupy there, copy those
superblocks in their order to volumes of a target pool, make the copies durable, and only
then point the catalog's location rows at them, in one transaction. Until that commit the
catalog names the old copy, which nobody has touched; after it, the old copy is dead. A job
killed at any point therefore leaves every catalogued object readable (at worst some
uncatalogued blocks sit on a target volume, where a scratch takeover or reclamation drops them).

Which superblocks an object occupies is not in the catalog (it records only the first one on
each volume), so the source volume is scanned first with the stream format's structure-only
scanner: an object occupies the blocks of its session from its first block there up to the
block holding its footer, or up to the block where the next object of its session starts
when its own start lies on an earlier volume, or to the end of the volume when it goes on to
the next one. The scan reads the whole range before anything is written, so an unreadable
source is found before the target is touched.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog import volumes as volume_rows
from pipevault.catalog.rebuild import split_name
from pipevault.catalog.schema import chunks, locations, volumes
from pipevault.errors import PipevaultError
from pipevault.format import ObjectEnded, ObjectStarted, Scanner, peek_header
from pipevault.format.errors import FormatError
from pipevault.media import Volume
from pipevault.media.errors import EndOfData, VolumeFull
from pipevault.mover.errors import MigrationFailed
from pipevault.mover.site import Site


@dataclass(frozen=True)
class Extent:
    """One catalogued piece to move: location row (version, part) on ``volume`` from block
    ``superblock``, and how to recognise its object on the media."""

    version_id: int
    part: int
    volume: str
    superblock: int
    offset: int
    length: int
    session: uuid.UUID
    index: int | None  # the object's index in its session, when the catalog knows it
    filespace: str
    hl: str
    ll: str


@dataclass
class _Span:
    extent: Extent
    first: int
    last: int | None = None


@dataclass
class VolumeMove:
    """What moving the extents of one source volume did."""

    source: str
    extents: int
    blocks: int
    bytes: int
    targets: list[str]
    freed: bool
    busy: bool = False


def occupied_blocks(volume: Volume, extents: list[Extent]) -> tuple[list[int], dict[Extent, list[int]]]:
    """The blocks of ``volume`` holding the extents' objects, in order, and each extent's blocks.

    Raises:
        MigrationFailed: a block in the range cannot be read or parsed.
    """
    if not extents:
        return [], {}
    spans = [_Span(e, e.superblock) for e in extents]
    by_slot: dict[tuple[uuid.UUID, int], list[_Span]] = defaultdict(list)
    by_name: dict[tuple[uuid.UUID, str, str, str], list[_Span]] = defaultdict(list)
    for s in spans:
        if s.extent.index is not None:
            by_slot[(s.extent.session, s.extent.index)].append(s)
        else:
            by_name[(s.extent.session, s.extent.filespace, s.extent.hl, s.extent.ll)].append(s)
    scanner = Scanner(sessions={e.session for e in extents}, decode=False)
    where: dict[tuple[uuid.UUID, int], int] = {}  # (session, seq) -> block address
    session_at: dict[int, uuid.UUID] = {}
    continued = [s for s in spans if s.extent.part > 0]  # their object starts on an earlier volume
    unresolved = len(spans)
    addr = end = min(s.first for s in spans)
    while unresolved:
        try:
            data = volume.read(addr)
        except EndOfData:
            break
        except PipevaultError as exc:
            raise MigrationFailed(f"volume {volume.name} block {addr} cannot be read: {exc.message}",
                                  volume=volume.name, block=addr) from exc
        try:
            header = peek_header(memoryview(data))
        except FormatError as exc:
            raise MigrationFailed(f"volume {volume.name} block {addr} is not a superblock: {exc.message}",
                                  volume=volume.name, block=addr) from exc
        where[(header.session_id, header.seq)] = addr
        session_at[addr] = header.session_id
        started_here: set[uuid.UUID] = set()
        for ev in scanner.feed(data):
            if isinstance(ev, ObjectStarted):
                started_here.add(ev.session_id)
                hl, ll = split_name(ev.header.name)
                named = by_name.pop((ev.session_id, ev.header.filespace, hl, ll), [])
                by_slot[(ev.session_id, ev.header.object_index)].extend(named)
            elif isinstance(ev, ObjectEnded):
                at = where.get((ev.session_id, ev.seq), addr)
                for s in by_slot.get((ev.session_id, ev.footer.object_index), ()):
                    if s.last is None and s.first <= at:
                        s.last = at
                        unresolved -= 1
        for s in continued:
            # A continued piece ends at its footer, at the latest where the next object of its
            # session starts. Any other piece whose end was not recognised keeps going to the
            # end of the volume: copying too much is safe, too little is not.
            if s.last is None and s.first <= addr and s.extent.session in started_here:
                s.last = addr
                unresolved -= 1
        end = addr
        addr += 1
    blocks: dict[Extent, list[int]] = {}
    for s in spans:
        last = end if s.last is None else s.last
        blocks[s.extent] = [b for b in range(s.first, last + 1) if session_at.get(b) == s.extent.session]
    return sorted({b for bs in blocks.values() for b in bs}), blocks


class TargetWriter:
    """Appends superblocks to volumes of one pool, moving on to the next when one is full.

    Writes only to empty (scratch or new) volumes: appended behind older data of the same
    sessions, moved superblocks would come before it in the order a restore reads a volume,
    and the scanner drops superblocks older than those it has seen. Holds the volumes it
    writes (and their writer locks) until :meth:`close`. Used by one thread.
    """

    def __init__(self, site: Site, pool: str, exclude: set[str]) -> None:
        self.site, self.pool = site, pool
        with site.catalog.read() as conn:
            busy = {v.name for v in volume_rows.list_volumes(conn, pool=pool) if v.state != "scratch"}
        self._exclude = set(exclude) | busy
        self._stack = ExitStack()
        self._volume: Volume | None = None
        self.dirty: dict[str, Volume] = {}
        self.full: list[str] = []

    def append(self, block: bytes) -> tuple[str, int]:
        """Write one superblock; returns (volume, address). Raises what the media raise."""
        while True:
            if self._volume is None:
                self._volume = self._stack.enter_context(self.site.writable_volume(self.pool, self._exclude))
            vol = self._volume
            try:
                addr = vol.append(block)
            except VolumeFull:
                vol.sync()
                self._exclude.add(vol.name)
                self.full.append(vol.name)
                self._volume = None
                continue
            self.dirty[vol.name] = vol
            return vol.name, addr

    def sync(self) -> None:
        """Make everything written so far durable."""
        for vol in self.dirty.values():
            vol.sync()
        self.dirty.clear()

    def close(self) -> None:
        """Release the volumes (unmounting tapes) and their locks."""
        self._volume = None
        self._stack.close()


def copy_extents(site: Site, source: str, extents: list[Extent], target: TargetWriter) -> VolumeMove:
    """Move ``extents`` (all on volume ``source``) to ``target``'s pool and repoint the catalog.

    The source volume's writer lock is held throughout, so no backup appends to it meanwhile;
    if a job holds it, nothing is done (``busy`` in the result). When nothing
    catalogued remains on the source afterwards it returns to scratch (a disk volume's file is
    removed, as expiration does).

    Raises:
        MigrationFailed: the source cannot be read or the target written; the catalog still
            points at the source, which is unchanged.
    """
    with site.volume_lock(source) as held:
        if not held:
            return VolumeMove(source, 0, 0, 0, [], False, busy=True)
        src = site.open_volume(source)
        try:
            block_size = src.capabilities.block_size
            order, owned = occupied_blocks(src, extents)
            placed: dict[int, tuple[str, int]] = {}
            try:
                for b in order:
                    placed[b] = target.append(src.read(b))
                target.sync()
            except PipevaultError as exc:
                raise MigrationFailed(f"copying volume {source} to pool {target.pool} failed: {exc.message}",
                                      volume=source) from exc
        finally:
            src.close()
        with site.catalog.write() as conn:
            freed = _repoint(conn, source, owned, placed, site.clock.now())
    if freed:
        _erase(site, source)
    targets = sorted({v for v, _ in placed.values()})
    return VolumeMove(source, len(extents), len(order), len(order) * block_size, targets, freed)


@dataclass
class _Piece:
    volume_id: int
    superblock: int
    offset: int
    length: int
    chunk_hash: bytes | None
    moved: list[tuple[str, int]] = field(default_factory=list)


def _repoint(conn: Connection, source: str, owned: dict[Extent, list[int]],
             placed: dict[int, tuple[str, int]], now: float) -> bool:
    """Point the moved location rows at their copies (one transaction, by the caller); returns
    whether the source volume was left empty and returned to scratch."""
    src = volume_rows.get_volume(conn, source)
    names = {v for v, _ in placed.values()}
    ids = volume_rows.volume_ids(conn, names) if names else {}
    by_version: dict[int, list[Extent]] = defaultdict(list)
    for e in owned:
        by_version[e.version_id].append(e)
    added: dict[int, int] = defaultdict(int)
    for vid, moved in by_version.items():
        rows = conn.execute(sa.select(locations.c.part, locations.c.volume_id, locations.c.superblock,
                                      locations.c.offset, locations.c.length, locations.c.chunk_hash)
                            .where(locations.c.version_id == vid).order_by(locations.c.part)).all()
        if not rows:
            continue  # expired meanwhile: its copy is simply dead
        pieces = [_Piece(int(r.volume_id), int(r.superblock), int(r.offset), int(r.length),
                         bytes(r.chunk_hash) if r.chunk_hash is not None else None) for r in rows]
        parts = {int(r.part): p for r, p in zip(rows, pieces, strict=True)}
        for e in moved:
            p = parts.get(e.part)
            if p is None or p.volume_id != src.id or p.superblock != e.superblock or not owned[e]:
                continue  # changed since planned: leave it where the catalog says it is
            for b in owned[e]:
                vol, addr = placed[b]
                if all(v != vol for v, _ in p.moved):
                    p.moved.append((vol, addr))
        new_rows: list[dict[str, object]] = []
        for p in pieces:
            if not p.moved:
                new_rows.append({"volume_id": p.volume_id, "superblock": p.superblock, "offset": p.offset,
                                 "length": p.length, "chunk_hash": p.chunk_hash})
                continue
            share, rest = divmod(p.length, len(p.moved))
            offset = p.offset
            for i, (vol, addr) in enumerate(p.moved):
                length = share + (rest if i == len(p.moved) - 1 else 0)
                new_rows.append({"volume_id": ids[vol], "superblock": addr, "offset": offset, "length": length,
                                 "chunk_hash": p.chunk_hash})
                added[ids[vol]] += length
                offset += length
        conn.execute(sa.delete(locations).where(locations.c.version_id == vid))
        conn.execute(sa.insert(locations), [{"version_id": vid, "part": i, **r} for i, r in enumerate(new_rows)])
    _move_chunks(conn, src.id, placed, ids)
    for vol_id, nbytes in added.items():
        conn.execute(sa.update(volumes).where(volumes.c.id == vol_id).values(
            used=volumes.c.used + nbytes,
            first_written=sa.func.coalesce(volumes.c.first_written, now), last_written=now,
            state=sa.case((volumes.c.state == "scratch", "filling"), else_=volumes.c.state)))
    holds = conn.execute(sa.select(sa.or_(sa.exists().where(locations.c.volume_id == src.id),
                                          sa.exists().where(chunks.c.volume_id == src.id)))).scalar()
    if holds or src.state == "scratch":
        return False
    volume_rows.set_state(conn, source, "scratch")
    return True


def _move_chunks(conn: Connection, source_id: int, placed: dict[int, tuple[str, int]],
                 ids: dict[str, int]) -> None:
    """Deduplicated chunk rows on the source whose superblock was copied follow it."""
    for h, sb in conn.execute(sa.select(chunks.c.hash, chunks.c.superblock)
                              .where(chunks.c.volume_id == source_id)).all():
        if int(sb) in placed:
            vol, addr = placed[int(sb)]
            conn.execute(sa.update(chunks).where(chunks.c.hash == h).values(volume_id=ids[vol], superblock=addr))


def _erase(site: Site, name: str) -> None:
    """The dead data of a volume just returned to scratch: a disk volume's file goes (its space
    comes back at once); a tape is erased when it is next taken for writing."""
    with site.catalog.read() as conn:
        vol = volume_rows.get_volume(conn, name)
    if vol.media_type != "tape":
        site.pool_directory(vol.pool).path_of(name).unlink(missing_ok=True)
