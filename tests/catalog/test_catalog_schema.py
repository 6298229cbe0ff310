"""Schema and migrations on SQLite and PostgreSQL: fresh, upgraded, refused when too new."""

from __future__ import annotations

import os
from typing import Any

import pytest
import sqlalchemy as sa
from catalog_helpers import backup, file, make_pool, snapshot

from pipevault.catalog import migrations
from pipevault.catalog.database import Catalog, catalog_url
from pipevault.catalog.errors import CatalogError, CatalogMigrationFailed, CatalogSchemaTooNew, CatalogUnavailable
from pipevault.catalog.schema import TABLES_IN_ORDER, metadata, schema_version
from pipevault.clock import ManualClock
from pipevault.config import load


def _shape(catalog: Catalog) -> dict[str, Any]:
    """Tables, their columns and their indexes as the database reports them."""
    with catalog.read() as conn:
        insp = sa.inspect(conn)
        return {t: (sorted(c["name"] for c in insp.get_columns(t)),
                    sorted(i["name"] or "" for i in insp.get_indexes(t)
                           if "duplicates_constraint" not in i))
                for t in sorted(insp.get_table_names())}


def test_new_catalog_is_at_the_latest_version_with_every_table(catalog: Catalog) -> None:
    with catalog.read() as conn:
        assert migrations.current_version(conn) == migrations.LATEST
        versions = conn.execute(sa.select(schema_version.c.version)).scalars().all()
    assert versions == [m.version for m in migrations.MIGRATIONS]
    shape = _shape(catalog)
    assert set(shape) == set(metadata.tables)
    for table in TABLES_IN_ORDER:
        assert shape[table.name][0] == sorted(table.c.keys())
        assert shape[table.name][1] == sorted(i.name for i in table.indexes if i.name)  # type: ignore[misc]
    assert all(n == 0 for n in catalog.counts().values())


def test_no_open_connection_crosses_a_fork(catalog: Catalog) -> None:
    """SQLite keeps its locks per process: a connection a forked child inherited would let the
    connection it opens itself read unlocked (a PostgreSQL one shares its parent's socket).
    Pooled connections are closed before every fork; the parent opens new ones after."""
    make_pool(catalog)
    before = catalog.counts()
    assert catalog.engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what its copy of the pool holds
        os.write(w, str(catalog.engine.pool.checkedin()).encode())  # type: ignore[attr-defined]
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        held = f.read()
    os.waitpid(pid, 0)
    assert held == b"0"
    assert catalog.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    assert catalog.counts() == before


def test_reopening_applies_nothing_and_keeps_data(catalog_url: str, clock: ManualClock) -> None:
    with Catalog.open(catalog_url, clock=clock) as cat:
        make_pool(cat)
        backup(cat, "n1", [file("/d", "a")])
        before = snapshot(cat)
    with Catalog.open(catalog_url, clock=clock) as cat:
        assert migrations.upgrade(cat, clock) == []
        assert snapshot(cat) == before


def test_upgrade_from_version_1_keeps_data_and_reaches_the_fresh_schema(
        catalog_url: str, clock: ManualClock, tmp_path: Any) -> None:
    with Catalog.open(catalog_url, clock=clock, upgrade=False) as old:
        assert migrations.upgrade(old, clock, target=1) == [1]
        with old.read() as conn:
            assert migrations.current_version(conn) == 1
            assert not sa.inspect(conn).has_table("chunks")
        make_pool(old)
        with old.write() as conn:
            conn.execute(sa.text("INSERT INTO nodes (name, created) VALUES ('n1', 5.0)"))
    with Catalog.open(catalog_url, clock=clock) as new:
        with new.read() as conn:
            assert migrations.current_version(conn) == migrations.LATEST
        assert new.counts()["volumes"] == 2 and new.counts()["nodes"] == 1
        backup(new, "n1", [file("/d", "a")])
        upgraded = _shape(new)
    with Catalog.open("sqlite:///" + str(tmp_path / "fresh.db"), clock=clock) as fresh:
        assert _shape(fresh) == upgraded


def test_a_catalog_from_a_newer_pipevault_is_refused(catalog_url: str, clock: ManualClock) -> None:
    with Catalog.open(catalog_url, clock=clock) as cat, cat.write() as conn:
        conn.execute(sa.insert(schema_version).values(version=migrations.LATEST + 1,
                                                      description="future", applied=1.0))
    with pytest.raises(CatalogSchemaTooNew, match="newer"):
        Catalog.open(catalog_url, clock=clock)


def test_sqlite_catalog_is_in_wal_mode_in_home_by_default(clock: ManualClock) -> None:
    settings = load()
    url = catalog_url(settings)
    assert url == "sqlite:///" + str(settings.home / "catalog.db")
    with Catalog.from_settings(settings, clock=clock) as cat, cat.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (settings.home / "catalog.db").is_file()


def test_postgresql_urls_get_the_psycopg_driver(clock: ManualClock) -> None:
    with pytest.raises(CatalogUnavailable):
        Catalog.open("postgresql://nobody@/nodb?host=/nonexistent-dir&port=1", clock=clock)


def test_unreachable_sqlite_path_is_unavailable(tmp_path: Any, clock: ManualClock) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CatalogUnavailable):
        Catalog.open("sqlite:///" + str(blocker / "catalog.db"), clock=clock)


def test_a_failing_step_leaves_the_previous_version(catalog_url: str, clock: ManualClock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: Any) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    steps = (*migrations.MIGRATIONS[:1], migrations.Migration(2, "broken", broken))
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    with pytest.raises(CatalogMigrationFailed, match="schema migration 2"):
        Catalog.open(catalog_url, clock=clock)
    with Catalog.open(catalog_url, clock=clock, upgrade=False) as cat, cat.read() as conn:
        assert migrations.current_version(conn) == 1
        assert not sa.inspect(conn).has_table("half_done")


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Any, clock: ManualClock) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, not at all" * 200)
    with pytest.raises(CatalogError, match="not a database"):
        Catalog.open("sqlite:///" + str(junk), clock=clock)
