"""Tape drive behaviour: positioning costs, capacity and early warning, streaming vs back-hitch,
filemarks, truncation on write, damaged cartridges. All time runs on a ManualClock."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.media import TapeDrive, label_cartridge
from pipevault.media._blockfile import HEADER_SIZE
from pipevault.media.errors import (
    BadBlock,
    EndOfData,
    LabelMismatch,
    LibraryError,
    MediaCorrupt,
    NotMounted,
    VolumeFull,
)
from pipevault.media.testing import TEST_TAPE, blocks

BS = 512


def _drive(tmp_path: Path, capacity_blocks: int = 1000,
           volser: str = "A00001") -> tuple[TapeDrive, ManualClock]:
    clock = ManualClock()
    path = tmp_path / f"{volser}.tape"
    label_cartridge(path, volser, block_size=BS, capacity=capacity_blocks * BS, clock=clock)
    drive = TapeDrive(profile=TEST_TAPE, clock=clock)
    drive.load(path, expected_volser=volser)
    return drive, clock


def _elapsed(clock: ManualClock, fn: object) -> float:
    start = clock.monotonic()
    assert callable(fn)
    fn()
    return clock.monotonic() - start


def test_load_costs_the_load_time_and_checks_the_label(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "A00001.tape"
    label_cartridge(path, "A00001", block_size=BS, capacity=100 * BS, clock=clock)
    drive = TapeDrive(profile=TEST_TAPE, clock=clock)
    with pytest.raises(LabelMismatch):
        drive.load(path, expected_volser="B00002")
    assert not drive.loaded
    assert _elapsed(clock, lambda: drive.load(path)) == TEST_TAPE.load_s
    with pytest.raises(LibraryError, match="already holds A00001"):
        drive.load(path)
    assert drive.position == 0 and drive.statistics().loads == 1


def test_empty_drive_is_not_mounted(tmp_path: Path) -> None:
    drive = TapeDrive(profile=TEST_TAPE, clock=ManualClock())
    for op in (drive.rewind, drive.status, lambda: drive.append(bytes(BS)), drive.unload, drive.read_next):
        with pytest.raises(NotMounted):
            op()
    assert "empty drive" in repr(drive)


def test_locate_cost_grows_with_distance_and_short_moves_read_through(tmp_path: Path) -> None:
    drive, clock = _drive(tmp_path)
    drive.append(b"".join(blocks(500)))
    drive.sync()
    capacity = 1000 * BS
    far = _elapsed(clock, lambda: drive.locate(0))
    assert far == pytest.approx(TEST_TAPE.locate_seconds(500 * BS, capacity))
    assert far == pytest.approx(TEST_TAPE.locate_overhead_s + TEST_TAPE.full_wind_s * 0.5)
    assert drive.capabilities.positioning.seconds(-500 * BS) == pytest.approx(far)
    near = _elapsed(clock, lambda: drive.locate(2))
    assert near == pytest.approx(2 * BS / TEST_TAPE.native_speed)
    mid = _elapsed(clock, lambda: drive.locate(300))
    assert near < mid < far
    assert _elapsed(clock, lambda: drive.locate(300)) == 0.0
    assert drive.statistics().locates == 3
    assert drive.statistics().positioning_seconds == pytest.approx(far + near + mid)


def test_rewind_and_unload_cost_depends_on_position(tmp_path: Path) -> None:
    drive, clock = _drive(tmp_path)
    drive.append(b"".join(blocks(200)))
    drive.sync()
    rewind = _elapsed(clock, drive.rewind)
    assert rewind == pytest.approx(TEST_TAPE.full_wind_s * 200 / 1000)
    assert _elapsed(clock, drive.rewind) == 0.0
    drive.locate(100)
    unload = _elapsed(clock, drive.unload)
    assert unload == pytest.approx(TEST_TAPE.full_wind_s * 100 / 1000 + TEST_TAPE.unload_s)
    assert drive.statistics().unloads == 1 and not drive.loaded


def test_sequential_reads_cost_transfer_time_only(tmp_path: Path) -> None:
    drive, clock = _drive(tmp_path)
    data = blocks(20)
    drive.append(b"".join(data))
    drive.rewind()
    took = _elapsed(clock, lambda: [drive.read(i) for i in range(20)])
    assert took == pytest.approx(20 * BS / TEST_TAPE.native_speed)
    assert drive.statistics().locates == 0
    drive.rewind()
    assert [drive.read_next() for _ in range(20)] == data
    with pytest.raises(EndOfData):
        drive.read_next()


def test_early_warning_then_end_of_medium(tmp_path: Path) -> None:
    drive, _ = _drive(tmp_path, capacity_blocks=100)
    warn_at = 100 - int(100 * TEST_TAPE.early_warning_fraction)
    drive.append(b"".join(blocks(warn_at - 1)))
    assert not drive.status().early_warning
    drive.append(blocks(1)[0])
    assert drive.status().early_warning and drive.statistics().early_warnings == 1
    drive.append(b"".join(blocks(100 - warn_at)))
    assert drive.status().free_bytes == 0
    with pytest.raises(VolumeFull, match="end of medium"):
        drive.append(blocks(1)[0])
    drive.write(10, blocks(1)[0])
    assert not drive.status().early_warning and drive.status().end_of_data == 11
    assert drive.statistics().early_warnings == 1


def _feed(drive: TapeDrive, clock: ManualClock, count: int, blocks_per_second: float | None) -> None:
    block = bytes(BS)
    for _ in range(count):
        drive.append(block)
        if blocks_per_second is not None:
            clock.advance(1.0 / blocks_per_second)


@pytest.mark.parametrize("rate", [40.0, 55.0, 99.0])
def test_fed_at_or_above_minimum_speed_the_drive_streams(tmp_path: Path, rate: float) -> None:
    drive, clock = _drive(tmp_path)
    _feed(drive, clock, 400, rate)
    drive.sync()
    stats = drive.statistics()
    assert stats.backhitches == 0
    assert drive.speed == pytest.approx(rate * BS, rel=0.01)


@pytest.mark.parametrize("rate", [5.0, 20.0, 35.0])
def test_fed_below_minimum_speed_the_drive_back_hitches(tmp_path: Path, rate: float) -> None:
    drive, clock = _drive(tmp_path)
    _feed(drive, clock, 400, rate)
    stats = drive.statistics()
    # A restart waits for the start threshold, so there is at most one back-hitch per refill.
    assert 0 < stats.backhitches <= 400 * BS // TEST_TAPE.start_threshold_bytes
    assert drive.speed == TEST_TAPE.min_speed
    assert stats.backhitch_seconds == pytest.approx(stats.backhitches * TEST_TAPE.backhitch_s)


def test_slower_feed_means_more_back_hitch_time_per_byte(tmp_path: Path) -> None:
    per_block = {}
    for rate in (5.0, 20.0, 35.0, 60.0):
        drive, clock = _drive(tmp_path, volser=f"R{int(rate):05d}")
        _feed(drive, clock, 200, rate)
        per_block[rate] = drive.statistics().backhitch_seconds / 200
    assert per_block[5.0] >= per_block[20.0] >= per_block[35.0] > per_block[60.0] == 0.0


def test_a_writer_faster_than_the_drive_is_held_to_native_speed(tmp_path: Path) -> None:
    drive, clock = _drive(tmp_path)
    took = _elapsed(clock, lambda: _feed(drive, clock, 500, None))
    buffered = TEST_TAPE.buffer_bytes
    assert took == pytest.approx((500 * BS - buffered) / TEST_TAPE.native_speed, rel=0.02)
    assert drive.statistics().writer_wait_seconds == pytest.approx(took)
    assert drive.statistics().backhitches == 0
    drain = _elapsed(clock, drive.sync)
    assert drain == pytest.approx(buffered / TEST_TAPE.native_speed, rel=0.02)


def test_filemark_flushes_so_the_next_write_back_hitches(tmp_path: Path) -> None:
    drive, clock = _drive(tmp_path)
    _feed(drive, clock, 50, 80.0)
    assert drive.statistics().backhitches == 0
    drive.write_filemark()
    _feed(drive, clock, 50, 80.0)
    assert drive.statistics().backhitches == 1
    assert drive.statistics().filemarks_written == 1


def test_spacing_over_filemarks(tmp_path: Path) -> None:
    drive, _ = _drive(tmp_path)
    files = [blocks(3, seed=s) for s in range(3)]
    marks = []
    for f in files:
        drive.append(b"".join(f))
        marks.append(drive.write_filemark())
    assert marks == [3, 7, 11] and drive.status().end_of_data == 12
    drive.rewind()
    assert drive.space_filemarks(1) == 4
    assert drive.read_next() == files[1][0]
    assert drive.space_filemarks(1) == 8
    assert [drive.read_next() for _ in range(3)] == files[2]
    assert drive.read_next() is None
    assert drive.space_filemarks(-2) == 7
    assert drive.read_next() is None and drive.read_next() == files[2][0]
    drive.rewind()
    with pytest.raises(EndOfData, match="end of data"):
        drive.space_filemarks(4)
    assert drive.position == 12
    with pytest.raises(EndOfData, match="beginning of the tape"):
        drive.space_filemarks(-4)
    assert drive.position == 0
    assert drive.space_filemarks(2) == 8


def test_writing_in_the_middle_truncates_filemarks_and_blocks_after(tmp_path: Path) -> None:
    drive, _ = _drive(tmp_path)
    drive.append(b"".join(blocks(3)))
    drive.write_filemark(2)
    drive.append(b"".join(blocks(3)))
    new = blocks(1, seed=99)[0]
    drive.write(2, new)
    assert drive.status().end_of_data == 3 and drive.status().data_blocks == 3
    drive.rewind()
    with pytest.raises(EndOfData):
        drive.space_filemarks(1)
    assert drive.read(2) == new
    with pytest.raises(BadBlock):
        drive.write_filemark(0)


def test_damaged_cartridges_are_reported(tmp_path: Path) -> None:
    drive, _ = _drive(tmp_path)
    data = blocks(3)
    drive.append(b"".join(data))
    path = drive.unload()
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 16 + BS + 16 + 10] ^= 0xFF
    path.write_bytes(bytes(raw))
    drive.load(path)
    assert drive.read(0) == data[0]
    with pytest.raises(MediaCorrupt, match="record 1"):
        drive.read(1)
    drive.unload()
    path.write_bytes(bytes(raw[:HEADER_SIZE]) + b"XXXX" + bytes(raw[HEADER_SIZE + 4:]))
    with pytest.raises(MediaCorrupt, match="record header"):
        drive.load(path)
    path.write_bytes(bytes(raw[:-100]))
    drive.load(path)
    assert drive.status().end_of_data == 2


def test_real_time_mode_sleeps_on_the_system_clock(tmp_path: Path) -> None:
    from pipevault.clock import SYSTEM

    fast = TEST_TAPE.scaled(0.001)
    assert fast.load_s == pytest.approx(TEST_TAPE.load_s / 1000)
    assert fast.native_speed == pytest.approx(TEST_TAPE.native_speed * 1000)
    path = tmp_path / "R00001.tape"
    label_cartridge(path, "R00001", block_size=BS, capacity=100 * BS, clock=SYSTEM)
    drive = TapeDrive(profile=fast, clock=SYSTEM)
    start = SYSTEM.monotonic()
    drive.load(path)
    assert SYSTEM.monotonic() - start >= fast.load_s


@settings(max_examples=40, deadline=None)
@given(rate=st.floats(1.0, 300.0), count=st.integers(50, 300))
def test_streaming_model_properties(tmp_path_factory: pytest.TempPathFactory, rate: float, count: int) -> None:
    drive, clock = _drive(tmp_path_factory.mktemp("tape"))
    start = clock.monotonic()
    _feed(drive, clock, count, rate)
    drive.sync()
    elapsed = clock.monotonic() - start
    stats = drive.statistics()
    min_rate = TEST_TAPE.min_speed / BS
    # The drive never writes faster than native speed, and never stops while fed fast enough.
    assert elapsed >= (count * BS - BS) / TEST_TAPE.native_speed
    if rate >= min_rate * 1.001:
        assert stats.backhitches == 0
    elif rate <= min_rate * 0.9 and count * BS > 2 * TEST_TAPE.buffer_bytes:
        assert stats.backhitches > 0
    assert stats.backhitch_seconds == pytest.approx(stats.backhitches * TEST_TAPE.backhitch_s)
