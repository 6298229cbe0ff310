"""Migration disk -> tape and reclamation, end to end: backups, moves, restores byte for byte."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipevault import config
from pipevault.catalog import classes as class_rows
from pipevault.catalog import locations as location_rows
from pipevault.catalog import volumes as volume_rows
from pipevault.catalog.schema import locations
from pipevault.clock import ManualClock
from pipevault.media.errors import MediaIOError
from pipevault.mover import BackupOptions, RestoreOptions, Site, run_backup, run_restore
from pipevault.mover.errors import MigrationFailed, MigrationRefused, ReclaimWriteOnce
from pipevault.mover.migrate import define_pool, migrate, reclaim
from pipevault.mover.query import run_expire
from pipevault.mover.relocate import TargetWriter
from pipevault.mover.restore import locations_of, select_versions
from pipevault.mover.tapes import TapeSettings

DAY = 86_400.0


def open_site(home: Path, clock: ManualClock, volume_size: str = "2M", cartridges: int = 4,
              capacity: int = 8 << 20) -> Site:
    env = {"PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent", "PIPEVAULT_VOLUME_SIZE": volume_size}
    return Site.open(config.load(env=env), clock=clock, tape=TapeSettings(cartridges=cartridges, capacity=capacity))


def make_files(root: Path, n: int, seed: int) -> Path:
    """``n`` incompressible files: most small (several share a superblock), some spanning many."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        size = rng.choice([1_000, 40_000, 120_000, 700_000]) if i % 7 else 1_300_000
        (root / f"f{i:03d}.bin").write_bytes(rng.randbytes(size))
    return root


def contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def restored(site: Site, src: Path, out: Path) -> dict[str, bytes]:
    result = run_restore(site, RestoreOptions([str(src)], to=str(out)))
    assert result.failed == []
    return contents(out)


def volumes(site: Site, pool: str) -> dict[str, volume_rows.Volume]:
    with site.catalog.read() as conn:
        return {v.name: v for v in volume_rows.list_volumes(conn, pool=pool)}


def pools_disk_to_tape(site: Site) -> None:
    define_pool(site, "tape", "tape", None)
    define_pool(site, "disk", None, "tape")


def all_locations(site: Site) -> list[tuple[int, int, int, int, int, int]]:
    with site.catalog.read() as conn:
        return [(r.version_id, r.part, r.volume_id, r.superblock, r.offset, r.length)
                for r in conn.execute(sa.select(locations).order_by(locations.c.version_id, locations.c.part))]


def test_migrate_by_age_moves_old_data_to_tape_and_restores_identical(tmp_path: Path) -> None:
    clock = ManualClock(1_750_000_000.0)
    src = make_files(tmp_path / "src", 24, seed=1)
    with open_site(tmp_path / "home", clock) as site:
        pools_disk_to_tape(site)
        run_backup(site, BackupOptions([str(src)]))
        old_volumes = set(volumes(site, "disk"))
        assert len(old_volumes) >= 3  # the data spans several disk volumes
        clock.advance(3 * DAY)
        (src / "f001.bin").write_bytes(b"changed three days later\n" * 1000)
        run_backup(site, BackupOptions([str(src)]))
        result = migrate(site, "disk", age_days=2)
        assert result.reason == "age" and result.target_pool == "tape"
        assert {v.source for v in result.volumes} == old_volumes
        # Every volume that held only old data is scratch again and its file is gone; the
        # last one also took the new version of f001 (two days old at most), which stayed.
        assert len(result.freed) == len(old_volumes) - 1
        disk = volumes(site, "disk")
        for name in result.freed:
            assert disk[name].state == "scratch" and disk[name].used == 0
            assert not site.pool_directory("disk").path_of(name).exists()
        tape = volumes(site, "tape")
        assert any(v.state in ("filling", "full") and v.used for v in tape.values())
        with site.catalog.read() as conn:
            on = [loc.volume for loc in location_rows.restore_plan(conn, range(1, 10_000))]
        assert sum(1 for v in on if v in disk) == 1 and set(on) <= set(tape) | set(disk)
        assert restored(site, src, tmp_path / "out") == contents(src)
        # The old version of f001, on tape now, comes back too.
        pit = run_restore(site, RestoreOptions([str(src / "f001.bin")], to=str(tmp_path / "pit"),
                                               point_in_time=clock.now() - 2 * DAY))
        assert pit.failed == [] and (tmp_path / "pit" / "f001.bin").stat().st_size != (src / "f001.bin").stat().st_size


def test_migrate_by_occupancy_brings_the_pool_down(tmp_path: Path) -> None:
    clock = ManualClock(1_750_000_000.0)
    src = make_files(tmp_path / "src", 30, seed=2)
    with open_site(tmp_path / "home", clock) as site:
        pools_disk_to_tape(site)
        for i, chunk in enumerate((range(10), range(10, 20), range(20, 30))):
            part = tmp_path / f"part{i}"
            part.mkdir()
            for j in chunk:
                os.link(src / f"f{j:03d}.bin", part / f"f{j:03d}.bin")
            run_backup(site, BackupOptions([str(part)]))
            clock.advance(DAY)
        with site.catalog.read() as conn:
            before = sum(v.used for v in volume_rows.list_volumes(conn, pool="disk"))
        capacity = sum(v.capacity for v in volumes(site, "disk").values())
        used_pct = 100 * before / capacity
        result = migrate(site, "disk", high_pct=used_pct - 1, low_pct=used_pct / 2)
        assert "occupancy" in result.reason and result.freed
        after = sum(v.used for v in volumes(site, "disk").values())
        assert after <= before / 2 + capacity * 0.1  # down to about the low mark (whole volumes free)
        assert all(v.state == "scratch" for n, v in volumes(site, "disk").items() if n in result.freed)
        # The oldest session went first: all of it is on tape now.
        oldest = locations_of(site, select_versions(site, RestoreOptions([str(tmp_path / "part0")])))
        assert oldest and {loc.volume for loc in oldest} <= set(volumes(site, "tape"))
        for i in range(3):
            part = tmp_path / f"part{i}"
            assert restored(site, part, tmp_path / f"out{i}") == contents(part)


def test_reclaim_compacts_volumes_whose_data_mostly_expired(tmp_path: Path) -> None:
    clock = ManualClock(1_750_000_000.0)
    src = make_files(tmp_path / "src", 40, seed=3)
    with open_site(tmp_path / "home", clock) as site:
        with site.catalog.write() as conn:
            class_rows.define_class(conn, class_rows.ManagementClass("STANDARD", versions_deleted=0,
                                                                     retain_only_days=0), now=clock.now())
        run_backup(site, BackupOptions([str(src)]))
        for i in range(40):
            if i % 5:
                (src / f"f{i:03d}.bin").unlink()
        clock.advance(DAY)
        run_backup(site, BackupOptions([str(src)]))
        clock.advance(DAY)
        run_expire(site)
        disk = volumes(site, "disk")
        sparse = [v.name for v in disk.values() if v.state == "full"]
        assert sparse
        assert restored(site, src, tmp_path / "before") == contents(src)
        held = {}
        for name in sparse:
            with site.open_volume(name) as vol:
                held[name] = vol.status().data_blocks
        result = reclaim(site, "disk", 60)
        assert result.volumes and result.target_pool == "disk"
        # Only superblocks holding live data were copied.
        assert sum(m.blocks for m in result.volumes) < sum(held[m.source] for m in result.volumes)
        disk = volumes(site, "disk")
        for name in result.freed:
            assert disk[name].state == "scratch"
            assert not site.pool_directory("disk").path_of(name).exists()
        assert result.freed
        assert restored(site, src, tmp_path / "after") == contents(src)
        # A second run finds nothing left below the threshold among what it compacted.
        again = reclaim(site, "disk", 60)
        assert not set(again.freed) & set(result.freed)


def test_a_failed_copy_leaves_the_catalog_on_the_intact_old_copy(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock(1_750_000_000.0)
    src = make_files(tmp_path / "src", 20, seed=4)
    with open_site(tmp_path / "home", clock) as site:
        pools_disk_to_tape(site)
        run_backup(site, BackupOptions([str(src)]))
        clock.advance(2 * DAY)
        before = all_locations(site)
        original = TargetWriter.append
        calls = {"n": 0}

        def failing(self: TargetWriter, block: bytes) -> tuple[str, int]:
            calls["n"] += 1
            if calls["n"] == 10:
                raise MediaIOError("drive DRIVE1 reported a write error")
            return original(self, block)

        monkeypatch.setattr(TargetWriter, "append", failing)
        with pytest.raises(MigrationFailed) as info:
            migrate(site, "disk", age_days=1)
        assert "write error" in info.value.message
        after = all_locations(site)
        # The volume being copied when it failed is still where the catalog points.
        failed_volume = info.value.details["volume"]
        with site.catalog.read() as conn:
            vol_id = volume_rows.get_volume(conn, failed_volume).id
        assert [r for r in before if r[2] == vol_id] == [r for r in after if r[2] == vol_id]
        assert volumes(site, "disk")[failed_volume].state != "scratch"
        assert restored(site, src, tmp_path / "out1") == contents(src)
        monkeypatch.setattr(TargetWriter, "append", original)
        migrate(site, "disk", age_days=1)
        assert all(v.state == "scratch" for v in volumes(site, "disk").values())
        assert restored(site, src, tmp_path / "out2") == contents(src)


def test_refusals(tmp_path: Path) -> None:
    with open_site(tmp_path / "home", ManualClock()) as site:
        with pytest.raises(MigrationRefused, match="no next pool"):
            migrate(site, "disk", age_days=1)
        define_pool(site, "worm", "optical", None)
        with pytest.raises(ReclaimWriteOnce):
            reclaim(site, "worm", 50)
        with pytest.raises(MigrationRefused, match="not defined"):
            define_pool(site, "disk", None, "nowhere")
        with pytest.raises(MigrationRefused, match="itself"):
            define_pool(site, "disk", None, "disk")
        pools_disk_to_tape(site)
        with pytest.raises(MigrationRefused, match="an age, or high and low"):
            migrate(site, "disk")
        with pytest.raises(MigrationRefused):
            migrate(site, "disk", high_pct=20, low_pct=50)
        with pytest.raises(MigrationRefused, match="no pool"):
            reclaim(site, "missing", 50)


def test_backup_straight_to_tape_spans_cartridges_and_restores(tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", 16, seed=5)
    with open_site(tmp_path / "home", ManualClock(), cartridges=2, capacity=3 << 20) as site:
        define_pool(site, "tape", "tape", None)
        with site.catalog.write() as conn:
            class_rows.define_class(conn, class_rows.ManagementClass("TAPE", destination_pool="tape"),
                                    now=site.clock.now())
        run_backup(site, BackupOptions([str(src)], class_name="TAPE"))
        tape = volumes(site, "tape")
        assert sum(1 for v in tape.values() if v.used) >= 2
        assert any(v.state == "full" for v in tape.values())
        assert len(tape) >= 3  # a third cartridge was labelled when the first two were used
        assert restored(site, src, tmp_path / "out") == contents(src)
        lib = site.tapes.library("tape")
        assert all(not e.drive for e in lib.inventory())  # every cartridge back in its slot
