"""Queries: name patterns, point in time, restore plans, volume contents, deletion."""

from __future__ import annotations

import pytest
from catalog_helpers import backup, file, make_pool

from pipevault.catalog import locations, objects, volumes
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogConflict, CatalogNotFound
from pipevault.catalog.writer import NewVersion, Piece
from pipevault.clock import ManualClock


def test_patterns_match_whole_names_with_star_and_question_mark(catalog: Catalog) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/src", "a.py"), file("/src", "b.py"), file("/src", "ab.c"),
                           file("/src/sub", "c.py"), file("/doc", "100%_x")])
    with catalog.read() as conn:
        def names(hl: str, ll: str) -> list[str]:
            return [v.path for v in objects.query_versions(conn, "n1", "/home", hl, ll)]
        assert names("/src", "*.py") == ["/home/src/a.py", "/home/src/b.py"]
        assert names("/src*", "?.py") == ["/home/src/a.py", "/home/src/b.py", "/home/src/sub/c.py"]
        assert names("*", "100%_x") == ["/home/doc/100%_x"]
        assert names("*", "100?_x") == ["/home/doc/100%_x"]
        assert names("*", "1%") == []
        assert objects.query_versions(conn, "other", "/home") == []
        with pytest.raises(CatalogConflict):
            objects.query_versions(conn, "n1", "/home", state="bogus")


def test_point_in_time_finds_the_version_active_then(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    times = []
    for size in (1, 2, 3):
        times.append(clock.now())
        backup(catalog, "n1", [file("/d", "a", size=size)])
        clock.advance(100)
    with catalog.read() as conn:
        def at(t: float) -> list[int]:
            return [v.size for v in objects.query_versions(conn, "n1", "/home", "/d", "a", point_in_time=t)]
        assert at(times[0] - 1) == []
        assert at(times[0]) == [1]
        assert at(times[1] - 1) == [1]
        assert at(times[1] + 50) == [2]
        assert at(times[2] + 1000) == [3]
        assert objects.mark_deleted(conn, "n1", "/home", "/d", "a", when=times[2] + 2000) is True
        assert at(times[2] + 1000) == [3]
        assert at(times[2] + 3000) == []


def test_deleting_an_object_leaves_no_active_version(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/d", "a")])
    with catalog.write() as conn:
        assert objects.mark_deleted(conn, "n1", "/home", "/d", "a", when=clock.now()) is True
        assert objects.mark_deleted(conn, "n1", "/home", "/d", "a", when=clock.now()) is False
    with catalog.read() as conn:
        assert objects.active_version(conn, "n1", "/home", "/d", "a") is None
        (v,) = objects.query_versions(conn, "n1", "/home", "/d", "a", state="inactive")
        assert objects.get_version(conn, v.version_id) == v
        with pytest.raises(CatalogNotFound):
            objects.get_version(conn, v.version_id + 1000)


def test_restore_plan_reads_volumes_in_order_and_positions_ascending(catalog: Catalog) -> None:
    make_pool(catalog, volume_names=("V1", "V2", "V3"))
    spanning = NewVersion("/home", "/d", "big", 300, (
        Piece("V2", 90, 500, 100), Piece("V3", 0, 0, 150), Piece("V1", 5, 0, 50)))
    backup(catalog, "n1", [file("/d", "x", volume="V2", superblock=3), spanning,
                           file("/d", "y", volume="V1", superblock=9)])
    with catalog.read() as conn:
        ids = [v.version_id for v in objects.query_versions(conn, "n1", "/home")]
        plan = locations.restore_plan(conn, ids)
        assert [(p.volume, p.superblock) for p in plan] == [
            ("V1", 5), ("V1", 9), ("V2", 3), ("V2", 90), ("V3", 0)]
        big = objects.active_version(conn, "n1", "/home", "/d", "big")
        assert big is not None
        assert [(p.part, p.volume, p.length) for p in locations.pieces(conn, big.version_id)] == [
            (0, "V2", 100), (1, "V3", 150), (2, "V1", 50)]
        assert locations.volumes_of(conn, [big.version_id]) == ["V1", "V2", "V3"]


def test_restore_plan_has_exactly_the_versions_asked_for_dense_or_scattered(catalog: Catalog) -> None:
    # Two nodes' versions interleave in id order: a plan for one node's versions must leave
    # out the other's that lie between them, whichever way the pieces are looked up.
    make_pool(catalog)
    for k in range(12):
        backup(catalog, "n1" if k % 3 else "n2", [file("/d", f"f{k}", superblock=k)], batch_size=1)
    with catalog.read() as conn:
        mine = [v.version_id for v in objects.query_versions(conn, "n1", "/home")]
        other = [v.version_id for v in objects.query_versions(conn, "n2", "/home")]
        assert min(other) < max(mine) and min(mine) < max(other)
        for asked in (mine, mine[:2], [mine[0], mine[-1]], other[1:3], [max(mine) + max(other)]):
            plan = locations.restore_plan(conn, asked)
            assert sorted(p.version_id for p in plan) == sorted(i for i in asked if i in mine + other)
            assert [p.superblock for p in plan] == sorted(p.superblock for p in plan)
        assert locations.restore_plan(conn, []) == []


def test_volume_contents_lists_pieces_in_position_order(catalog: Catalog) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/d", "b", superblock=2, offset=10), file("/d", "a", superblock=2, offset=0),
                           file("/e", "c", superblock=1)])
    with catalog.read() as conn:
        entries = volumes.contents(conn, "V1")
        assert [(e.superblock, e.offset, e.hl, e.ll, e.node) for e in entries] == [
            (1, 0, "/e", "c", "n1"), (2, 0, "/d", "a", "n1"), (2, 10, "/d", "b", "n1")]
        assert volumes.contents(conn, "V2") == []
        with pytest.raises(CatalogNotFound):
            volumes.contents(conn, "V9")


def test_volume_states_and_names_are_checked(catalog: Catalog) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/d", "a")])
    with catalog.write() as conn:
        with pytest.raises(CatalogConflict):
            volumes.add_volume(conn, "V1", "disk", 10, now=1.0)
        with pytest.raises(CatalogNotFound):
            volumes.add_volume(conn, "V9", "nopool", 10, now=1.0)
        with pytest.raises(CatalogConflict, match="still holds"):
            volumes.set_state(conn, "V1", "scratch")
        with pytest.raises(CatalogConflict):
            volumes.set_state(conn, "V2", "melted")
        volumes.set_state(conn, "V1", "read-only")
        assert [v.name for v in volumes.list_volumes(conn, state="read-only")] == ["V1"]
        assert [v.name for v in volumes.list_volumes(conn, pool="disk")] == ["V1", "V2"]
