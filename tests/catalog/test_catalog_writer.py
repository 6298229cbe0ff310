"""The batched writer: rows, versions becoming inactive, chunks, volume and session totals."""

from __future__ import annotations

import pytest
from catalog_helpers import backup, file, make_pool, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipevault.catalog import chunks, objects, sessions, volumes
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogNotFound
from pipevault.catalog.writer import BatchWriter, NewVersion, Piece
from pipevault.clock import ManualClock


def test_a_session_catalogues_objects_versions_and_locations(catalog: Catalog) -> None:
    make_pool(catalog)
    items = [file(f"/dir{i % 3}", f"f{i}", superblock=i, size=10 + i) for i in range(10)]
    sid = backup(catalog, "n1", items, batch_size=4)
    counts = catalog.counts()
    assert (counts["objects"], counts["versions"], counts["locations"]) == (10, 10, 10)
    with catalog.read() as conn:
        s = sessions.get_session(conn, sid)
        total = sum(10 + i for i in range(10))
        assert (s.node, s.status, s.objects, s.bytes) == ("n1", "completed", 10, total)
        vol = volumes.get_volume(conn, "V1")
        assert vol.state == "filling" and vol.used == s.bytes
        assert vol.first_written == vol.last_written == catalog.clock.now()
        found = objects.query_versions(conn, "n1", "/home", "/dir1", "*")
        assert [v.ll for v in found] == ["f1", "f4", "f7"]
        assert all(v.state == "active" and v.session_id == sid for v in found)


def test_a_new_backup_deactivates_the_previous_version(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    first = clock.now()
    backup(catalog, "n1", [file("/d", "a"), file("/d", "b")])
    clock.advance(3600)
    backup(catalog, "n1", [file("/d", "a", superblock=7, size=5)])
    with catalog.read() as conn:
        versions = objects.query_versions(conn, "n1", "/home", "/d", "a", state="backup")
        assert [(v.state, v.size, v.deactivated) for v in versions] == [
            ("active", 5, None), ("inactive", 100, first + 3600)]
        assert objects.active_version(conn, "n1", "/home", "/d", "b") is not None
    assert catalog.counts()["objects"] == 2


def test_versions_of_one_object_in_one_batch_chain_correctly(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    t0 = clock.now()
    items = [file("/d", "a", stored=t0 + i, size=i + 1) for i in range(3)]
    backup(catalog, "n1", items, batch_size=100)
    with catalog.read() as conn:
        got = objects.query_versions(conn, "n1", "/home", "/d", "a", state="backup")
    assert [(v.size, v.state, v.deactivated) for v in got] == [
        (3, "active", None), (2, "inactive", t0 + 2), (1, "inactive", t0 + 1)]


def test_archives_stand_apart_from_backups(catalog: Catalog) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/d", "a")])
    backup(catalog, "n1", [file("/d", "a", archive=True, description="year end", size=7)], kind="archive")
    with catalog.read() as conn:
        assert objects.active_version(conn, "n1", "/home", "/d", "a") is not None
        arch = objects.query_versions(conn, "n1", "/home", "*", "*", state="archive")
        assert [(a.description, a.size) for a in arch] == [("year end", 7)]
        by_desc = objects.query_versions(conn, "n1", "/home", state="any", description="year*")
        assert [a.version_id for a in by_desc] == [arch[0].version_id]


def test_duplicate_chunks_are_stored_once_and_counted(catalog: Catalog) -> None:
    make_pool(catalog)
    h1, h2 = b"\x01" * 32, b"\x02" * 32
    v1 = NewVersion("/home", "/d", "a", 200, (Piece("V1", 0, 0, 100, h1), Piece("V1", 0, 100, 100, h2)))
    v2 = NewVersion("/home", "/d", "b", 200, (Piece("V1", 0, 0, 100, h1), Piece("V2", 3, 0, 100)))
    backup(catalog, "n1", [v1, v2], batch_size=1)
    v3 = NewVersion("/home", "/e", "c", 100, (Piece("V1", 0, 100, 100, h2),))
    backup(catalog, "n2", [v3])
    with catalog.read() as conn:
        known = chunks.lookup(conn, [h1, h2, b"\x03" * 32])
        assert {h: c.refcount for h, c in known.items()} == {h1: 2, h2: 2}
        assert (known[h2].volume, known[h2].superblock, known[h2].offset) == ("V1", 0, 100)
        assert chunks.total(conn) == (2, 4, 200)
        # Bytes on a volume count each chunk once, plus plain pieces.
        assert volumes.get_volume(conn, "V1").used == 200
        assert volumes.get_volume(conn, "V2").used == 100


def test_an_unknown_volume_rolls_the_batch_back(catalog: Catalog) -> None:
    make_pool(catalog)
    with catalog.write() as conn:
        sid = sessions.begin_session(conn, "n1", "backup", started=1.0)
    before = snapshot(catalog)
    writer = BatchWriter(catalog, sid, batch_size=10)
    writer.add(file("/d", "a"))
    writer.add(file("/d", "b", volume="NOPE"))
    with pytest.raises(CatalogNotFound, match="NOPE"):
        writer.flush()
    assert snapshot(catalog) == before
    with BatchWriter(catalog, sid) as w2:
        w2.add(file("/d", "a"))
    assert catalog.counts()["versions"] == 1


def test_a_failing_with_block_drops_the_pending_batch(catalog: Catalog) -> None:
    make_pool(catalog)
    with catalog.write() as conn:
        sid = sessions.begin_session(conn, "n1", "backup", started=1.0)
    def job() -> None:
        with BatchWriter(catalog, sid, batch_size=10) as writer:
            writer.add(file("/d", "a"))
            raise RuntimeError("job failed")

    with pytest.raises(RuntimeError):
        job()
    assert catalog.counts()["versions"] == 0


names = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions_=st.lists(st.lists(names, min_size=1, max_size=6), min_size=1, max_size=4),
       batch=st.integers(1, 5))
def test_exactly_the_newest_backup_of_each_object_is_active(
        catalog: Catalog, clock: ManualClock, sessions_: list[list[str]], batch: int) -> None:
    if not catalog.counts()["pools"]:
        make_pool(catalog)
    run = f"/run{clock.now()}"
    newest: dict[str, int] = {}
    count: dict[str, int] = {}
    size = 0
    for names_ in sessions_:
        clock.advance(10)
        items = []
        for ll in names_:
            size += 1
            newest[ll] = size
            count[ll] = count.get(ll, 0) + 1
            items.append(file(run, ll, size=size, stored=clock.now() + size / 1000))
        backup(catalog, "prop", items, batch_size=batch)
    with catalog.read() as conn:
        for ll, n in count.items():
            got = objects.query_versions(conn, "prop", "/home", run, ll, state="backup")
            assert len(got) == n
            assert [v.size for v in got if v.state == "active"] == [newest[ll]]
            inactive = [v for v in got if v.state == "inactive"]
            assert all(v.deactivated is not None and v.deactivated > v.stored for v in inactive)


def test_concurrent_sessions_on_the_same_objects_leave_one_active_version_each(catalog: Catalog) -> None:
    import threading

    make_pool(catalog)
    names = [f"f{i}" for i in range(60)]
    errors: list[BaseException] = []

    def session(seed: int) -> None:
        try:
            order = sorted(names, key=lambda n: hash((n, seed)))
            backup(catalog, f"node{seed % 2}", [file("/shared", n, stored=1.0 + seed) for n in order],
                   batch_size=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with catalog.read() as conn:
        for node in ("node0", "node1"):
            got = objects.query_versions(conn, node, "/home", "/shared", "*", state="backup")
            assert len(got) == 2 * len(names)
            assert sorted(v.ll for v in got if v.state == "active") == sorted(names)
