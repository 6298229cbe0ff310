"""Expiration processing: delete the versions policy no longer keeps, then free what they held.

The rules are Storage Protect's backup and archive copy-group rules, applied with the class
each object's newest version is bound to (undefined classes fall back to ``STANDARD``):

- an object that exists on its node keeps its active version and at most
  ``versions_exists - 1`` inactive versions, each for ``retain_extra_days`` after it became
  inactive;
- a deleted object (no active version) keeps at most ``versions_deleted`` versions; the
  newest for ``retain_only_days``, the others for ``retain_extra_days``;
- an archive version is kept until its own expiry date, else ``archive_days`` after it was
  stored;
- a version whose chunks a version kept repeats (a backup stores a chunk once per session
  and later copies refer to it: ``objects.REFS_FIELD``) is held, whatever its rules say,
  until no version kept repeats it: deleting it would lose the copy's data.

Deleting a version deletes its locations and releases its chunk references; chunks left
unreferenced are deleted and reported; objects left without versions are deleted; volumes
left without data return to ``scratch`` (write-once volumes become ``expired``: they are
never written again, only discarded whole).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog import chunks as chunk_rows
from pipevault.catalog.classes import DAY, DEFAULT_CLASS, ManagementClass, policies
from pipevault.catalog.database import Catalog
from pipevault.catalog.objects import REFS_FIELD, object_index, repeated_objects
from pipevault.catalog.schema import chunks, locations, objects, versions, volumes
from pipevault.clock import Clock

_BATCH = 1000


@dataclass(frozen=True)
class ExpirationReport:
    """What one expiration run did."""

    versions_expired: int
    objects_removed: int
    chunks_released: tuple[chunk_rows.Chunk, ...]
    volumes_to_scratch: tuple[str, ...]
    volumes_expired: tuple[str, ...]
    versions_held: int = 0  # due to expire, kept because versions kept repeat their chunks


def _doomed_backups(conn: Connection, classes: dict[str, ManagementClass],
                    default: ManagementClass, now: float) -> list[int]:
    active = versions.alias("active")
    active_class = (sa.select(active.c.class_name)
                    .where(active.c.object_id == versions.c.object_id, active.c.state == "active")
                    .limit(1).scalar_subquery())
    query = (sa.select(versions.c.id, versions.c.object_id, versions.c.class_name,
                       versions.c.deactivated, active_class.label("active_class"))
             .where(versions.c.state == "inactive")
             .order_by(versions.c.object_id, versions.c.deactivated.desc(), versions.c.id.desc()))
    doomed: list[int] = []
    current: int | None = None
    rank = 0
    policy = default
    exists = False
    for vid, oid, class_name, deactivated, active_cls in conn.execute(query):
        if oid != current:
            current, rank = oid, 0
            exists = active_cls is not None
            policy = classes.get(active_cls if exists else class_name, default)
        keep = policy.versions_exists - 1 if exists else policy.versions_deleted
        days = policy.retain_only_days if (not exists and rank == 0) else policy.retain_extra_days
        if rank >= keep or now - (deactivated or 0.0) >= days * DAY:
            doomed.append(int(vid))
        rank += 1
    return doomed


def _doomed_archives(conn: Connection, classes: dict[str, ManagementClass],
                     default: ManagementClass, now: float) -> list[int]:
    doomed: list[int] = []
    for vid, class_name, stored, expires in conn.execute(
            sa.select(versions.c.id, versions.c.class_name, versions.c.stored, versions.c.expires)
            .where(versions.c.state == "archive")):
        days = classes.get(class_name, default).archive_days
        until = expires if expires is not None else stored + days * DAY
        if until <= now:
            doomed.append(int(vid))
    return doomed


def _held_by_copies(conn: Connection, doomed: list[int]) -> set[int]:
    """The ``doomed`` versions that versions kept (or held themselves) repeat chunks of."""
    if not doomed:
        return set()
    gone = set(doomed)
    sessions: set[int] = set()
    for start in range(0, len(doomed), _BATCH):
        sessions.update(int(s) for s in conn.execute(
            sa.select(versions.c.session_id).where(versions.c.id.in_(doomed[start:start + _BATCH]),
                                                   versions.c.session_id.is_not(None)).distinct()).scalars())
    # Only sessions with copies in them matter: versions naming what they repeat.
    copies = conn.execute(sa.select(versions.c.id, versions.c.session_id, versions.c.attributes).where(
        versions.c.session_id.in_(sorted(sessions)), versions.c.attributes.like(f'%"{REFS_FIELD}":[%'))).all()
    if not copies:
        return set()
    at: dict[tuple[int, int], tuple[int, str]] = {}  # (session, object index) -> doomed version
    ids = sorted(gone)
    for start in range(0, len(ids), _BATCH):
        for vid, sid, attributes in conn.execute(sa.select(
                versions.c.id, versions.c.session_id, versions.c.attributes).where(
                versions.c.id.in_(ids[start:start + _BATCH]), versions.c.session_id.in_(
                    sorted({int(c.session_id) for c in copies})))):
            index = object_index(attributes)
            if index is not None:
                at[(int(sid), index)] = (int(vid), attributes)
    held: set[int] = set()
    todo = [(int(sid), attributes) for vid, sid, attributes in copies if int(vid) not in gone]
    while todo:
        sid, attributes = todo.pop()
        for ref in repeated_objects(attributes):
            source = at.get((sid, ref))
            if source is not None and source[0] not in held:
                held.add(source[0])
                todo.append((sid, source[1]))  # what it repeats in turn is needed too
    return held


def _delete(conn: Connection, ids: list[int], touched_objects: set[int],
            touched_volumes: set[int]) -> list[chunk_rows.Chunk]:
    in_batch = locations.c.version_id.in_(ids)
    refs = Counter({bytes(h): int(n) for h, n in conn.execute(
        sa.select(locations.c.chunk_hash, sa.func.count())
        .where(in_batch, locations.c.chunk_hash.is_not(None)).group_by(locations.c.chunk_hash))})
    touched_volumes.update(int(v) for v in conn.execute(
        sa.select(locations.c.volume_id).where(in_batch).distinct()).scalars())
    touched_objects.update(int(o) for o in conn.execute(
        sa.select(versions.c.object_id).where(versions.c.id.in_(ids)).distinct()).scalars())
    conn.execute(sa.delete(locations).where(in_batch))
    conn.execute(sa.delete(versions).where(versions.c.id.in_(ids)))
    released = chunk_rows.release(conn, refs)
    if released:
        touched_volumes.update(int(v) for v in conn.execute(
            sa.select(volumes.c.id).where(volumes.c.name.in_({c.volume for c in released}))).scalars())
    return released


def _free_volumes(conn: Connection, volume_ids: set[int]) -> tuple[list[str], list[str]]:
    to_scratch: list[str] = []
    expired: list[str] = []
    if not volume_ids:
        return to_scratch, expired
    has_pieces = sa.exists().where(locations.c.volume_id == volumes.c.id)
    has_chunks = sa.exists().where(chunks.c.volume_id == volumes.c.id)
    empty = conn.execute(sa.select(volumes.c.id, volumes.c.name, volumes.c.write_once)
                         .where(volumes.c.id.in_(volume_ids), volumes.c.state.in_(("filling", "full")),
                                ~has_pieces, ~has_chunks).order_by(volumes.c.name)).all()
    for vid, name, write_once in empty:
        if write_once:
            conn.execute(sa.update(volumes).where(volumes.c.id == vid).values(state="expired"))
            expired.append(name)
        else:
            conn.execute(sa.update(volumes).where(volumes.c.id == vid).values(
                state="scratch", used=0, first_written=None, last_written=None))
            to_scratch.append(name)
    return to_scratch, expired


def expire(catalog: Catalog, *, clock: Clock | None = None, batch: int = _BATCH) -> ExpirationReport:
    """Run expiration as of ``clock.now()`` (the catalog's clock by default).

    Deletes in transactions of ``batch`` versions, so writers are never blocked for long;
    each transaction is complete on its own (versions, their locations and chunk references
    go together), so an interrupted run leaves a consistent catalog and the next run
    finishes the work. A volume still ``filling`` is returned to scratch only when nothing
    catalogued remains on it; the media layer must check a volume's state before appending.

    Raises:
        CatalogUnavailable: the database failed (work already committed stays done).
    """
    now = (clock or catalog.clock).now()
    with catalog.read() as conn:
        classes = policies(conn)
        default = classes.get(DEFAULT_CLASS.name, DEFAULT_CLASS)
        doomed = _doomed_backups(conn, classes, default, now) + _doomed_archives(conn, classes, default, now)
        held = _held_by_copies(conn, doomed)
    doomed = [vid for vid in doomed if vid not in held]
    touched_objects: set[int] = set()
    touched_volumes: set[int] = set()
    released: list[chunk_rows.Chunk] = []
    for start in range(0, len(doomed), batch):
        with catalog.write() as conn:
            released.extend(_delete(conn, doomed[start:start + batch], touched_objects, touched_volumes))
    removed = 0
    with catalog.write() as conn:
        ids = sorted(touched_objects)
        no_versions = ~sa.exists().where(versions.c.object_id == objects.c.id)
        for start in range(0, len(ids), batch):
            removed += conn.execute(sa.delete(objects).where(
                objects.c.id.in_(ids[start:start + batch]), no_versions)).rowcount
        to_scratch, expired = _free_volumes(conn, touched_volumes)
    return ExpirationReport(len(doomed), removed, tuple(released), tuple(to_scratch), tuple(expired), len(held))
