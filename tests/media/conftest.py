"""The media implementations every conformance check runs against."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipevault.clock import ManualClock
from pipevault.media import (
    DiskPoolDirectory,
    DiskVolume,
    FaultyVolume,
    MemoryVolume,
    OpticalVolume,
    StatisticsVolume,
    TapeDrive,
    Volume,
    VolumeLabel,
    label_cartridge,
)
from pipevault.media._blockfile import HEADER_SIZE, slot_size, write_header
from pipevault.media.testing import TEST_TAPE, Implementation


def disk_impl(tmp_path: Path) -> Implementation:
    counter = iter(range(10_000))

    def make(block_size: int, capacity_blocks: int) -> Volume:
        pool = DiskPoolDirectory(tmp_path / "disk", pool="DISKPOOL", block_size=block_size,
                                 max_file_size=HEADER_SIZE + capacity_blocks * slot_size(block_size))
        return pool.create(f"D{next(counter):05d}")

    def reopen(vol: Volume) -> Volume:
        assert isinstance(vol, DiskVolume)
        return DiskVolume(vol.path, expected_name=vol.name)

    return Implementation("disk", make, reopen)


def memory_impl(tmp_path: Path) -> Implementation:
    return Implementation("memory", lambda bs, n: MemoryVolume(block_size=bs, capacity_blocks=n))


def statistics_impl(tmp_path: Path) -> Implementation:
    inner = disk_impl(tmp_path)
    return Implementation("statistics(disk)",
                          lambda bs, n: StatisticsVolume(inner.make(bs, n), ManualClock()))


def faulty_impl(tmp_path: Path) -> Implementation:
    inner = disk_impl(tmp_path)
    return Implementation("faulty(disk)", lambda bs, n: FaultyVolume(inner.make(bs, n)))


def tape_impl(tmp_path: Path) -> Implementation:
    counter = iter(range(10_000))
    clock = ManualClock()
    cartridges: dict[int, Path] = {}

    def make(block_size: int, capacity_blocks: int) -> Volume:
        path = tmp_path / f"T{next(counter):05d}.tape"
        label_cartridge(path, path.stem, block_size=block_size, capacity=block_size * capacity_blocks,
                        clock=clock)
        drive = TapeDrive(profile=TEST_TAPE, clock=clock)
        drive.load(path)
        cartridges[id(drive)] = path
        return drive

    def reopen(vol: Volume) -> Volume:
        drive = TapeDrive("DRIVE1", profile=TEST_TAPE, clock=clock)
        path = cartridges[id(vol)]
        drive.load(path, expected_volser=path.stem)
        return drive

    return Implementation("tape", make, reopen)


def optical_impl(tmp_path: Path) -> Implementation:
    counter = iter(range(1, 10_000))

    def make(block_size: int, capacity_blocks: int) -> Volume:
        seq = next(counter)
        label = VolumeLabel(name=f"FAM-{seq:04d}", media_type="optical", block_size=block_size,
                            capacity=block_size * capacity_blocks, family="FAM", sequence=seq)
        write_header(tmp_path / f"{label.name}.pvo", label)
        return OpticalVolume(tmp_path / f"{label.name}.pvo", expected_name=label.name)

    def reopen(vol: Volume) -> Volume:
        assert isinstance(vol, OpticalVolume)
        return OpticalVolume(vol.path, expected_name=vol.name)

    return Implementation("optical", make, reopen)


IMPLEMENTATIONS: dict[str, Callable[[Path], Implementation]] = {
    "memory": memory_impl,
    "disk": disk_impl,
    "statistics": statistics_impl,
    "faulty": faulty_impl,
    "tape": tape_impl,
    "optical": optical_impl,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def implementation(request: pytest.FixtureRequest, tmp_path: Path) -> Implementation:
    """Each media implementation in turn."""
    return IMPLEMENTATIONS[request.param](tmp_path)
