"""Pools as plain data: volume states, capacity accounting, choosing a volume, migration and
reclamation plans."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.media import (
    Pool,
    PoolVolume,
    StoredExtent,
    VolumeState,
    choose_volume,
    mark_full,
    new_volume,
    occupancy,
    plan_migration,
    plan_reclamation,
    record_release,
    record_write,
    settle,
    transition,
)
from pipevault.media.errors import PoolError, VolumeFull, WriteOnceViolation

DAY = 86_400.0
DISK = Pool("DISKPOOL", "disk", next_pool="TAPEPOOL", high_migration_pct=80, low_migration_pct=50,
            migrate_after_days=30)
TAPE = Pool("TAPEPOOL", "tape", reclaim_below_pct=40)
WORM = Pool("WORMPOOL", "optical", write_once=True, next_pool="TAPEPOOL", migrate_after_days=10)


def test_a_volume_fills_then_returns_to_scratch_when_its_data_is_gone() -> None:
    vol = new_volume(TAPE, "A00001", 1000)
    assert (vol.state, vol.free, vol.live_pct) == (VolumeState.SCRATCH, 1000, 100.0)
    vol = record_write(vol, 600, now=10.0)
    assert (vol.state, vol.used, vol.live, vol.first_written, vol.last_written) == (
        VolumeState.FILLING, 600, 600, 10.0, 10.0)
    vol = record_write(vol, 400, now=20.0)
    assert (vol.state, vol.free, vol.first_written, vol.last_written) == (VolumeState.FULL, 0, 10.0, 20.0)
    with pytest.raises(PoolError, match="is full and takes no writes"):
        record_write(vol, 1, now=30.0)
    vol = record_release(vol, 600)
    assert settle(vol) == vol and vol.live_pct == 40.0
    vol = settle(record_release(vol, 400))
    assert (vol.state, vol.used, vol.live, vol.first_written) == (VolumeState.SCRATCH, 0, 0, None)


def test_write_once_volumes_expire_instead_of_returning_to_scratch() -> None:
    vol = record_write(new_volume(WORM, "W1", 100), 100, now=1.0)
    assert vol.write_once and vol.state == VolumeState.FULL
    vol = settle(record_release(vol, 100))
    assert vol.state == VolumeState.EXPIRED and vol.used == 100
    with pytest.raises(WriteOnceViolation, match="cannot return to scratch"):
        transition(vol, VolumeState.SCRATCH)
    filling = record_write(new_volume(WORM, "W2", 100), 50, now=1.0)
    assert settle(record_release(filling, 50)).state == VolumeState.FILLING


def test_state_machine_refuses_what_it_must() -> None:
    vol = record_write(new_volume(TAPE, "A1", 100), 50, now=1.0)
    with pytest.raises(PoolError, match="50 live bytes"):
        transition(vol, VolumeState.SCRATCH)
    with pytest.raises(PoolError, match="cannot go from filling to filling|cannot go"):
        transition(new_volume(TAPE, "A2", 100), VolumeState.FULL)
    ro = transition(vol, VolumeState.READ_ONLY)
    with pytest.raises(PoolError, match="read-only and takes no writes"):
        record_write(ro, 1, now=2.0)
    assert transition(ro, VolumeState.FILLING).state == VolumeState.FILLING
    full = mark_full(vol)
    assert full.state == VolumeState.FULL and full.free == 0 and mark_full(full) == full
    with pytest.raises(PoolError, match="no room"):
        transition(transition(record_write(new_volume(TAPE, "A3", 10), 10, 1.0), VolumeState.READ_ONLY),
                   VolumeState.FILLING)
    with pytest.raises(VolumeFull):
        record_write(vol, 51, now=2.0)
    with pytest.raises(PoolError):
        record_release(vol, 51)


def test_pool_definitions_are_validated() -> None:
    with pytest.raises(PoolError, match="thresholds"):
        Pool("P", "disk", high_migration_pct=50, low_migration_pct=60)
    with pytest.raises(PoolError, match="itself"):
        Pool("P", "disk", next_pool="P")
    with pytest.raises(PoolError):
        Pool("", "disk")
    with pytest.raises(PoolError):
        new_volume(TAPE, "X", 0)


def test_choose_volume_prefers_the_fullest_filling_volume_that_fits() -> None:
    vols = [record_write(new_volume(TAPE, "A1", 1000), 900, 1.0),
            record_write(new_volume(TAPE, "A2", 1000), 500, 1.0),
            new_volume(TAPE, "A4", 1000), new_volume(TAPE, "A3", 1000),
            new_volume(DISK, "D1", 10_000)]
    assert choose_volume(TAPE, vols, 100).name == "A1"
    assert choose_volume(TAPE, vols, 101).name == "A2"
    assert choose_volume(TAPE, vols, 999).name == "A3"
    only_filling = vols[:2]
    assert choose_volume(TAPE, only_filling, 5000).name == "A2"
    with pytest.raises(VolumeFull, match="no volume with room"):
        choose_volume(TAPE, only_filling, 5000, may_span=False)


def test_occupancy_counts_all_but_expired_volumes() -> None:
    vols = [record_write(new_volume(TAPE, "A1", 1000), 1000, 1.0),
            record_write(new_volume(TAPE, "A2", 1000), 200, 1.0),
            new_volume(TAPE, "A3", 1000),
            replace(new_volume(TAPE, "A4", 1000), state=VolumeState.EXPIRED)]
    vols[0] = record_release(vols[0], 300)
    occ = occupancy(TAPE, vols)
    assert (occ.capacity, occ.used, occ.live, occ.free) == (3000, 1200, 900, 1800)
    assert occ.used_pct == pytest.approx(40.0)
    assert occ.by_state == {"scratch": 1, "filling": 1, "full": 1, "read-only": 0, "expired": 1}


def _disk_pool(used: list[int]) -> tuple[list[PoolVolume], list[StoredExtent]]:
    vols, extents = [], []
    for i, u in enumerate(used):
        vols.append(record_write(new_volume(DISK, f"D{i}", 1000), u, 0.0))
        extents.extend(StoredExtent(f"o{i}.{k}", f"D{i}", k, 100, stored_at=100.0 * (i * 10 + k),
                                    last_access=1000.0 - (i * 10 + k)) for k in range(u // 100))
    return vols, extents


def test_migration_by_occupancy_moves_least_recently_used_down_to_low() -> None:
    vols, extents = _disk_pool([900, 800])
    plan = plan_migration(replace(DISK, migrate_after_days=None), vols, extents, now=5 * DAY)
    assert plan.reason == "occupancy" and plan.target == "TAPEPOOL"
    assert plan.used_pct_before == pytest.approx(85.0) and plan.used_pct_after <= 50.0
    assert plan.used_pct_after > 50.0 - 100 / 20
    assert plan.bytes == 700 and len(plan.moves) == 7
    moved = {e.object_id for e in plan.moves}
    kept = [e for e in extents if e.object_id not in moved]
    assert max(e.last_access for e in plan.moves) <= min(e.last_access for e in kept)
    assert [(e.volume, e.position) for e in plan.moves] == sorted((e.volume, e.position) for e in plan.moves)


def test_migration_below_high_threshold_moves_only_old_data() -> None:
    vols, extents = _disk_pool([300, 200])
    assert plan_migration(DISK, vols, extents, now=0.0).reason == "none"
    now = 30 * DAY + 500.0
    plan = plan_migration(DISK, vols, extents, now=now)
    assert plan.reason == "age"
    old = {e.object_id for e in extents if e.stored_at <= now - 30 * DAY}
    assert old and {e.object_id for e in plan.moves} == old
    with pytest.raises(PoolError, match="no next pool"):
        plan_migration(TAPE, vols, extents, now=now)


def test_write_once_pool_migrates_by_age_only_and_is_never_reclaimed() -> None:
    vols = [record_write(new_volume(WORM, "W1", 100), 100, 0.0)]
    extents = [StoredExtent("x", "W1", 0, 100, stored_at=0.0, last_access=0.0)]
    plan = plan_migration(WORM, vols, extents, now=5 * DAY)
    assert plan.reason == "none" and plan.moves == ()
    plan = plan_migration(WORM, vols, extents, now=11 * DAY)
    assert plan.reason == "age" and plan.used_pct_after == plan.used_pct_before == 100.0
    with pytest.raises(WriteOnceViolation, match="never reclaimed"):
        plan_reclamation(WORM, vols, extents)


def test_reclamation_picks_full_volumes_below_the_threshold_cheapest_first() -> None:
    vols = [record_write(new_volume(TAPE, f"A{i}", 1000), 1000, 0.0) for i in range(4)]
    vols[0] = record_release(vols[0], 700)
    vols[1] = record_release(vols[1], 900)
    vols[2] = record_release(vols[2], 500)
    vols.append(record_release(record_write(new_volume(TAPE, "A9", 1000), 100, 0.0), 100))
    extents = [StoredExtent(f"{v.name}-{k}", v.name, k, 100, 0.0, 0.0)
               for v in vols for k in range(v.live // 100)]
    plan = plan_reclamation(TAPE, vols, extents)
    assert [v.name for v in plan.volumes] == ["A1", "A0"]
    assert plan.bytes == 400 and plan.freed == 2000
    assert {e.volume for e in plan.moves} == {"A0", "A1"}
    assert [v.name for v in plan_reclamation(TAPE, vols, extents, max_volumes=1).volumes] == ["A1"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["write", "release", "settle", "ro", "rw"]), st.integers(0, 400)),
                max_size=40), st.booleans())
def test_accounting_invariants_hold_under_any_sequence(ops: list[tuple[str, int]], write_once: bool) -> None:
    pool = WORM if write_once else TAPE
    vol = new_volume(pool, "V", 1000)
    for op, n in ops:
        try:
            if op == "write":
                vol = record_write(vol, n, now=1.0)
            elif op == "release":
                vol = record_release(vol, min(n, vol.live))
            elif op == "settle":
                vol = settle(vol)
            elif op == "ro":
                vol = transition(vol, VolumeState.READ_ONLY)
            else:
                vol = transition(vol, VolumeState.FILLING)
        except (PoolError, VolumeFull, WriteOnceViolation):
            pass
        assert 0 <= vol.live <= vol.used <= vol.capacity
        assert vol.free == (vol.capacity - vol.used if vol.state in ("scratch", "filling") else 0)
        assert vol.state != VolumeState.FULL or vol.used > 0
        if vol.state == VolumeState.SCRATCH:
            assert vol.used == 0
