"""Catalog backup while in use, and restore into an empty catalog of either database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from catalog_helpers import backup, file, make_pool, snapshot

from pipevault.catalog import sessions
from pipevault.catalog.backup import backup as backup_catalog
from pipevault.catalog.backup import restore
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogBackupFailed
from pipevault.catalog.schema import TABLES_IN_ORDER, versions
from pipevault.catalog.writer import BatchWriter
from pipevault.clock import ManualClock


def _consistent(copy: Catalog) -> None:
    """Every session's totals match its versions: no batch is half in the copy."""
    with copy.read() as conn:
        for s in sessions.list_sessions(conn):
            n = conn.execute(sa.select(sa.func.count()).where(versions.c.session_id == s.id)).scalar_one()
            assert n == s.objects


def test_backup_while_a_writer_commits_is_a_consistent_prefix(
        catalog: Catalog, clock: ManualClock, tmp_path: Path) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/pre", f"f{i}") for i in range(50)], batch_size=20)
    with catalog.write() as conn:
        sid = sessions.begin_session(conn, "n2", "backup", started=clock.now())
    started = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with BatchWriter(catalog, sid, batch_size=25) as writer:
                i = 0
                while not stop.is_set() or i < 200:
                    writer.add(file("/live", f"f{i}", superblock=i))
                    i += 1
                    if i == 50:
                        started.set()
        except BaseException as exc:
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=write)
    thread.start()
    started.wait(30)
    try:
        during = backup_catalog(catalog, tmp_path / "during.db")
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    assert during.rows["versions"] >= 50
    with Catalog.open("sqlite:///" + during.path, clock=clock) as copy:
        _consistent(copy)
        taken = snapshot(copy)
    final = snapshot(catalog)
    for table, rows in taken.items():
        if table not in ("sessions", "volumes"):  # totals and use grow after the copy
            assert set(rows) <= set(final[table]), table
    after = backup_catalog(catalog, tmp_path / "after.db")
    assert after.rows == catalog.counts()
    with Catalog.open("sqlite:///" + after.path, clock=clock) as copy:
        assert snapshot(copy) == final


def test_restore_recreates_the_catalog_in_an_empty_database(
        catalog: Catalog, clock: ManualClock, tmp_path: Path) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/d", f"f{i}", stored=clock.now() + i / 3) for i in range(20)])
    clock.advance(10)
    backup(catalog, "n1", [file("/d", "f1", digest=b"\x00\xff" * 16, attributes='{"mode": 420}')])
    original = snapshot(catalog)
    copy = backup_catalog(catalog, tmp_path / "cat.bak")
    with pytest.raises(CatalogBackupFailed, match="exists"):
        backup_catalog(catalog, tmp_path / "cat.bak")
    with pytest.raises(CatalogBackupFailed, match="already holds data"):
        restore(Path(copy.path), catalog)
    # Restore into an empty catalog on the same database: a new SQLite file, or the
    # PostgreSQL catalog emptied (its sequences still count past the old ids).
    if catalog.dialect == "sqlite":
        target = Catalog.open("sqlite:///" + str(tmp_path / "restored.db"), clock=clock)
    else:
        with catalog.write() as conn:
            for table in reversed(TABLES_IN_ORDER):
                conn.execute(sa.delete(table))
        target = catalog
    try:
        result = restore(Path(copy.path), target)
        assert result.rows == {k: len(v) for k, v in original.items()}
        assert snapshot(target) == original
        # New rows get new ids after a restore (PostgreSQL sequences moved past the copy).
        backup(target, "n3", [file("/new", "x")])
        assert target.counts()["versions"] == len(original["versions"]) + 1
    finally:
        if target is not catalog:
            target.close()


def test_restore_refuses_what_is_not_a_catalog(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(CatalogBackupFailed, match="does not exist"):
        restore(tmp_path / "missing.db", catalog)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogBackupFailed, match="not a usable catalog"):
        restore(junk, catalog)
