"""Sessions that write the same rows at once never deadlock: every shared row (a new
object's key, a chunk, a volume) is locked in key order, whatever order the files came in.
On PostgreSQL, two sessions taking shared rows in opposite orders wait for each other and
the server aborts one ("deadlock detected"); on SQLite one write lock serialises them. A
batch the server aborts all the same (a cycle with some other writer) is written again."""

from __future__ import annotations

import threading
import time

import pytest
from catalog_helpers import backup, make_pool

from pipevault.catalog import chunks, objects, sessions
from pipevault.catalog.bulk import insert_new_keys
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogUnavailable
from pipevault.catalog.schema import objects as objects_table
from pipevault.catalog.writer import BatchWriter, NewVersion, Piece

SESSIONS = 4
NAMES = [f"f{i:04d}" for i in range(300)]


def _together(work: list[list[NewVersion]], catalog: Catalog) -> list[BaseException]:
    """Catalogue each list as a session of node0, all started at once; the errors raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work))

    def session(items: list[NewVersion]) -> None:
        try:
            barrier.wait()
            backup(catalog, "node0", items, batch_size=len(items))  # one transaction each
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(items,)) for items in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def _opposite(names: list[str], s: int) -> list[str]:
    return names if s % 2 else names[::-1]


def _flush_until_it_waits(catalog: Catalog, writer: BatchWriter) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``writer.flush()`` in a thread and return once its transaction waits for a
    lock (the test holds one); the thread, and the errors it will have raised."""
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            writer.flush()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=flush)
    t.start()
    deadline = time.monotonic() + 30
    with catalog.engine.connect() as watch:
        while not watch.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar_one():
            assert time.monotonic() < deadline, "the batch never waited for the lock held"
            time.sleep(0.02)
    return t, errors


def test_sessions_storing_the_same_new_chunks_in_opposite_orders_all_complete(catalog: Catalog) -> None:
    make_pool(catalog)
    for round_ in range(3):  # each round's chunks are new
        digest = {n: f"{round_}:{n}".encode().ljust(32, b".") for n in NAMES}
        work = [[NewVersion("/home", f"/r{round_}s{s}", n, 1, (Piece("V1", 0, 0, 1, digest[n]),))
                 for n in _opposite(NAMES, s)] for s in range(SESSIONS)]
        assert _together(work, catalog) == []
        with catalog.read() as conn:
            stored = chunks.lookup(conn, digest.values())
        assert sorted(stored) == sorted(digest.values())
        assert {c.refcount for c in stored.values()} == {SESSIONS}


def test_sessions_creating_the_same_new_objects_in_opposite_orders_all_complete(catalog: Catalog) -> None:
    make_pool(catalog)
    for round_ in range(3):
        work = [[NewVersion("/home", f"/r{round_}", n, 1, (Piece("V1", 0, 0, 1),)) for n in _opposite(NAMES, s)]
                for s in range(SESSIONS)]
        assert _together(work, catalog) == []
        with catalog.read() as conn:
            got = objects.query_versions(conn, "node0", "/home", f"/r{round_}", "*", state="backup")
        assert len(got) == SESSIONS * len(NAMES)
        assert sorted(v.ll for v in got if v.state == "active") == NAMES  # one active version each


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_new_keys_go_in_in_key_order_whatever_order_they_come_in(catalog: Catalog) -> None:
    """The sequence hands out ids in insertion order, so the ids show the order the rows
    (and their locks) were taken in."""
    make_pool(catalog)
    backup(catalog, "node0", [NewVersion("/home", "/seed", "x", 1, (Piece("V1", 0, 0, 1),))])  # a file space
    with catalog.write() as conn:
        fs_id = int(conn.exec_driver_sql("SELECT id FROM filespaces").scalar_one())
        found, created = insert_new_keys(conn, objects_table, ("filespace_id", "hl", "ll"),
                                         ("filespace_id", "hl", "ll", "obj_type"),
                                         [(fs_id, "/d", n, 0) for n in reversed(NAMES)])
    assert created == set(found.values())
    assert [found[(fs_id, "/d", n)] for n in NAMES] == sorted(found.values())


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_a_batch_the_server_aborts_to_break_a_deadlock_is_written_again(catalog: Catalog) -> None:
    """Another writer (not a batch writer, so not in the same order) locks chunk b, then
    waits for chunk a, which the batch has locked while it waits for b. The server aborts
    the batch's transaction (its wait is older: the other side waits 10 s before looking
    for a cycle); the batch is written again once the other has committed."""
    make_pool(catalog)
    a, b = b"a" * 32, b"b" * 32

    def version(ll: str, digest: bytes) -> NewVersion:
        return NewVersion("/home", "/d", ll, 1, (Piece("V1", 0, 0, 1, digest),))

    backup(catalog, "node0", [version("first-a", a), version("first-b", b)])
    with catalog.write() as conn:
        sid = sessions.begin_session(conn, "node0", "backup", started=catalog.clock.now())
    writer = BatchWriter(catalog, sid, batch_size=100)
    writer.add_all([version("again-a", a), version("again-b", b)])
    bump = "UPDATE chunks SET refcount = refcount + 10 WHERE hash = %s"
    with catalog.engine.connect() as other:
        other.exec_driver_sql("SET deadlock_timeout = '10s'")
        other.commit()  # the SET began a transaction of its own
        with other.begin():
            other.exec_driver_sql(bump, (b,))
            t, errors = _flush_until_it_waits(catalog, writer)  # holding a, waiting for b
            other.exec_driver_sql(bump, (a,))  # the cycle: waits until the batch is aborted
        t.join(60)
    assert not t.is_alive() and errors == []
    assert writer.retries == 1 and writer.written == 2
    with catalog.read() as conn:
        counts = {h: c.refcount for h, c in chunks.lookup(conn, [a, b]).items()}
    assert counts == {a: 12, b: 12}  # the first backup's, the other's 10, the batch's once


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_other_failures_are_not_written_again(catalog: Catalog, catalog_url: str) -> None:
    """A lock not granted within the session's lock_timeout is an error of its own (not a
    deadlock): the batch fails at once, kept for a later flush."""
    make_pool(catalog)
    a = b"a" * 32
    backup(catalog, "node0", [NewVersion("/home", "/d", "first", 1, (Piece("V1", 0, 0, 1, a),))])
    with Catalog.open(catalog_url + "%20-clock_timeout%3D200", clock=catalog.clock) as impatient:
        with impatient.write() as conn:
            sid = sessions.begin_session(conn, "node0", "backup", started=catalog.clock.now())
        writer = BatchWriter(impatient, sid)
        writer.add(NewVersion("/home", "/d", "again", 1, (Piece("V1", 0, 0, 1, a),)))
        with catalog.engine.connect() as other, other.begin():
            other.exec_driver_sql("UPDATE chunks SET refcount = refcount + 10 WHERE hash = %s", (a,))
            with pytest.raises(CatalogUnavailable, match="lock timeout"):
                writer.flush()
        assert writer.retries == 0 and writer.written == 0
        writer.flush()  # kept: written once the lock is free
        assert writer.written == 1


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_an_object_expiration_deletes_while_a_batch_finds_it_is_created_again(catalog: Catalog) -> None:
    """Expiration deletes an object left without versions; a batch that found that object
    a moment before (a file of that name backed up again) must not then refer to the
    deleted row. Here another connection holds the object's row, so the batch finds it
    and waits to lock it; the row is deleted and committed, and the batch goes on."""
    make_pool(catalog)
    backup(catalog, "node0", [NewVersion("/home", "/d", "back", 1, (Piece("V1", 0, 0, 1),))])
    with catalog.write() as conn:
        conn.exec_driver_sql("DELETE FROM locations")
        conn.exec_driver_sql("DELETE FROM versions")  # as expiration's first step leaves it
        old_id = int(conn.exec_driver_sql("SELECT id FROM objects").scalar_one())
        sid = sessions.begin_session(conn, "node0", "backup", started=catalog.clock.now())
    writer = BatchWriter(catalog, sid)
    writer.add(NewVersion("/home", "/d", "back", 7, (Piece("V1", 0, 0, 7),)))
    with catalog.engine.connect() as expiring:
        with expiring.begin():
            expiring.exec_driver_sql("SELECT id FROM objects WHERE id = %s FOR UPDATE", (old_id,))
            t, errors = _flush_until_it_waits(catalog, writer)  # found the object, waits to lock it
            expiring.exec_driver_sql("DELETE FROM objects WHERE id = %s", (old_id,))
        t.join(60)
    assert not t.is_alive() and errors == []
    with catalog.read() as conn:
        got = objects.query_versions(conn, "node0", "/home", "/d", "back", state="backup")
    assert [(v.size, v.state) for v in got] == [(7, "active")] and got[0].object_id != old_id
