"""Consistency checks of a catalog: what ``pipevault catalog check`` reports.

Errors are contradictions that make restores or expiration wrong (two active versions of one
object, chunk reference counts that disagree with the references, data on a scratch volume,
copies whose originals are gone); warnings are states that are legal but worth a look
(sessions still running, versions bound to a class that is not defined).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog import migrations
from pipevault.catalog.database import Catalog
from pipevault.catalog.objects import REFS_FIELD, object_index, repeated_objects
from pipevault.catalog.schema import chunks, classes, locations, objects, sessions, versions, volumes


@dataclass(frozen=True)
class Finding:
    """One problem found: ``severity`` is ``error`` or ``warning``; ``count`` rows show it."""

    severity: str
    code: str
    message: str
    count: int


def _count(conn: Connection, query: sa.Select[Any]) -> int:
    return int(conn.execute(query).scalar_one())


def _checks(conn: Connection) -> list[Finding]:
    found: list[Finding] = []

    def add(severity: str, code: str, message: str, n: int) -> None:
        if n:
            found.append(Finding(severity, code, message, n))

    actives = (sa.select(versions.c.object_id).where(versions.c.state == "active")
               .group_by(versions.c.object_id).having(sa.func.count() > 1).subquery())
    add("error", "two_active", "objects with more than one active version",
        _count(conn, sa.select(sa.func.count()).select_from(actives)))
    refs = (sa.select(locations.c.chunk_hash, sa.func.count().label("n"))
            .where(locations.c.chunk_hash.is_not(None)).group_by(locations.c.chunk_hash).subquery())
    add("error", "chunk_refcount", "chunks whose reference count differs from their references",
        _count(conn, sa.select(sa.func.count()).select_from(
            chunks.outerjoin(refs, refs.c.chunk_hash == chunks.c.hash))
            .where(chunks.c.refcount != sa.func.coalesce(refs.c.n, 0))))
    add("error", "chunk_missing", "pieces referring to a chunk that is not catalogued",
        _count(conn, sa.select(sa.func.count()).select_from(
            refs.outerjoin(chunks, chunks.c.hash == refs.c.chunk_hash)).where(chunks.c.hash.is_(None))))
    add("error", "scratch_with_data", "scratch volumes holding catalogued data",
        _count(conn, sa.select(sa.func.count()).select_from(volumes).where(
            volumes.c.state == "scratch",
            sa.or_(sa.exists().where(locations.c.volume_id == volumes.c.id),
                   sa.exists().where(chunks.c.volume_id == volumes.c.id)))))
    add("error", "dangling_refs", "versions repeating chunks of an object no longer catalogued (they "
        "cannot be restored alone; expiration holds originals since copies record them)", _dangling_refs(conn))
    add("warning", "undefined_class", "versions bound to an undefined class (STANDARD rules apply)",
        _count(conn, sa.select(sa.func.count()).select_from(versions).where(
            ~sa.exists().where(classes.c.name == versions.c.class_name),
            versions.c.class_name != "STANDARD")))
    add("warning", "running_sessions", "sessions still running (or interrupted)",
        _count(conn, sa.select(sa.func.count()).select_from(sessions).where(sessions.c.status == "running")))
    add("warning", "empty_objects", "objects without any version (the next expiration removes them)",
        _count(conn, sa.select(sa.func.count()).select_from(objects).where(
            ~sa.exists().where(versions.c.object_id == objects.c.id))))
    return found


def _dangling_refs(conn: Connection) -> int:
    """Versions whose recorded refs (``objects.REFS_FIELD``) name an object index that no
    version of their session has."""
    copies = conn.execute(sa.select(versions.c.session_id, versions.c.attributes).where(
        versions.c.attributes.like(f'%"{REFS_FIELD}":[%'))).all()
    if not copies:
        return 0
    sessions_ = sorted({int(sid) for sid, _ in copies if sid is not None})
    present: set[tuple[int, int]] = set()
    for start in range(0, len(sessions_), 500):
        for sid, attributes in conn.execute(sa.select(versions.c.session_id, versions.c.attributes).where(
                versions.c.session_id.in_(sessions_[start:start + 500]))):
            index = object_index(attributes)
            if index is not None:
                present.add((int(sid), index))
    return sum(1 for sid, attributes in copies if sid is not None
               and any((int(sid), r) not in present for r in repeated_objects(attributes)))


def check(catalog: Catalog) -> list[Finding]:
    """Every problem found in the catalog, errors first (an empty list: all consistent)."""
    found: list[Finding] = []
    with catalog.read() as conn:
        if catalog.dialect == "sqlite":
            result = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check")]
            if result != ["ok"]:
                found.append(Finding("error", "database_damaged", "; ".join(result[:5]), len(result)))
        version = migrations.current_version(conn)
        if version != migrations.LATEST:
            found.append(Finding("error", "schema_version",
                                 f"schema version {version}, expected {migrations.LATEST}", 1))
        found += _checks(conn)
    return sorted(found, key=lambda f: (f.severity != "error", f.code))
