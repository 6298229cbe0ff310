"""Disk volumes: labels in the header, checksums per block, torn-tail recovery, the pool directory."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from pipevault.clock import ManualClock
from pipevault.media import DiskPoolDirectory, DiskVolume
from pipevault.media._blockfile import HEADER_SIZE, slot_size
from pipevault.media.errors import LabelMismatch, LibraryError, MediaCorrupt
from pipevault.media.testing import blocks


def _pool(tmp_path: Path, blocks_per_volume: int = 8) -> DiskPoolDirectory:
    return DiskPoolDirectory(tmp_path / "pool", pool="BACKUPPOOL", block_size=512, clock=ManualClock(1000.0),
                             max_file_size=HEADER_SIZE + blocks_per_volume * slot_size(512))


def test_file_never_exceeds_its_maximum_size(tmp_path: Path) -> None:
    pool = _pool(tmp_path, 5)
    vol = pool.create("V1")
    vol.append(b"".join(blocks(5)))
    vol.close()
    assert vol.path.stat().st_size <= pool.max_file_size
    assert vol.capabilities.capacity == 5 * 512


def test_label_identifies_the_volume(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    pool.create("V1").close()
    pool.create("V2").close()
    labels = list(pool.labels())
    assert [(lb.name, lb.pool, lb.media_type, lb.created) for lb in labels] == [
        ("V1", "BACKUPPOOL", "disk", 1000.0), ("V2", "BACKUPPOOL", "disk", 1000.0)]
    os.replace(pool.path_of("V2"), pool.path_of("V3"))
    with pytest.raises(LabelMismatch, match="labelled 'V2'"):
        pool.open("V3")


def test_duplicate_missing_and_unsafe_names(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    pool.create("V1").close()
    with pytest.raises(LibraryError, match="already exists"):
        pool.create("V1")
    with pytest.raises(LibraryError, match="no volume"):
        pool.open("NOPE")
    for bad in ("../x", "", "a/b", ".hidden"):
        with pytest.raises(LibraryError, match="not a valid volume name"):
            pool.create(bad)


def test_flipped_byte_on_disk_is_detected(tmp_path: Path) -> None:
    vol = _pool(tmp_path).create("V1")
    data = blocks(3)
    vol.append(b"".join(data))
    vol.close()
    with open(vol.path, "r+b") as fh:
        fh.seek(HEADER_SIZE + slot_size(512) + 100)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 1]))
    again = DiskVolume(vol.path)
    assert again.read(0) == data[0] and again.read(2) == data[2]
    with pytest.raises(MediaCorrupt, match="block 1 of V1 fails its checksum"):
        again.read(1)
    with pytest.raises(MediaCorrupt, match="block 1 of V1 fails its checksum"):
        again.read_into(1, memoryview(bytearray(512)))
    with pytest.raises(MediaCorrupt):
        again.read_at(600, 10)


def test_blocks_swapped_on_disk_are_detected(tmp_path: Path) -> None:
    vol = _pool(tmp_path).create("V1")
    vol.append(b"".join(blocks(2)))
    vol.close()
    raw = vol.path.read_bytes()
    s = slot_size(512)
    first, second = raw[HEADER_SIZE:HEADER_SIZE + s], raw[HEADER_SIZE + s:HEADER_SIZE + 2 * s]
    vol.path.write_bytes(raw[:HEADER_SIZE] + second + first)
    with pytest.raises(MediaCorrupt):
        DiskVolume(vol.path).read(0)
    with pytest.raises(MediaCorrupt):
        DiskVolume(vol.path).read_into(0, memoryview(bytearray(512)))


def test_blocks_with_the_older_crc32_trailer_still_read(tmp_path: Path) -> None:
    """Volumes written before the XXH3-64 trailer (b"PVBK": CRC-32, then four zero bytes)."""
    vol = _pool(tmp_path).create("V1")
    data = blocks(3)
    vol.append(b"".join(data))
    vol.close()
    s = slot_size(512)
    with open(vol.path, "r+b") as fh:
        for i, block in enumerate(data):
            fh.seek(HEADER_SIZE + i * s + 512)
            fh.write(struct.pack("<4sIII", b"PVBK", i, zlib.crc32(block), 0))
        fh.seek(HEADER_SIZE + s + 7)
        fh.write(bytes([data[1][7] ^ 0x10]))  # and damage block 1
    again = DiskVolume(vol.path)
    assert again.read(0) == data[0]
    out = memoryview(bytearray(512))
    again.read_into(2, out)
    assert out == data[2]
    with pytest.raises(MediaCorrupt, match="block 1 of V1 fails its checksum"):
        again.read(1)
    again.append(data[0])  # new blocks get the new trailer, the old ones keep theirs
    assert again.read(3) == data[0] and again.read(2) == data[2]
    assert vol.path.read_bytes()[HEADER_SIZE + 3 * s + 512:][:4] == b"PVBX"


def test_torn_final_slot_is_cut_on_open(tmp_path: Path) -> None:
    vol = _pool(tmp_path).create("V1")
    data = blocks(3)
    vol.append(b"".join(data[:2]))
    vol.close()
    with open(vol.path, "ab") as fh:
        fh.write(data[2][:300])
    again = DiskVolume(vol.path)
    assert again.recovered_tail_bytes == 300
    assert again.status().end_of_data == 2
    assert again.append(data[2]) == 2
    assert [again.read(i) for i in range(3)] == data


@pytest.mark.parametrize("content", [b"", b"not a volume", b"PVVOL001" + bytes(4088)])
def test_file_without_a_valid_header_is_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pvv"
    path.write_bytes(content)
    with pytest.raises(MediaCorrupt):
        DiskVolume(path)


def test_pool_refuses_files_too_small_for_a_block(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="cannot hold one"):
        DiskPoolDirectory(tmp_path, pool="P", max_file_size=HEADER_SIZE + 10, block_size=512)
