"""The batched writer: catalogues a session's object versions many rows per transaction.

A backup of a million files must not be bound by the catalog. :class:`BatchWriter` collects
versions in memory and writes each batch in one transaction with a handful of multi-row
statements (``executemany`` and multi-row ``INSERT .. RETURNING``): objects are looked up
and created together, previous active versions deactivated together, versions, locations and
duplicate-discard chunk references inserted together, and volume and session totals updated
once per batch.

Only data already durable on media may be handed to the writer (an object is in the catalog
only after its data is safe); what was added is in the catalog after :meth:`BatchWriter.flush`
or the end of a ``with`` block.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from pipevault.catalog import nodes as node_rows
from pipevault.catalog import sessions as session_rows
from pipevault.catalog.bulk import allocate_ids, insert_new_keys, insert_rows
from pipevault.catalog.database import Catalog, aborted_for_another
from pipevault.catalog.errors import CatalogConflict, CatalogUnavailable
from pipevault.catalog.schema import chunks, locations, objects, versions, volumes
from pipevault.catalog.volumes import volume_ids

# Object keys looked up per statement (three bound values each, within SQLite's limit).
_LOOKUP = 2000
# Times a batch is written when PostgreSQL aborts it for another transaction (a deadlock
# or serialization failure): the writers' own rows are locked in one order, so this is for
# a cycle with some other writer, which a second try after it has gone on does not meet.
_ATTEMPTS = 3


class Piece(NamedTuple):
    """Where one piece of a version's data lies: the object's bytes ``offset`` to
    ``offset + length`` are on ``volume``, from the superblock at block number ``superblock``
    on. A piece that is a duplicate-discard chunk names its keyed hash; the first piece with
    a hash stores that chunk, later ones reference it. (Named tuples: immutable, and built
    in a third of a frozen dataclass's time, which shows at a million objects.)"""

    volume: str
    superblock: int
    offset: int
    length: int
    chunk_hash: bytes | None = None


class NewVersion(NamedTuple):
    """One object version to catalogue.

    ``pieces`` are in data order and may span volumes. ``stored`` is the backup or archive
    date (the writer's clock when None). ``attributes`` is JSON text (mode, owner, mtime...).
    An archive version (``archive=True``) carries a description and optionally its own
    expiry date; it never deactivates the object's backup versions.
    """

    filespace: str
    hl: str
    ll: str
    size: int
    pieces: tuple[Piece, ...] = ()
    stored: float | None = None
    obj_type: int = 0
    class_name: str = "STANDARD"
    attributes: str = "{}"
    digest: bytes | None = None
    archive: bool = False
    description: str = ""
    expires: float | None = None


# Binding parameters is much of SQLite's cost per row, so a batch in which the optional
# columns are all NULL (the common case) is inserted without them.
_SQLITE_NEW_OBJECTS = sqlite.insert(objects).on_conflict_do_nothing(
    index_elements=[objects.c.filespace_id, objects.c.hl, objects.c.ll])
_OBJECT_COLUMNS = ("id", "filespace_id", "hl", "ll", "obj_type")
_VERSION_COLUMNS = ("id", "object_id", "session_id", "state", "class_name", "stored", "size",
                    "attributes", "description")
_VERSION_OPTIONAL = ("deactivated", "expires", "digest")
_LOCATION_COLUMNS = ("version_id", "part", "volume_id", "superblock", "offset", "length")
_LOCATION_OPTIONAL = ("chunk_hash",)


def _chain(batch: list[tuple[NewVersion, float]],
           object_ids: list[int]) -> tuple[list[float | None], dict[int, float]]:
    """When each batch entry was deactivated by a later backup of its object in the same
    batch (None: it stays active), and each object's first backup date in the batch (when
    its previously catalogued active version is deactivated)."""
    first_backup: dict[int, float] = {}
    for (v, stored), oid in zip(batch, object_ids, strict=True):
        if not v.archive and oid not in first_backup:
            first_backup[oid] = stored
    deactivated_at: list[float | None] = [None] * len(batch)
    if len(first_backup) == sum(1 for v, _ in batch if not v.archive):
        return deactivated_at, first_backup
    later: dict[int, float] = {}
    for i in range(len(batch) - 1, -1, -1):
        v, stored = batch[i]
        if not v.archive:
            deactivated_at[i] = later.get(object_ids[i])
            later[object_ids[i]] = stored
    return deactivated_at, first_backup


def _deactivate(conn: Connection, when_of: dict[int, float]) -> None:
    """Make the active backup version of each object in ``when_of`` inactive as of its date.

    The versions are found first and updated by id. An UPDATE that finds its rows through
    the (object_id, state) index it changes makes SQLite collect them before changing any,
    a statement at a time: 20,000 objects took 1.34 s that way and 0.26 s by id (an
    incremental backup of changed files catalogued at 110-135 us an object, against 31 for
    new ones). The driver gets plain tuples: SQLAlchemy's per-row parameters cost 12 us more.
    """
    oids = sorted(when_of)
    rows: list[tuple[float, int]] = []
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for start in range(0, len(oids), _LOOKUP):
        part = tuple(oids[start:start + _LOOKUP])
        marks = ",".join([mark] * len(part))
        sql = f"SELECT id, object_id FROM versions WHERE state = 'active' AND object_id IN ({marks})"
        for vid, oid in conn.exec_driver_sql(sql, part).all():  # one fetchall, not a fetch per row
            rows.append((when_of[oid], vid))
    if rows:
        conn.exec_driver_sql(f"UPDATE versions SET state = 'inactive', deactivated = {mark} WHERE id = {mark}",
                             rows)


class BatchWriter:
    """Catalogues the versions of one session in batched transactions.

    Not thread-safe: one thread owns a writer (several writers for several sessions may run
    at once). Use as a context manager: the pending batch is written when the block ends
    normally and dropped when it raises.

    Args:
        catalog: the open catalog.
        session_id: the session (from ``begin_session``) the versions belong to; its node
            owns the file spaces named.
        batch_size: versions per transaction.

    Raises (from :meth:`add` when it flushes, and :meth:`flush`):
        CatalogNotFound: a piece names a volume that is not in the catalog.
        CatalogConflict: a write contradicts the catalog (the batch is rolled back).
        CatalogUnavailable: the database failed (the batch is rolled back and kept, so a
            later flush retries it). A batch the server aborted to break a deadlock or a
            serialization conflict is written again at once, up to three times in all.
    """

    def __init__(self, catalog: Catalog, session_id: int, *, batch_size: int = 10_000) -> None:
        if batch_size < 1:
            raise CatalogConflict("batch_size must be at least 1")
        self._catalog = catalog
        self._session_id = session_id
        self._batch_size = batch_size
        self._pending: list[tuple[NewVersion, float]] = []
        self._filespaces: dict[str, int] = {}
        self._volumes: dict[str, int] = {}
        with catalog.read() as conn:
            node = session_rows.get_session(conn, session_id).node
            self._node_id = node_rows.node_id(conn, node) if node is not None else None
        self.written = 0
        self.retries = 0  # transactions run again after the server aborted them (see flush)

    def add(self, version: NewVersion) -> None:
        """Queue one version; writes the batch when it is full.

        Backup versions of one object must come in the order they were stored: each one
        deactivates the object's active version, as a newer backup does.
        """
        stored = version.stored if version.stored is not None else self._catalog.clock.now()
        self._pending.append((version, stored))
        if len(self._pending) >= self._batch_size:
            self.flush()

    def add_all(self, versions_: Iterable[NewVersion]) -> None:
        """Queue many versions (see :meth:`add`)."""
        for v in versions_:
            self.add(v)

    def flush(self) -> None:
        """Write every queued version in one transaction (a barrier: returns when committed)."""
        if not self._pending:
            return
        attempt = 1
        while True:
            try:
                with self._catalog.write() as conn:
                    self._write(conn, self._pending)
                break
            except BaseException as exc:
                # File spaces created in the rolled-back transaction do not exist.
                self._filespaces.clear()
                if not (isinstance(exc, CatalogUnavailable) and aborted_for_another(exc)
                        and attempt < _ATTEMPTS):
                    raise
            # A moment of random length, so that two writers aborted together do not meet
            # again in step.
            self._catalog.clock.sleep(random.uniform(0.01, 0.05) * attempt)
            attempt += 1
            self.retries += 1
        self.written += len(self._pending)
        self._pending = []

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._pending = []

    def _write(self, conn: Connection, batch: list[tuple[NewVersion, float]]) -> None:
        now = self._catalog.clock.now()
        first_use: dict[str, float] = {}
        for v, stored in batch:
            if stored < first_use.get(v.filespace, float("inf")):
                first_use[v.filespace] = stored
        fs_ids = self._filespace_ids(conn, first_use)
        vol_ids = self._volume_ids(conn, {p.volume for v, _ in batch for p in v.pieces})
        keys = [(fs_ids[v.filespace], v.hl, v.ll) for v, _ in batch]
        object_ids, existing = self._object_ids(conn, batch, keys)

        deactivated_at, first_backup = _chain(batch, object_ids)
        if existing:
            _deactivate(conn, {oid: when for oid, when in first_backup.items() if oid in existing})

        version_ids = allocate_ids(conn, versions, len(batch))
        sid = self._session_id
        optional = (any(off is not None for off in deactivated_at)
                    or any(v.expires is not None or v.digest is not None for v, _ in batch))
        rows = [(vid, oid, sid, "archive" if v.archive else ("active" if off is None else "inactive"),
                 v.class_name, stored, v.size, v.attributes, v.description,
                 *((off, v.expires, v.digest) if optional else ()))
                for (v, stored), vid, oid, off in zip(batch, version_ids, object_ids, deactivated_at,
                                                      strict=True)]
        insert_rows(conn, versions, _VERSION_COLUMNS + (_VERSION_OPTIONAL if optional else ()), rows)

        piece_rows: list[tuple[Any, ...]] = []
        volume_bytes: dict[int, int] = defaultdict(int)
        volume_last: dict[int, float] = {}
        volume_first: dict[int, float] = {}
        chunk_refs: dict[bytes, list[Any]] = {}
        total = 0
        append = piece_rows.append
        for (v, stored), vid in zip(batch, version_ids, strict=True):
            total += v.size
            for part, p in enumerate(v.pieces):
                vol = vol_ids[p.volume]
                if stored > volume_last.get(vol, -1.0):
                    volume_last[vol] = stored
                if stored < volume_first.get(vol, float("inf")):
                    volume_first[vol] = stored
                if p.chunk_hash is None:
                    append((vid, part, vol, p.superblock, p.offset, p.length))
                    volume_bytes[vol] += p.length
                    continue
                append((vid, part, vol, p.superblock, p.offset, p.length, p.chunk_hash))
                if p.chunk_hash in chunk_refs:
                    chunk_refs[p.chunk_hash][0] += 1
                else:
                    chunk_refs[p.chunk_hash] = [1, vol, p]
        if chunk_refs:
            insert_rows(conn, locations, _LOCATION_COLUMNS + _LOCATION_OPTIONAL,
                        [r if len(r) == 7 else (*r, None) for r in piece_rows])
        else:
            insert_rows(conn, locations, _LOCATION_COLUMNS, piece_rows)
        if chunk_refs:
            self._add_chunk_refs(conn, chunk_refs, volume_bytes, now)
        if volume_last:
            self._account_volumes(conn, volume_bytes, volume_first, volume_last)
        session_rows.add_totals(conn, self._session_id, len(batch), total)

    def _filespace_ids(self, conn: Connection, first_use: dict[str, float]) -> dict[str, int]:
        """Ids of the named file spaces, registered (dated by their first version) if new."""
        for name in first_use.keys() - self._filespaces.keys():
            if self._node_id is None:
                raise CatalogConflict(f"session {self._session_id} has no node to own file space {name!r}")
            self._filespaces[name] = node_rows.ensure_filespace(conn, self._node_id, name,
                                                                now=first_use[name])
        return self._filespaces

    def _volume_ids(self, conn: Connection, names: set[str]) -> dict[str, int]:
        missing = names - self._volumes.keys()
        if missing:
            self._volumes.update(volume_ids(conn, missing))
        return self._volumes

    def _object_ids(self, conn: Connection, batch: list[tuple[NewVersion, float]],
                    keys: list[tuple[int, str, str]]) -> tuple[list[int], set[int]]:
        """The object id of every batch entry, creating new objects; and the set of ids
        that existed before this batch."""
        unique = list(dict.fromkeys(keys))
        if conn.dialect.name == "sqlite" and len(unique) == len(keys):
            # The usual case: every object of the batch named once (see below).
            fresh = allocate_ids(conn, objects, len(keys))
            inserted = insert_rows(conn, objects, _OBJECT_COLUMNS,
                                   [(i, *k, v.obj_type) for i, k, (v, _) in zip(fresh, keys, batch, strict=True)],
                                   statement=_SQLITE_NEW_OBJECTS)
            if inserted == len(keys):
                return fresh, set()
            found = self._lookup(conn, keys)
            created = set(fresh)
            return [found[k] for k in keys], {i for i in found.values() if i not in created}
        obj_type = {k: v.obj_type for k, (v, _) in zip(keys, batch, strict=True)}
        if conn.dialect.name == "sqlite":
            # Under SQLite's single write lock: insert every key with fresh ids, skipping
            # those that exist; when nothing was skipped (the usual first backup of a
            # directory) no lookup is needed at all.
            fresh = allocate_ids(conn, objects, len(unique))
            inserted = insert_rows(conn, objects, _OBJECT_COLUMNS,
                                   [(i, *k, obj_type[k]) for i, k in zip(fresh, unique, strict=True)],
                                   statement=_SQLITE_NEW_OBJECTS)
            if inserted == len(unique):
                ids = dict(zip(unique, fresh, strict=True))
                return [ids[k] for k in keys], set()
            found = self._lookup(conn, unique)
            created = set(fresh)
            return [found[k] for k in keys], {i for i in found.values() if i not in created}
        # PostgreSQL, with concurrent writers: the keys are staged and moved with
        # ON CONFLICT DO NOTHING, which waits for a session inserting the same key.
        object_of: dict[tuple[int, str, str], int] = {}
        existing: set[int] = set()
        todo = unique
        while todo:
            got, new = insert_new_keys(conn, objects, ("filespace_id", "hl", "ll"), _OBJECT_COLUMNS[1:],
                                       [(*k, obj_type[k]) for k in todo])
            object_of.update(got)
            there = {i for i in got.values() if i not in new}
            if not there:
                break
            # Hold the existing objects until commit, in id order (no deadlock between two
            # writers): a concurrent session's new active version is then committed and
            # seen by the deactivation that follows, so an object never has two.
            held = set(conn.execute(sa.select(objects.c.id).where(objects.c.id.in_(sorted(there)))
                                    .order_by(objects.c.id).with_for_update()).scalars())
            existing |= held
            # Expiration deletes an object left without versions; one it deleted between
            # the insert and the lock is gone, and is created again.
            todo = [k for k, i in got.items() if i in there - held]
        return [object_of[k] for k in keys], existing

    @staticmethod
    def _lookup(conn: Connection, keys: list[tuple[int, str, str]]) -> dict[tuple[int, str, str], int]:
        """The ids of the objects among ``keys`` (file space id, hl, ll) that exist."""
        found: dict[tuple[int, str, str], int] = {}
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        for start in range(0, len(keys), _LOOKUP):
            part = keys[start:start + _LOOKUP]
            # A join with a VALUES list probes the unique index once per key on both
            # databases; a row-value IN list would scan the whole table on SQLite.
            sql = ("SELECT o.id, k.column1, k.column2, k.column3 FROM (VALUES "
                   + ",".join([f"({mark},{mark},{mark})"] * len(part))
                   + ") AS k JOIN objects o ON o.filespace_id = k.column1 AND o.hl = k.column2"
                   " AND o.ll = k.column3")
            for oid, fs, hl, ll in conn.exec_driver_sql(sql, tuple(x for k in part for x in k)).all():
                found[(int(fs), hl, ll)] = int(oid)
        return found

    def _add_chunk_refs(self, conn: Connection, refs: dict[bytes, list[Any]],
                        volume_bytes: dict[int, int], now: float) -> None:
        hashes = list(refs)
        known: set[bytes] = set()
        for start in range(0, len(hashes), _LOOKUP):
            known.update(bytes(h) for h in conn.execute(
                sa.select(chunks.c.hash).where(chunks.c.hash.in_(hashes[start:start + _LOOKUP])))
                .scalars())
        for h, (_, vol, p) in refs.items():
            if h not in known:
                volume_bytes[vol] += p.length
        insert = (postgresql.insert(chunks) if self._catalog.dialect == "postgresql"
                  else sqlite.insert(chunks))
        # A concurrent session may store the same chunk first: the upsert then only counts,
        # and waits for that session's commit. In hash order, so that two sessions storing
        # the same new chunks (two nodes backing up the same content) never wait for each
        # other in a cycle, which PostgreSQL ends by aborting one as a deadlock.
        upsert = insert.on_conflict_do_update(
            index_elements=[chunks.c.hash],
            set_={"refcount": chunks.c.refcount + insert.excluded.refcount})
        conn.execute(upsert, [{"hash": h, "volume_id": vol, "superblock": p.superblock,
                               "offset": p.offset, "length": p.length, "refcount": n,
                               "created": now} for h, (n, vol, p) in sorted(refs.items())])

    @staticmethod
    def _account_volumes(conn: Connection, volume_bytes: dict[int, int], volume_first: dict[int, float],
                         volume_last: dict[int, float]) -> None:
        # Earliest and latest dates, not first and last written: the same in whatever order
        # sessions are catalogued (live, or rebuilt from media). Volumes in id order, as
        # every shared row is locked, so that concurrent sessions never deadlock.
        first: sa.BindParameter[float] = sa.bindparam("b_first")
        last: sa.BindParameter[float] = sa.bindparam("b_last")
        conn.execute(
            sa.update(volumes).where(volumes.c.id == sa.bindparam("b_id")).values(
                used=volumes.c.used + sa.bindparam("b_bytes"),
                first_written=sa.case((volumes.c.first_written < first, volumes.c.first_written),
                                      else_=first),
                last_written=sa.case((volumes.c.last_written > last, volumes.c.last_written),
                                     else_=last),
                state=sa.case((volumes.c.state == "scratch", "filling"), else_=volumes.c.state)),
            [{"b_id": vol, "b_bytes": volume_bytes.get(vol, 0), "b_first": volume_first[vol], "b_last": t}
             for vol, t in sorted(volume_last.items())])
