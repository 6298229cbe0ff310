"""Wrappers: statistics, fault injection, read-only access, finding a layer."""

from __future__ import annotations

import pytest

from pipevault.clock import ManualClock
from pipevault.media import (
    FaultyVolume,
    MemoryVolume,
    ReadOnlyVolume,
    StatisticsVolume,
    find_layer,
)
from pipevault.media.errors import EndOfData, MediaIOError, MediaUnsupported, VolumeFull
from pipevault.media.testing import blocks


def test_faulty_fails_the_planned_call_only() -> None:
    vol = FaultyVolume(MemoryVolume(block_size=512, capacity_blocks=8))
    data = blocks(4)
    vol.fail("append", on_call=2)
    assert vol.append(data[0]) == 0
    with pytest.raises(MediaIOError, match="injected failure of append call 2"):
        vol.append(data[1])
    assert vol.append(data[1]) == 1
    vol.fail("sync", error=VolumeFull("simulated"), times=2)
    for _ in range(2):
        with pytest.raises(VolumeFull):
            vol.sync()
    vol.sync()
    with pytest.raises(MediaUnsupported):
        vol.fail("dance")


def test_faulty_corrupts_reads_of_one_block() -> None:
    vol = FaultyVolume(MemoryVolume(block_size=512, capacity_blocks=8))
    data = blocks(2)
    vol.append(b"".join(data))
    vol.corrupt(1)
    assert vol.read(0) == data[0]
    damaged = vol.read(1)
    assert damaged != data[1] and sum(a != b for a, b in zip(damaged, data[1], strict=True)) == 1
    out = memoryview(bytearray(512))
    vol.read_into(1, out)
    assert bytes(out) == damaged  # the same damage through the caller's buffer


def test_statistics_count_traffic_errors_and_time() -> None:
    clock = ManualClock()
    faulty = FaultyVolume(MemoryVolume(block_size=512, capacity_blocks=8))
    vol = StatisticsVolume(faulty, clock)
    vol.append(b"".join(blocks(3)))
    vol.read(1)
    vol.read_at(10, 100)
    vol.sync()
    with pytest.raises(EndOfData):
        vol.read(7)
    st = vol.statistics()
    assert (st.appends, st.blocks_written, st.bytes_written) == (1, 3, 1536)
    assert (st.reads, st.bytes_read, st.syncs, st.errors) == (2, 612, 1, 1)
    assert find_layer(vol, FaultyVolume) is faulty
    assert find_layer(vol, MemoryVolume) is faulty.unwrap()
    assert find_layer(faulty, StatisticsVolume) is None


def test_read_only_refuses_changes_and_passes_reads() -> None:
    inner = MemoryVolume(block_size=512, capacity_blocks=8)
    inner.append(blocks(1)[0])
    vol = ReadOnlyVolume(inner)
    assert vol.read(0) == blocks(1)[0]
    for op in (lambda: vol.append(bytes(512)), lambda: vol.write(0, bytes(512)), vol.erase,
               vol.write_filemark):
        with pytest.raises(MediaUnsupported, match="read-only"):
            op()
    assert inner.status().data_blocks == 1


def test_memory_discard_mode_counts_but_keeps_nothing() -> None:
    vol = MemoryVolume(block_size=512, capacity_blocks=4, discard=True)
    assert vol.append(b"".join(blocks(3))) == 0
    assert vol.status().data_blocks == 3
    with pytest.raises(EndOfData, match="discards"):
        vol.read(0)


def test_position_cost_takes_the_quicker_of_winding_and_reading_through() -> None:
    from pipevault.media import PositionCost

    assert PositionCost().seconds(10**9) == 0.0
    wind_only = PositionCost(fixed_s=3.0, per_byte_s=1e-6)
    assert wind_only.seconds(0) == 0.0 and wind_only.seconds(-1_000_000) == pytest.approx(4.0)
    both = PositionCost(fixed_s=3.0, per_byte_s=1e-7, stream_speed=1_000_000)
    assert both.seconds(1_000_000) == pytest.approx(1.0)
    assert both.seconds(10_000_000) == pytest.approx(4.0)
