"""Numbered schema migrations and the ``schema_version`` table that records them.

A new catalog and an old one take the same path: every step after the recorded version runs
in order, each in its own transaction together with the row that records it, so a failing
step leaves the catalog at the previous version. Steps are never edited once released; a
schema change is a new step at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog import schema
from pipevault.catalog.errors import CatalogMigrationFailed, CatalogSchemaTooNew
from pipevault.clock import Clock

if TYPE_CHECKING:
    from pipevault.catalog.database import Catalog

# Any constant: PostgreSQL serialises concurrent upgrades on this advisory lock.
_PG_LOCK_KEY = 0x70697065


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply`` runs inside the step's transaction."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_core(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[
        schema.pools, schema.volumes, schema.classes, schema.nodes, schema.filespaces,
        schema.sessions, schema.objects, schema.versions, schema.locations,
    ])


def _v2_chunks(conn: Connection) -> None:
    schema.chunks.create(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "nodes, file spaces, objects, versions, locations, volumes, pools, sessions, "
                 "classes", _v1_core),
    Migration(2, "chunks with reference counts for duplicate discard", _v2_chunks),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database (0 for an empty database)."""
    if not sa.inspect(conn).has_table(schema.schema_version.name):
        return 0
    found = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar_one()
    return int(found or 0)


def check_version(conn: Connection) -> int:
    """The database's schema version, refusing one newer than this code knows.

    Raises:
        CatalogSchemaTooNew: the database is at a version above :data:`LATEST`.
    """
    version = current_version(conn)
    if version > LATEST:
        raise CatalogSchemaTooNew(f"catalog schema version {version} is newer than {LATEST}, "
                                  "the newest this pipevault knows")
    return version


def upgrade(catalog: Catalog, clock: Clock, target: int = LATEST) -> list[int]:
    """Apply every migration after the database's version up to ``target``.

    Safe to call from several processes at once: each step re-reads the version under the
    write lock (SQLite) or an advisory lock (PostgreSQL) and skips what another applied.

    Returns:
        The versions applied by this call, in order.

    Raises:
        CatalogSchemaTooNew: the database is newer than this code.
        CatalogUnavailable: the database cannot be reached.
        CatalogMigrationFailed: a step failed; the database stays at the step before it.
    """
    applied: list[int] = []
    for step in MIGRATIONS:
        if step.version > target:
            break
        with catalog.write() as conn:
            if catalog.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            if check_version(conn) >= step.version:
                continue
            try:
                if step.version == 1:
                    schema.schema_version.create(conn)
                step.apply(conn)
                conn.execute(sa.insert(schema.schema_version).values(
                    version=step.version, description=step.description, applied=clock.now()))
            except sa.exc.SQLAlchemyError as e:
                # Raised inside the transaction, so the step is rolled back with it.
                raise CatalogMigrationFailed(f"schema migration {step.version} "
                                             f"({step.description}) failed: {e}") from e
        applied.append(step.version)
    return applied
