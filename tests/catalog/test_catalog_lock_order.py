"""Sessions that write the same rows at once never deadlock: every shared row (a new
object's key, a chunk, a volume) is locked in key order, whatever order the files came in.
On PostgreSQL, two sessions taking shared rows in opposite orders wait for each other and
the server aborts one ("deadlock detected"); on SQLite one write lock serialises them."""

from __future__ import annotations

import threading

import pytest
from catalog_helpers import backup, make_pool

from pipevault.catalog import chunks, objects
from pipevault.catalog.bulk import insert_new_keys
from pipevault.catalog.database import Catalog
from pipevault.catalog.schema import objects as objects_table
from pipevault.catalog.writer import NewVersion, Piece

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
