"""Catalog backup and restore: a consistent copy taken while the catalog is in use.

A backup is always an SQLite catalog file of the same schema, whatever the source database:

- from SQLite, with SQLite's online backup API, which copies pages while writers go on and
  restarts or finishes so that the copy is one committed state;
- from PostgreSQL, by copying every table inside one ``REPEATABLE READ`` transaction (one
  snapshot for all tables) into a new SQLite catalog.

A backup file can be opened directly as a catalog (``sqlite:///path``) or loaded into an
empty catalog of either kind with :func:`restore`. The copy is written beside the
destination and renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog import migrations, schema
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogBackupFailed, CatalogError, CatalogSchemaTooNew

_ROWS = 10_000


@dataclass(frozen=True)
class CopyResult:
    """Rows copied per table, and the schema version of the copy."""

    path: str
    rows: dict[str, int]
    schema_version: int


def copy_tables(src: Connection, dst: Connection) -> dict[str, int]:
    """Copy every catalog table's rows from ``src`` into the empty tables of ``dst``.

    Both connections must be inside transactions; the caller commits ``dst``. Rows keep
    their primary keys. Tables are copied parents first so foreign keys hold throughout.
    """
    counts: dict[str, int] = {}
    for table in schema.TABLES_IN_ORDER:
        n = 0
        result = src.execution_options(yield_per=_ROWS).execute(sa.select(table))
        for part in result.partitions():
            dst.execute(sa.insert(table), [row._asdict() for row in part])
            n += len(part)
        counts[table.name] = n
    return counts


def _sqlite_online_backup(catalog: Catalog, dest: Path) -> None:
    raw = catalog.engine.raw_connection()
    try:
        target = sqlite3.connect(dest)
        try:
            # All pages in one step, inside one read transaction: in WAL mode writers go on
            # meanwhile, and the copy is the snapshot the step began with. (Copying in
            # several steps would restart after every concurrent commit, maybe forever.)
            raw.driver_connection.backup(target)  # type: ignore[union-attr]
        finally:
            target.close()
    finally:
        raw.close()


def _postgres_dump(catalog: Catalog, dest: Path) -> None:
    copy = Catalog.open("sqlite:///" + str(dest), clock=catalog.clock)
    try:
        with catalog.engine.connect() as src_conn:
            src_conn.execution_options(isolation_level="REPEATABLE READ")
            with src_conn.begin():
                src_conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                with copy.write() as dst:
                    copy_tables(src_conn, dst)
    finally:
        copy.close()


def backup(catalog: Catalog, dest: Path) -> CopyResult:
    """Write a consistent copy of the catalog to ``dest`` (an SQLite file).

    Raises:
        CatalogBackupFailed: ``dest`` exists, or the copy failed (nothing is left behind).
    """
    dest = Path(dest)
    if dest.exists():
        raise CatalogBackupFailed(f"backup destination {dest} already exists",
                                  hint="Choose a new file name; backups are never overwritten.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        if catalog.dialect == "sqlite":
            _sqlite_online_backup(catalog, tmp)
        else:
            _postgres_dump(catalog, tmp)
        copy = Catalog.open("sqlite:///" + str(tmp), upgrade=False)
        try:
            with copy.read() as conn:
                version = migrations.current_version(conn)
            rows = copy.counts()
        finally:
            copy.close()
        _drop_wal(tmp)
        os.replace(tmp, dest)
    except (CatalogError, OSError, sqlite3.Error) as exc:
        for leftover in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, CatalogBackupFailed):
            raise
        raise CatalogBackupFailed(f"catalog backup to {dest} failed: {exc}") from exc
    return CopyResult(str(dest), rows, version)


def _drop_wal(path: Path) -> None:
    """Fold the copy's write-ahead log into the file, so the backup is a single file."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()


def restore(source: Path, catalog: Catalog) -> CopyResult:
    """Load the backup file ``source`` into ``catalog``, which must hold no data.

    A backup made by an older pipevault is upgraded (on a temporary copy) first.

    Raises:
        CatalogBackupFailed: the source is missing or not a catalog, or the target holds data.
        CatalogSchemaTooNew: the backup is from a newer pipevault.
    """
    source = Path(source)
    if not source.is_file():
        raise CatalogBackupFailed(f"catalog backup {source} does not exist")
    if any(catalog.counts().values()):
        raise CatalogBackupFailed(f"cannot restore into {catalog.url}: it already holds data",
                                  hint="Restore into a new, empty catalog.")
    with tempfile.TemporaryDirectory(prefix="pipevault-restore-") as tmpdir:
        work = Path(tmpdir) / "catalog.db"
        shutil.copyfile(source, work)
        try:
            src = Catalog.open("sqlite:///" + str(work))
        except CatalogError as exc:
            if isinstance(exc, CatalogSchemaTooNew):
                raise
            raise CatalogBackupFailed(f"{source} is not a usable catalog backup: {exc.message}") from exc
        try:
            with src.read() as src_conn, catalog.write() as dst:
                rows = copy_tables(src_conn, dst)
                if catalog.dialect == "postgresql":
                    _reset_sequences(dst)
                version = migrations.current_version(dst)
        finally:
            src.close()
    return CopyResult(str(source), rows, version)


def _reset_sequences(conn: Connection) -> None:
    """Move each id sequence past the ids the copy brought, so new rows do not collide."""
    for table in schema.TABLES_IN_ORDER:
        if "id" in table.c:
            conn.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))
