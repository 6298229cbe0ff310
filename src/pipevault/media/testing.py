"""The media conformance suite: behaviour every :class:`Volume` implementation must show.

Use it from a test module with one parametrization over the implementations::

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_disk(check, tmp_path):
        check(Implementation("disk", make=..., reopen=...))

Each check builds fresh volumes with ``make(block_size, capacity_blocks)`` and asserts with
plain ``assert``; what it expects depends only on the volume's declared capabilities.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from pipevault.media._tape_profile import LTO9
from pipevault.media._volume import Volume
from pipevault.media.errors import (
    BadBlock,
    EndOfData,
    MediaError,
    MediaUnsupported,
    NotMounted,
    VolumeFull,
    WriteOnceViolation,
)

BLOCK = 512
"""Block size the checks use: small, so the suite is fast."""

TEST_TAPE = replace(LTO9, name="test tape", native_speed=100 * BLOCK, min_speed=40 * BLOCK,
                    buffer_bytes=16 * BLOCK, start_threshold_bytes=4 * BLOCK, backhitch_s=0.1, load_s=15.0,
                    unload_s=10.0, full_wind_s=2.0, locate_overhead_s=0.5, robot_move_s=6.0,
                    early_warning_fraction=0.1)
"""A drive scaled to 512-byte blocks and tapes of about a thousand blocks: streams 100 blocks/s,
matches down to 40 blocks/s, buffers 16 blocks, so tests show streaming and back-hitching with
a few hundred blocks."""


@dataclass(frozen=True)
class Implementation:
    """How the suite gets volumes of one kind.

    Attributes:
        name: shown in test ids.
        make: a new, empty, open volume with the given block size and capacity in blocks.
        reopen: given a closed volume, open it again from its medium (None if not durable).
    """

    name: str
    make: Callable[[int, int], Volume]
    reopen: Callable[[Volume], Volume] | None = None


def blocks(count: int, seed: int = 0, size: int = BLOCK) -> list[bytes]:
    """``count`` distinct pseudo-random blocks of ``size`` bytes."""
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(count)]


def _raises(kind: type[MediaError], fn: Callable[[], object]) -> MediaError:
    try:
        fn()
    except kind as exc:
        return exc
    raise AssertionError(f"expected {kind.__name__}")


def check_capabilities_are_consistent(impl: Implementation) -> None:
    """Capabilities, label and a fresh volume's status agree with what was asked for."""
    vol = impl.make(BLOCK, 8)
    caps = vol.capabilities
    assert caps.block_size == vol.block_size == vol.label.block_size == BLOCK
    assert caps.capacity_blocks == 8 and caps.capacity == 8 * BLOCK
    assert not (caps.write_once and caps.rewritable)
    assert not (caps.sequential and caps.random_read)
    assert not caps.filemarks or caps.sequential
    st = vol.status()
    assert (st.end_of_data, st.data_blocks, st.used_bytes, st.free_bytes) == (0, 0, 0, 8 * BLOCK)
    assert vol.name == vol.label.name and vol.name in repr(vol)
    vol.close()


def check_append_then_read_round_trips(impl: Implementation) -> None:
    """Appended blocks get consecutive addresses and read back exactly, in any order."""
    vol = impl.make(BLOCK, 16)
    data = blocks(8, seed=1)
    addresses = [vol.append(b) for b in data[:5]]
    assert addresses == [0, 1, 2, 3, 4]
    assert vol.append(b"".join(data[5:])) == 5
    order = list(range(8))
    random.Random(2).shuffle(order)
    for i in order:
        assert vol.read(i) == data[i]
    st = vol.status()
    assert (st.end_of_data, st.data_blocks, st.used_bytes, st.free_bytes) == (8, 8, 8 * BLOCK, 8 * BLOCK)
    vol.close()


def check_read_into_fills_the_callers_buffer(impl: Implementation) -> None:
    """``read_into`` gives what ``read`` gives, in a larger buffer of the caller's, and
    refuses what ``read`` refuses."""
    vol = impl.make(BLOCK, 8)
    data = blocks(4, seed=11)
    vol.append(b"".join(data))
    out = memoryview(bytearray(BLOCK + 100))
    for i in (2, 0, 3, 1):
        assert vol.read_into(i, out) == BLOCK
        assert bytes(out[:BLOCK]) == data[i] == vol.read(i)
    _raises(EndOfData, lambda: vol.read_into(4, out))
    _raises(BadBlock, lambda: vol.read_into(-1, out))
    vol.close()


def check_volume_does_not_keep_callers_buffer(impl: Implementation) -> None:
    """A bytearray or memoryview may be reused by the caller as soon as append returns."""
    vol = impl.make(BLOCK, 4)
    buf = bytearray(blocks(1, seed=3)[0])
    original = bytes(buf)
    vol.append(buf)
    buf[:] = bytes(BLOCK)
    vol.append(memoryview(buf))
    assert vol.read(0) == original and vol.read(1) == bytes(BLOCK)
    vol.close()


def check_partial_blocks_are_refused(impl: Implementation) -> None:
    """Writes that are not whole blocks raise BadBlock and write nothing."""
    vol = impl.make(BLOCK, 4)
    for size in (0, 1, BLOCK - 1, BLOCK + 1):
        _raises(BadBlock, partial(vol.append, bytes(size)))
    assert vol.status().end_of_data == 0
    vol.close()


def check_reads_outside_the_data_are_refused(impl: Implementation) -> None:
    """Past the end of data is EndOfData; a negative address is BadBlock."""
    vol = impl.make(BLOCK, 4)
    _raises(EndOfData, lambda: vol.read(0))
    vol.append(blocks(1)[0])
    _raises(EndOfData, lambda: vol.read(1))
    _raises(BadBlock, lambda: vol.read(-1))
    assert vol.read(0) == blocks(1)[0]
    vol.close()


def check_full_volume_refuses_and_keeps_data(impl: Implementation) -> None:
    """Past capacity, appends raise VolumeFull, all or nothing, and earlier blocks stay readable."""
    vol = impl.make(BLOCK, 4)
    data = blocks(4, seed=4)
    vol.append(b"".join(data[:3]))
    _raises(VolumeFull, lambda: vol.append(b"".join(data[:2])))
    assert vol.status().data_blocks == 3
    vol.append(data[3])
    assert vol.status().free_bytes == 0
    _raises(VolumeFull, lambda: vol.append(data[0]))
    assert [vol.read(i) for i in range(4)] == data
    vol.close()


def check_byte_offset_reads(impl: Implementation) -> None:
    """``read_at`` slices the data across block boundaries, or is unsupported without random read."""
    vol = impl.make(BLOCK, 4)
    data = blocks(3, seed=5)
    vol.append(b"".join(data))
    whole = b"".join(data)
    if not vol.capabilities.random_read:
        _raises(MediaUnsupported, lambda: vol.read_at(0, 10))
        vol.close()
        return
    for offset, length in ((0, 0), (0, BLOCK), (BLOCK - 7, 20), (1, 3 * BLOCK - 1), (2 * BLOCK + 5, 9)):
        assert vol.read_at(offset, length) == whole[offset:offset + length]
    _raises(EndOfData, lambda: vol.read_at(3 * BLOCK - 1, 2))
    _raises(BadBlock, lambda: vol.read_at(-1, 2))
    vol.close()


def check_filemarks_match_capabilities(impl: Implementation) -> None:
    """Filemarks take an address and are not data; media without them refuse explicitly."""
    vol = impl.make(BLOCK, 4)
    data = blocks(2, seed=6)
    vol.append(data[0])
    if not vol.capabilities.filemarks:
        err = _raises(MediaUnsupported, vol.write_filemark)
        assert vol.name in str(err) and "filemark" in str(err)
        _raises(MediaUnsupported, lambda: vol.space_filemarks(1))
        vol.close()
        return
    mark = vol.write_filemark()
    assert mark == 1
    assert vol.append(data[1]) == 2
    _raises(BadBlock, lambda: vol.read(mark))
    assert vol.read(0) == data[0] and vol.read(2) == data[1]
    assert vol.status().data_blocks == 2 and vol.status().end_of_data == 3
    vol.close()


def check_overwrite_follows_capabilities(impl: Implementation) -> None:
    """Before the end of data: write-once refuses, sequential truncates, rewritable replaces."""
    vol = impl.make(BLOCK, 8)
    old = blocks(4, seed=7)
    new = blocks(1, seed=8)[0]
    vol.append(b"".join(old))
    caps = vol.capabilities
    if caps.write_once:
        _raises(WriteOnceViolation, lambda: vol.write(1, new))
        assert [vol.read(i) for i in range(4)] == old
    elif caps.append_only:
        assert vol.write(1, new) == 1
        assert vol.status().end_of_data == 2
        assert vol.read(0) == old[0] and vol.read(1) == new
        _raises(EndOfData, lambda: vol.read(2))
    else:
        assert vol.write(1, new) == 1
        assert [vol.read(i) for i in range(4)] == [old[0], new, old[2], old[3]]
    end = vol.status().end_of_data
    assert vol.write(end, old[0]) == end and vol.read(end) == old[0]
    _raises(BadBlock, lambda: vol.write(end + 2, old[0]))
    vol.close()


def check_erase_follows_capabilities(impl: Implementation) -> None:
    """Erase empties a reusable volume; write-once media refuse and keep everything."""
    vol = impl.make(BLOCK, 4)
    data = blocks(2, seed=9)
    vol.append(b"".join(data))
    if vol.capabilities.write_once:
        _raises(WriteOnceViolation, vol.erase)
        assert vol.read(1) == data[1]
    else:
        vol.erase()
        assert vol.status().end_of_data == 0
        _raises(EndOfData, lambda: vol.read(0))
        assert vol.append(data[1]) == 0 and vol.read(0) == data[1]
    vol.close()


def check_closed_volume_refuses(impl: Implementation) -> None:
    """After close (idempotent) every operation raises NotMounted."""
    vol = impl.make(BLOCK, 4)
    vol.append(blocks(1)[0])
    vol.close()
    vol.close()
    assert vol.closed
    for op in (lambda: vol.append(bytes(BLOCK)), lambda: vol.read(0), vol.status, vol.sync):
        _raises(NotMounted, op)


def check_sync_makes_data_durable(impl: Implementation) -> None:
    """After sync and close, reopening from the medium gives the same label and blocks."""
    vol = impl.make(BLOCK, 8)
    data = blocks(3, seed=10)
    vol.append(b"".join(data[:2]))
    vol.sync()
    vol.append(data[2])
    label = vol.label
    vol.close()
    if impl.reopen is None:
        return
    again = impl.reopen(vol)
    assert again.label == label
    assert [again.read(i) for i in range(3)] == data
    assert again.append(data[0]) == 3
    again.close()


CHECKS: tuple[Callable[[Implementation], None], ...] = (
    check_capabilities_are_consistent,
    check_append_then_read_round_trips,
    check_read_into_fills_the_callers_buffer,
    check_volume_does_not_keep_callers_buffer,
    check_partial_blocks_are_refused,
    check_reads_outside_the_data_are_refused,
    check_full_volume_refuses_and_keeps_data,
    check_byte_offset_reads,
    check_filemarks_match_capabilities,
    check_overwrite_follows_capabilities,
    check_erase_follows_capabilities,
    check_closed_volume_refuses,
    check_sync_makes_data_durable,
)
"""Every conformance check, in a stable order."""


def check_volume(impl: Implementation) -> None:
    """Run every check of :data:`CHECKS` against ``impl``."""
    for check in CHECKS:
        check(impl)
