"""``pipevault bench catalog``: cataloguing objects with the batched writer vs baselines.

Cases (each runs ours and its baseline in the same run, on SQLite files in ``workdir``):

- ``write-vs-per-row``: :class:`BatchWriter` cataloguing N objects (one version and one
  location each) against the naive way, the ``sqlite3`` module inserting each object's
  rows in a transaction of its own (same schema, same WAL settings), on N/20 objects since
  it is slow; both reported as objects per second.
- ``write-vs-executemany``: the same writer against plain ``sqlite3`` ``executemany`` of
  the same rows (the same columns bound) into the same schema in batches of the same size,
  with no lookups of existing objects and no volume or session accounting: the floor a Python catalog on
  SQLite can reach, so the ratio shows what the writer's bookkeeping costs.

- ``postgresql`` (only when ``catalog_url`` names a PostgreSQL database): the writer against
  psycopg ``executemany`` of the same rows, each in a schema of its own created for the run
  in that database and dropped after it (the catalog's own tables are not touched);
  100,000 objects (``--quick``: 10,000).

N is 1,000,000 (``--quick``: 50,000). Notes give the CPU seconds of this process as well
as the rates: on a machine shared with other work they move less than wall time.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from pipevault.catalog import pools, sessions, volumes
from pipevault.catalog.database import Catalog, create_engine
from pipevault.catalog.writer import BatchWriter, NewVersion, Piece
from pipevault.config import load
from pipevault.events import BenchResult

_BATCH = 10_000
_FILES_PER_DIR = 100
_CASES = ("write-vs-per-row", "write-vs-executemany", "postgresql")


def _prepare(url: str) -> tuple[Catalog, int]:
    catalog = Catalog.open(url)
    with catalog.write() as conn:
        pools.define_pool(conn, "disk", "file", now=1.0)
        volumes.add_volume(conn, "BENCH1", "disk", 1 << 50, now=1.0)
        sid = sessions.begin_session(conn, "bench", "backup", started=2.0)
    return catalog, sid


def _ours(url: str, n: int) -> tuple[float, float]:
    catalog, sid = _prepare(url)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        with BatchWriter(catalog, sid, batch_size=_BATCH) as writer:
            for i in range(n):
                writer.add(NewVersion("/bench", f"/dir{i // _FILES_PER_DIR}", f"file{i}", 4096,
                                      (Piece("BENCH1", i // 64, (i % 64) * 4096, 4096),), stored=3.0))
        return n / (time.perf_counter() - t0), time.process_time() - c0
    finally:
        catalog.close()


# The baselines bind the same values the writer binds for these rows.
_OBJECT = "INSERT INTO objects (id, filespace_id, hl, ll, obj_type) VALUES (?, ?, ?, ?, ?)"
_VERSION = ("INSERT INTO versions (id, object_id, session_id, state, class_name, stored, size, "
            "attributes, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_LOCATION = ("INSERT INTO locations (version_id, part, volume_id, superblock, \"offset\", length) "
             "VALUES (?, ?, ?, ?, ?, ?)")


def _object(i: int, fs: int) -> tuple[object, ...]:
    return (i, fs, f"/dir{i // _FILES_PER_DIR}", f"file{i}", 1)


def _version(i: int) -> tuple[object, ...]:
    return (i, i, 1, "active", "STANDARD", 3.0, 4096, "{}", "")


def _location(i: int) -> tuple[object, ...]:
    return (i, 0, 1, i // 64, (i % 64) * 4096, 4096)


def _filespace(catalog: Catalog) -> int:
    with catalog.write() as conn:
        return int(conn.exec_driver_sql("INSERT INTO filespaces (node_id, name, created) "
                                        "VALUES (1, '/bench', 1.0) RETURNING id").scalar_one())


def _raw(path: Path) -> tuple[sqlite3.Connection, int]:
    catalog, _ = _prepare(_sqlite(path))
    fs = _filespace(catalog)
    catalog.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA cache_size = -65536")
    db.execute("PRAGMA foreign_keys = ON")
    return db, fs


def _per_row(path: Path, n: int) -> tuple[float, float]:
    db, fs = _raw(path)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(1, n + 1):
            db.execute("BEGIN")
            db.execute(_OBJECT, _object(i, fs))
            db.execute(_VERSION, _version(i))
            db.execute(_LOCATION, _location(i))
            db.execute("COMMIT")
        return n / (time.perf_counter() - t0), time.process_time() - c0
    finally:
        db.close()


def _executemany(path: Path, n: int) -> tuple[float, float]:
    db, fs = _raw(path)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(1, n + 1, _BATCH):
            ids = range(start, min(start + _BATCH, n + 1))
            db.execute("BEGIN")
            db.executemany(_OBJECT, [_object(i, fs) for i in ids])
            db.executemany(_VERSION, [_version(i) for i in ids])
            db.executemany(_LOCATION, [_location(i) for i in ids])
            db.execute("COMMIT")
        return n / (time.perf_counter() - t0), time.process_time() - c0
    finally:
        db.close()


def _pg_executemany(url: str, n: int) -> tuple[float, float]:
    catalog, _ = _prepare(url)
    try:
        fs = _filespace(catalog)
        raw = catalog.engine.raw_connection()
        try:
            qmarks = (_OBJECT, _VERSION, _LOCATION)
            obj, ver, loc = (q.replace("?", "%s") for q in qmarks)
            cur = raw.cursor()
            t0, c0 = time.perf_counter(), time.process_time()
            for start in range(1, n + 1, _BATCH):
                ids = range(start, min(start + _BATCH, n + 1))
                cur.executemany(obj, [_object(i, fs) for i in ids])
                cur.executemany(ver, [_version(i) for i in ids])
                cur.executemany(loc, [_location(i) for i in ids])
                raw.commit()
            return n / (time.perf_counter() - t0), time.process_time() - c0
        finally:
            raw.close()
    finally:
        catalog.close()


@contextmanager
def _pg_schemas(url: str, count: int) -> Iterator[list[str]]:
    """URLs of ``count`` new schemas in the configured PostgreSQL catalog's database (the
    catalog's own tables are never touched), dropped afterwards."""
    names = [f"pipevault_bench_{os.getpid()}_{i}" for i in range(count)]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        base = sa.make_url(engine.url)
        yield [base.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
               for name in names]
    finally:
        with engine.begin() as conn:
            for name in names:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        engine.dispose()


def _sqlite(path: Path) -> str:
    return "sqlite:///" + str(path)


def run(quick: bool, workdir: Path, cases: tuple[str, ...] | None) -> Iterator[BenchResult]:
    """Run the catalog benchmark cases (all, or those named in ``cases``)."""
    n = 50_000 if quick else 1_000_000
    wanted = cases or _CASES
    files = iter(range(1_000))

    def fresh() -> Path:
        return workdir / f"catalog-{next(files)}.db"

    if "write-vs-per-row" in wanted:
        ours, ours_cpu = _ours(_sqlite(fresh()), n)
        base, base_cpu = _per_row(fresh(), n // 20)
        yield BenchResult(suite="catalog", case="write-vs-per-row", ours=ours, baseline=base,
                          baseline_name="sqlite3 one transaction per object", unit="objects/s",
                          notes={"objects": n, "baseline_objects": n // 20, "batch": _BATCH,
                                 "ours_cpu_s": round(ours_cpu, 1), "baseline_cpu_s": round(base_cpu, 1)})
    if "write-vs-executemany" in wanted:
        ours, ours_cpu = _ours(_sqlite(fresh()), n)
        base, base_cpu = _executemany(fresh(), n)
        yield BenchResult(suite="catalog", case="write-vs-executemany", ours=ours, baseline=base,
                          baseline_name="sqlite3 executemany, no lookups", unit="objects/s",
                          notes={"objects": n, "batch": _BATCH,
                                 "ours_seconds": round(n / ours, 1), "baseline_seconds": round(n / base, 1),
                                 "ours_cpu_s": round(ours_cpu, 1), "baseline_cpu_s": round(base_cpu, 1)})
    url = str(load()["catalog_url"])
    if "postgresql" in wanted and url:
        n_pg = 10_000 if quick else 100_000
        with _pg_schemas(url, 2) as (mine, theirs):
            ours, ours_cpu = _ours(mine, n_pg)
            base, base_cpu = _pg_executemany(theirs, n_pg)
        yield BenchResult(suite="catalog", case="postgresql", ours=ours, baseline=base,
                          baseline_name="psycopg executemany, no lookups", unit="objects/s",
                          notes={"objects": n_pg, "batch": _BATCH, "server": sa.make_url(url).host or "socket",
                                 "client_cpu_s": [round(ours_cpu, 1), round(base_cpu, 1)]})
