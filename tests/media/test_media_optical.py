"""Write-once optical families: descriptors, append-only updates, spanning, no reclaiming."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.media import Descriptor, OpticalFamily
from pipevault.media.errors import BadBlock, EndOfData, LibraryError, MediaCorrupt, WriteOnceViolation

SECTOR = 512


def _family(path: Path, capacity_sectors: int = 8) -> OpticalFamily:
    return OpticalFamily(path, "BLOBS", volume_capacity=capacity_sectors * SECTOR, block_size=SECTOR,
                         clock=ManualClock())


def test_put_returns_descriptors_that_get_the_data_back(tmp_path: Path) -> None:
    fam = _family(tmp_path)
    a = fam.put(b"hello")
    b = fam.put(b"x" * 700)
    assert a == Descriptor("BLOBS", 1, 0, 5)
    assert b == Descriptor("BLOBS", 1, SECTOR, 700)
    assert fam.get(a) == b"hello" and fam.get(b) == b"x" * 700
    assert Descriptor.parse(str(b)) == b and str(b) == "BLOBS:1:512:700"


def test_an_update_goes_to_a_new_place_and_the_old_stays_readable(tmp_path: Path) -> None:
    fam = _family(tmp_path)
    old = fam.put(b"version 1")
    new = fam.update(old, b"version 2")
    assert new != old and new.offset > old.offset
    assert fam.get(new) == b"version 2"
    assert fam.get(old) == b"version 1"
    vol = fam.volumes()[0]
    assert vol.used_bytes == 2 * SECTOR and vol.live_bytes == len(b"version 2")


def test_the_volume_itself_refuses_overwrite_and_erase(tmp_path: Path) -> None:
    fam = _family(tmp_path)
    fam.put(b"a" * SECTOR * 2)
    vol = fam.volume(1)
    with pytest.raises(WriteOnceViolation, match="already written; the next free block is 2"):
        vol.write(0, bytes(SECTOR))
    with pytest.raises(WriteOnceViolation):
        vol.erase()
    assert fam.get(Descriptor("BLOBS", 1, 0, 2 * SECTOR)) == b"a" * SECTOR * 2


def test_a_full_volume_continues_on_the_next(tmp_path: Path) -> None:
    fam = _family(tmp_path, capacity_sectors=4)
    first = fam.put(b"1" * (3 * SECTOR))
    spanning = fam.put(b"2" * (3 * SECTOR + 10))
    after = fam.put(b"3")
    assert first.volume == 1 and spanning == Descriptor("BLOBS", 1, 3 * SECTOR, 3 * SECTOR + 10)
    assert after.volume == 2 and after.offset == 3 * SECTOR
    assert fam.get(spanning) == b"2" * (3 * SECTOR + 10)
    vols = fam.volumes()
    assert [(v.sequence, v.used_bytes, v.live_bytes) for v in vols] == [
        (1, 4 * SECTOR, 4 * SECTOR), (2, 4 * SECTOR, 2 * SECTOR + 10 + 1)]


def test_only_whole_dead_full_volumes_expire(tmp_path: Path) -> None:
    fam = _family(tmp_path, capacity_sectors=2)
    a = fam.put(b"a" * SECTOR)
    b = fam.put(b"b" * SECTOR)
    c = fam.put(b"c")
    fam.release(a)
    with pytest.raises(WriteOnceViolation, match="still holds 512 live bytes"):
        fam.expire_volume(1)
    fam.update(b, b"b2")
    fam.expire_volume(1)
    with pytest.raises(EndOfData, match="was expired"):
        fam.get(a)
    d = fam.put(b"d")
    assert d.volume == 3
    fam.release(d)
    with pytest.raises(WriteOnceViolation, match="still being filled"):
        fam.expire_volume(3)
    fam.release(c)
    fam.release(Descriptor("BLOBS", 2, SECTOR, 2))
    fam.expire_volume(2)
    assert [v.expired for v in fam.volumes()] == [True, True, False]


def test_state_survives_reopening_the_family(tmp_path: Path) -> None:
    fam = _family(tmp_path, capacity_sectors=2)
    descs = [fam.put(bytes([i]) * 600) for i in range(3)]
    fam.release(descs[0])
    fam.close()
    again = _family(tmp_path, capacity_sectors=2)
    assert [again.get(d) for d in descs[1:]] == [bytes([i]) * 600 for i in (1, 2)]
    assert [v.live_bytes for v in again.volumes()] == [0, 600, 600]
    assert again.put(b"z").volume == 4


def test_bad_input_gets_specific_errors(tmp_path: Path) -> None:
    fam = _family(tmp_path)
    with pytest.raises(BadBlock):
        fam.put(b"")
    with pytest.raises(BadBlock, match="not a descriptor"):
        Descriptor.parse("BLOBS:1:x:3")
    with pytest.raises(BadBlock, match="belongs to family"):
        fam.get(Descriptor("OTHER", 1, 0, 1))
    fam.put(b"q")
    with pytest.raises(MediaCorrupt, match="points past"):
        fam.get(Descriptor("BLOBS", 1, 4 * SECTOR, 1))
    with pytest.raises(EndOfData, match="does not exist"):
        fam.get(Descriptor("BLOBS", 7, 0, 1))
    with pytest.raises(LibraryError):
        OpticalFamily(tmp_path, "../x", volume_capacity=4096)


def test_damage_on_the_platter_is_detected(tmp_path: Path) -> None:
    fam = _family(tmp_path)
    d = fam.put(os.urandom(3 * SECTOR))
    fam.close()
    path = next(tmp_path.glob("BLOBS-0001.pvo"))
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(MediaCorrupt):
        _family(tmp_path).get(d)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.booleans()), min_size=1, max_size=25),
       st.integers(0, 2**32))
def test_random_puts_and_updates_match_a_model(tmp_path_factory: pytest.TempPathFactory,
                                              ops: list[tuple[int, bool]], seed: int) -> None:
    fam = _family(tmp_path_factory.mktemp("fam"), capacity_sectors=5)
    rng = random.Random(seed)
    model: dict[Descriptor, bytes] = {}
    live: list[Descriptor] = []
    for size, update in ops:
        data = rng.randbytes(size)
        if update and live:
            old = live.pop(rng.randrange(len(live)))
            desc = fam.update(old, data)
        else:
            desc = fam.put(data)
        assert desc not in model
        model[desc] = data
        live.append(desc)
    for desc, data in model.items():
        assert fam.get(desc) == data
    assert sum(v.live_bytes for v in fam.volumes()) == sum(d.length for d in live)
    fam.close()


def test_a_damaged_ledger_is_a_clear_error(tmp_path: Path) -> None:
    fam = _family(tmp_path)
    fam.put(b"x")
    fam.close()
    (tmp_path / "BLOBS.ledger.json").write_text('{"live": []}')
    with pytest.raises(MediaCorrupt, match="ledger .* is unreadable"):
        _family(tmp_path)
