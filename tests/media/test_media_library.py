"""Tape library: labelling, mount and unmount with their costs, busy drives, import/export,
the scratch pool, and an inventory that survives a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipevault.clock import ManualClock
from pipevault.media import TapeLibrary
from pipevault.media.errors import LabelMismatch, LibraryError
from pipevault.media.testing import TEST_TAPE, blocks

BS = 512


def _library(tmp_path: Path, slots: int = 4, drives: int = 2) -> tuple[TapeLibrary, ManualClock]:
    clock = ManualClock()
    lib = TapeLibrary(tmp_path / "lib", slots=slots, drives=drives, profile=TEST_TAPE, clock=clock,
                      block_size=BS, capacity=200 * BS)
    return lib, clock


def test_new_cartridges_are_labelled_scratch_in_free_slots(tmp_path: Path) -> None:
    lib, _ = _library(tmp_path, slots=2)
    assert [lib.label_new("A00001"), lib.label_new("A00002")] == [0, 1]
    with pytest.raises(LibraryError, match="slots of the library are full"):
        lib.label_new("A00003")
    with pytest.raises(LibraryError, match="already exists"):
        lib.label_new("A00001")
    assert lib.scratch_volumes() == ["A00001", "A00002"]
    assert [(e.volser, e.slot, e.drive, e.scratch) for e in lib.inventory()] == [
        ("A00001", 0, "", True), ("A00002", 1, "", True)]


def test_mount_and_unmount_cost_robot_load_rewind_and_unload(tmp_path: Path) -> None:
    lib, clock = _library(tmp_path)
    lib.label_new("A00001")
    start = clock.monotonic()
    drive = lib.mount("A00001")
    assert clock.monotonic() - start == pytest.approx(TEST_TAPE.robot_move_s + TEST_TAPE.load_s)
    assert drive.label.name == "A00001" and lib.drive_of("A00001") is drive
    assert lib.inventory()[0].drive == drive.drive_name
    drive.append(b"".join(blocks(100)))
    drive.sync()
    start = clock.monotonic()
    lib.unmount("A00001")
    expected = TEST_TAPE.rewind_seconds(100 * BS, 200 * BS) + TEST_TAPE.unload_s + TEST_TAPE.robot_move_s
    assert clock.monotonic() - start == pytest.approx(expected)
    assert not drive.loaded and lib.drive_of("A00001") is None
    assert lib.robot_moves == 2
    with pytest.raises(LibraryError, match="not mounted"):
        lib.unmount("A00001")
    again = lib.mount("A00001")
    assert again.read(99) == blocks(100)[99]


def test_drives_are_shared_and_busy_drives_refused(tmp_path: Path) -> None:
    lib, _ = _library(tmp_path, drives=2)
    for v in ("A00001", "A00002", "A00003"):
        lib.label_new(v)
    d0 = lib.mount("A00001")
    with pytest.raises(LibraryError, match="already mounted"):
        lib.mount("A00001")
    with pytest.raises(LibraryError, match="busy"):
        lib.mount("A00002", drive=d0.drive_name)
    with pytest.raises(LibraryError, match="no drive"):
        lib.mount("A00002", drive="DRIVE9")
    d1 = lib.mount("A00002")
    assert d1 is not d0
    with pytest.raises(LibraryError, match="all 2 drives are busy"):
        lib.mount("A00003")
    with pytest.raises(LibraryError, match="not in the library"):
        lib.mount("ZZZZZZ")


def test_export_and_import_move_cartridges_out_and_back(tmp_path: Path) -> None:
    lib, _ = _library(tmp_path)
    lib.label_new("A00001")
    lib.label_new("A00002")
    drive = lib.mount("A00001")
    data = blocks(3)
    drive.append(b"".join(data))
    with pytest.raises(LibraryError, match="unmount it first"):
        lib.export_cartridge("A00001")
    lib.unmount("A00001")
    lib.export_cartridge("A00001")
    assert lib.outside() == ["A00001"] and [e.volser for e in lib.inventory()] == ["A00002"]
    with pytest.raises(LibraryError):
        lib.mount("A00001")
    assert lib.import_cartridge("A00001") == 0
    assert lib.mount("A00001").read(2) == data[2]
    assert "A00001" not in lib.scratch_volumes()


def test_import_refuses_a_cartridge_whose_label_differs(tmp_path: Path) -> None:
    lib, _ = _library(tmp_path)
    lib.label_new("A00001")
    lib.export_cartridge("A00001")
    outside = tmp_path / "lib" / "outside"
    os.replace(outside / "A00001.tape", outside / "B00001.tape")
    with pytest.raises(LabelMismatch):
        lib.import_cartridge("B00001")
    with pytest.raises(LibraryError, match="not outside"):
        lib.import_cartridge("C00001")


def test_scratch_pool_take_and_return_erases(tmp_path: Path) -> None:
    lib, _ = _library(tmp_path)
    lib.label_new("A00002")
    lib.label_new("A00001")
    volser = lib.take_scratch()
    assert volser == "A00001" and lib.scratch_volumes() == ["A00002"]
    drive = lib.mount(volser)
    drive.append(b"".join(blocks(5)))
    with pytest.raises(LibraryError, match="mounted"):
        lib.return_to_scratch(volser)
    lib.unmount(volser)
    lib.return_to_scratch(volser)
    assert lib.scratch_volumes() == ["A00001", "A00002"]
    assert lib.mount(volser).status().end_of_data == 0
    lib.take_scratch()
    lib.take_scratch()
    with pytest.raises(LibraryError, match="no scratch"):
        lib.take_scratch()


def test_inventory_survives_reopening_the_library(tmp_path: Path) -> None:
    lib, _ = _library(tmp_path)
    for v in ("A00001", "A00002", "A00003"):
        lib.label_new(v)
    lib.take_scratch()
    lib.export_cartridge("A00002")
    again, _ = _library(tmp_path)
    assert [(e.volser, e.slot, e.scratch) for e in again.inventory()] == [
        ("A00001", 0, False), ("A00003", 2, True)]
    assert again.outside() == ["A00002"]


def test_a_library_needs_slots_and_drives(tmp_path: Path) -> None:
    with pytest.raises(LibraryError):
        TapeLibrary(tmp_path, slots=0, drives=1)


def test_a_damaged_inventory_file_is_a_clear_error(tmp_path: Path) -> None:
    lib, _ = _library(tmp_path)
    lib.label_new("A00001")
    (tmp_path / "lib" / "library.json").write_text("{not json")
    with pytest.raises(LibraryError, match="inventory .* is unreadable"):
        _library(tmp_path)
