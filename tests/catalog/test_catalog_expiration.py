"""Expiration by policy with a manual clock: versions kept, days retained, space freed."""

from __future__ import annotations

from typing import Any

from catalog_helpers import backup, file, make_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipevault.catalog import classes, objects, volumes
from pipevault.catalog.classes import DAY, ManagementClass
from pipevault.catalog.database import Catalog
from pipevault.catalog.expiration import expire
from pipevault.catalog.writer import NewVersion, Piece
from pipevault.clock import ManualClock


def _sizes(catalog: Catalog, ll: str, state: str = "backup") -> list[int]:
    with catalog.read() as conn:
        return [v.size for v in objects.query_versions(conn, "n1", "/home", "/d", ll, state=state)]


def _define(catalog: Catalog, mc: ManagementClass) -> None:
    with catalog.write() as conn:
        classes.define_class(conn, mc, now=catalog.clock.now())


def test_versions_beyond_versions_exists_expire(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    _define(catalog, ManagementClass("THREE", versions_exists=3))
    for size in range(1, 6):
        backup(catalog, "n1", [file("/d", "a", size=size, class_name="THREE"),
                               file("/d", "b", size=size)])
        clock.advance(60)
    report = expire(catalog)
    assert _sizes(catalog, "a") == [5, 4, 3]
    assert _sizes(catalog, "b") == [5, 4]  # STANDARD keeps 2
    assert report.versions_expired == 2 + 3
    assert report.objects_removed == 0
    assert expire(catalog).versions_expired == 0


def test_inactive_versions_expire_after_retain_extra_days(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    _define(catalog, ManagementClass("LONG", versions_exists=10, retain_extra_days=5))
    backup(catalog, "n1", [file("/d", "a", size=1, class_name="LONG")])
    clock.advance(DAY)
    backup(catalog, "n1", [file("/d", "a", size=2, class_name="LONG")])  # 1 inactive from day 1
    clock.advance(3 * DAY)
    backup(catalog, "n1", [file("/d", "a", size=3, class_name="LONG")])  # 2 inactive from day 4
    clock.advance(DAY * 2 - 1)  # 1 has been inactive 5 days less a second
    assert expire(catalog).versions_expired == 0
    clock.advance(1)
    assert expire(catalog).versions_expired == 1
    assert _sizes(catalog, "a") == [3, 2]
    clock.advance(3 * DAY)
    expire(catalog)
    assert _sizes(catalog, "a") == [3]


def test_deleted_files_keep_versions_deleted_for_retain_only_days(
        catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    _define(catalog, ManagementClass("DEL", versions_exists=5, versions_deleted=2, retain_extra_days=10,
                                     retain_only_days=30))
    for size in (1, 2, 3):
        backup(catalog, "n1", [file("/d", "a", size=size, class_name="DEL")])
        clock.advance(DAY)
    with catalog.write() as conn:
        objects.mark_deleted(conn, "n1", "/home", "/d", "a", when=clock.now())
    expire(catalog)
    assert _sizes(catalog, "a") == [3, 2]  # versions_deleted = 2
    clock.advance(10 * DAY)
    expire(catalog)
    assert _sizes(catalog, "a") == [3]  # the older one after retain_extra
    clock.advance(20 * DAY - 1)
    assert expire(catalog).objects_removed == 0
    clock.advance(1)
    report = expire(catalog)
    assert report.objects_removed == 1 and _sizes(catalog, "a") == []
    assert catalog.counts()["objects"] == 0


def test_archives_expire_by_class_days_or_their_own_date(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog)
    _define(catalog, ManagementClass("ARCH", archive_days=7))
    t0 = clock.now()
    backup(catalog, "n1", [file("/d", "a", archive=True, class_name="ARCH", size=1),
                           file("/d", "b", archive=True, expires=t0 + 2 * DAY, size=2),
                           file("/d", "c", archive=True, class_name="UNDEFINED", size=3)], kind="archive")
    clock.advance(2 * DAY)
    assert expire(catalog).versions_expired == 1
    clock.advance(5 * DAY)
    assert expire(catalog).versions_expired == 1
    with catalog.read() as conn:
        left = objects.query_versions(conn, "n1", "/home", state="archive")
    assert [v.ll for v in left] == ["c"]  # STANDARD: 365 days
    clock.advance(365 * DAY)
    expire(catalog)
    assert catalog.counts()["versions"] == 0


def test_expired_data_frees_chunks_and_volumes(catalog: Catalog, clock: ManualClock) -> None:
    make_pool(catalog, volume_names=("V1", "V2", "V3"))
    make_pool(catalog, "optical", volume_names=("W1",), write_once=True)
    _define(catalog, ManagementClass("ONE", versions_exists=1))
    h = b"\x07" * 32
    shared = (Piece("V1", 0, 0, 10, h),)
    backup(catalog, "n1", [NewVersion("/home", "/d", "a", 10, shared, class_name="ONE"),
                           NewVersion("/home", "/d", "b", 10, shared, class_name="ONE"),
                           file("/d", "c", volume="V2", class_name="ONE"),
                           file("/d", "w", volume="W1", class_name="ONE"),
                           file("/d", "k", volume="V3")])
    clock.advance(60)
    with catalog.write() as conn:
        volumes.set_state(conn, "V1", "full")
    backup(catalog, "n1", [file("/d", "a", volume="V3", class_name="ONE")])
    report = expire(catalog)
    assert report.chunks_released == () and report.volumes_to_scratch == ()
    backup(catalog, "n1", [file("/d", n, volume="V3", class_name="ONE") for n in ("b", "c", "w")])
    report = expire(catalog)
    assert report.versions_expired == 3
    assert [(c.hash, c.volume, c.length) for c in report.chunks_released] == [(h, "V1", 10)]
    assert report.volumes_to_scratch == ("V1", "V2")
    assert report.volumes_expired == ("W1",)
    with catalog.read() as conn:
        v1 = volumes.get_volume(conn, "V1")
        assert (v1.state, v1.used, v1.last_written) == ("scratch", 0, None)
        assert volumes.get_volume(conn, "W1").state == "expired"
        assert volumes.get_volume(conn, "V3").state == "filling"
    assert catalog.counts()["chunks"] == 0


ops = st.lists(st.one_of(
    st.tuples(st.just("backup"), st.sets(st.sampled_from("abcd"), min_size=1)),
    st.tuples(st.just("delete"), st.sampled_from("abcd")),
    st.tuples(st.just("advance"), st.integers(0, 40)),
    st.tuples(st.just("expire"), st.just(0))), min_size=1, max_size=14)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops, ve=st.integers(1, 3), vd=st.integers(0, 2), extra=st.integers(0, 20), only=st.integers(0, 30))
def test_expiration_keeps_what_the_rules_say(catalog: Catalog, clock: ManualClock, steps: list[tuple[str, Any]],
                                             ve: int, vd: int, extra: int, only: int) -> None:
    """A model of the copy-group rules, checked after every step of a random history."""
    if not catalog.counts()["pools"]:
        make_pool(catalog)
    name = f"P{clock.now():.0f}"[-30:]
    _define(catalog, ManagementClass(name, versions_exists=ve, versions_deleted=vd,
                                     retain_extra_days=extra, retain_only_days=only))
    hl = "/" + name
    # Model: per object, versions as [stored, deactivated or None]; size identifies a version.
    model: dict[str, dict[int, list[float | None]]] = {}
    size = 0
    for op, arg in steps:
        if op == "backup":
            clock.advance(1)
            size += 1
            backup(catalog, "m", [file(hl, ll, size=size, class_name=name) for ll in sorted(arg)])
            for ll in arg:
                for v in model.setdefault(ll, {}).values():
                    if v[1] is None:
                        v[1] = clock.now()
                model[ll][size] = [clock.now(), None]
        elif op == "delete":
            clock.advance(1)
            with catalog.write() as conn:
                objects.mark_deleted(conn, "m", "/home", hl, arg, when=clock.now())
            for v in model.get(arg, {}).values():
                if v[1] is None:
                    v[1] = clock.now()
        elif op == "advance":
            clock.advance(arg * DAY)
        else:
            expire(catalog)
            now = clock.now()
            for versions in model.values():
                exists = any(d is None for _, d in versions.values())
                inactive = sorted((k for k, (_, d) in versions.items() if d is not None),
                                  key=lambda k: -(versions[k][1] or 0.0))
                for rank, k in enumerate(inactive):
                    keep = ve - 1 if exists else vd
                    days = only if (not exists and rank == 0) else extra
                    deactivated = versions[k][1]
                    assert deactivated is not None
                    if rank >= keep or now - deactivated >= days * DAY:
                        del versions[k]
        with catalog.read() as conn:
            got = {ll: sorted(v.size for v in objects.query_versions(conn, "m", "/home", hl, ll, state="backup"))
                   for ll in "abcd"}
        assert got == {ll: sorted(model.get(ll, {})) for ll in "abcd"}
