"""A tape library: storage slots, drives, labelled cartridges, a robot that moves them, scratch.

Cartridges are files ``<directory>/slots/<volser>.tape`` while inside the library and
``<directory>/outside/<volser>.tape`` once exported (on the shelf or in the vault). Which slot
holds which cartridge, and which cartridges are scratch, is kept in ``library.json`` (replaced
atomically on every change), so a library reopened after a restart has the same inventory.
Mounting costs a robot move plus the drive's load time; unmounting a rewind, an unload and a
robot move back to the cartridge's home slot.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipevault.clock import SYSTEM, Clock
from pipevault.media._disk import check_volume_name
from pipevault.media._tape_cartridge import Cartridge, label_cartridge
from pipevault.media._tape_drive import TapeDrive
from pipevault.media._tape_profile import LTO9, TapeProfile
from pipevault.media._volume import SUPERBLOCK_SIZE
from pipevault.media.errors import LibraryError, MediaIOError

SUFFIX = ".tape"


@dataclass(frozen=True)
class InventoryEntry:
    """Where one cartridge is: its home slot, the drive it is mounted in (or ""), whether scratch."""

    volser: str
    slot: int
    drive: str
    scratch: bool


class TapeLibrary:
    """Slots, drives and cartridges with mount, unmount, import, export and a scratch pool.

    Not thread-safe: the storage server owns the library and serialises requests to it.

    Args:
        directory: where cartridge files and the inventory live (created if missing).
        slots: number of storage slots.
        drives: number of drives (named DRIVE0, DRIVE1, ...).
        profile: drive generation; also the capacity of new cartridges unless ``capacity`` is given.
        clock: time for robot moves and drive operations.
        block_size: block size of cartridges labelled here.
        capacity: capacity of cartridges labelled here (bytes).
    """

    def __init__(self, directory: Path, *, slots: int, drives: int, profile: TapeProfile = LTO9,
                 clock: Clock = SYSTEM, block_size: int = SUPERBLOCK_SIZE,
                 capacity: int | None = None) -> None:
        if slots < 1 or drives < 1:
            raise LibraryError("a library needs at least one slot and one drive")
        self.directory = Path(directory)
        self.profile = profile
        self.block_size = block_size
        self.capacity = capacity if capacity is not None else profile.capacity
        self._clock = clock
        self._slots_dir = self.directory / "slots"
        self._outside = self.directory / "outside"
        for d in (self._slots_dir, self._outside):
            d.mkdir(parents=True, exist_ok=True)
        self.drives = [TapeDrive(f"DRIVE{i}", profile=profile, clock=clock) for i in range(drives)]
        self._slots: list[str | None] = [None] * slots
        self._scratch: set[str] = set()
        self._mounted: dict[str, TapeDrive] = {}
        self.robot_moves = 0
        self.robot_seconds = 0.0
        self._load_inventory()

    # -- persistence -----------------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.directory / "library.json"

    def _load_inventory(self) -> None:
        if not self._state_file.exists():
            return
        try:
            state = json.loads(self._state_file.read_text())
            slots, scratch = list(state["slots"]), list(state["scratch"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LibraryError(f"library inventory {self._state_file} is unreadable: {exc}",
                               hint="Move the file aside; the library restarts with empty slots and "
                                    "cartridges can be imported again.") from exc
        for i, volser in enumerate(slots[:len(self._slots)]):
            if isinstance(volser, str) and self._path(volser).exists():
                self._slots[i] = volser
        self._scratch = {v for v in scratch if v in self._slots}

    def _save(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"slots": self._slots, "scratch": sorted(self._scratch)}))
        os.replace(tmp, self._state_file)

    def _path(self, volser: str) -> Path:
        return self._slots_dir / (check_volume_name(volser) + SUFFIX)

    def _slot_of(self, volser: str) -> int:
        try:
            return self._slots.index(volser)
        except ValueError:
            raise LibraryError(f"cartridge {volser} is not in the library", volser=volser) from None

    def _free_slot(self) -> int:
        try:
            return self._slots.index(None)
        except ValueError:
            raise LibraryError(f"all {len(self._slots)} slots of the library are full",
                               hint="Export a cartridge to free a slot.") from None

    def _robot(self) -> None:
        self._clock.sleep(self.profile.robot_move_s)
        self.robot_moves += 1
        self.robot_seconds += self.profile.robot_move_s

    # -- cartridges in and out -------------------------------------------------------------

    def label_new(self, volser: str) -> int:
        """Put a new blank cartridge labelled ``volser`` in a free slot, as scratch; returns the slot.

        Raises:
            LibraryError: no free slot, or a cartridge with this volser is already known here.
        """
        path = self._path(volser)
        if volser in self._slots or path.exists() or (self._outside / path.name).exists():
            raise LibraryError(f"a cartridge {volser} already exists", volser=volser)
        slot = self._free_slot()
        label_cartridge(path, volser, block_size=self.block_size, capacity=self.capacity, clock=self._clock)
        self._slots[slot] = volser
        self._scratch.add(volser)
        self._save()
        return slot

    def import_cartridge(self, volser: str, *, scratch: bool = False) -> int:
        """Bring exported cartridge ``volser`` back from outside into a free slot; returns the slot.

        Its label is read first, so a file whose label names another volume is refused.

        Raises:
            LibraryError: not outside, or no free slot. LabelMismatch: the label differs.
        """
        source = self._outside / (check_volume_name(volser) + SUFFIX)
        if not source.exists():
            raise LibraryError(f"cartridge {volser} is not outside the library", volser=volser)
        Cartridge(source, volser).close()
        slot = self._free_slot()
        shutil.move(source, self._path(volser))
        self._slots[slot] = volser
        if scratch:
            self._scratch.add(volser)
        self._save()
        return slot

    def export_cartridge(self, volser: str) -> Path:
        """Take ``volser`` out of the library (to ``outside/``); returns where its file now is.

        Raises:
            LibraryError: not in the library, or mounted.
        """
        slot = self._slot_of(volser)
        if volser in self._mounted:
            raise LibraryError(f"cartridge {volser} is mounted in {self._mounted[volser].drive_name}; "
                               "unmount it first", volser=volser)
        self._robot()
        target = self._outside / (volser + SUFFIX)
        shutil.move(self._path(volser), target)
        self._slots[slot] = None
        self._scratch.discard(volser)
        self._save()
        return target

    # -- mounting --------------------------------------------------------------------------

    def mount(self, volser: str, drive: str | None = None) -> TapeDrive:
        """Move ``volser`` to a drive (a free one, or the one named) and load it.

        Raises:
            LibraryError: unknown cartridge, already mounted, the drive is busy or unknown,
                or every drive is busy.
        """
        self._slot_of(volser)
        if volser in self._mounted:
            raise LibraryError(f"cartridge {volser} is already mounted in {self._mounted[volser].drive_name}",
                               volser=volser)
        target = self._pick_drive(drive)
        self._robot()
        target.load(self._path(volser), expected_volser=volser)
        self._mounted[volser] = target
        return target

    def _pick_drive(self, name: str | None) -> TapeDrive:
        for d in self.drives:
            if (name is None or d.drive_name == name) and not d.loaded:
                return d
        if name is not None and all(d.drive_name != name for d in self.drives):
            raise LibraryError(f"the library has no drive {name}")
        raise LibraryError(f"drive {name} is busy" if name else f"all {len(self.drives)} drives are busy",
                           hint="Unmount a cartridge first, or wait for a drive.")

    def unmount(self, volser: str) -> None:
        """Rewind and unload ``volser`` and return it to its home slot.

        Raises:
            LibraryError: the cartridge is not mounted.
        """
        drive = self._mounted.pop(volser, None)
        if drive is None:
            raise LibraryError(f"cartridge {volser} is not mounted", volser=volser)
        if drive.loaded:
            drive.unload()
        self._robot()

    def drive_of(self, volser: str) -> TapeDrive | None:
        """The drive ``volser`` is mounted in, or None."""
        return self._mounted.get(volser)

    # -- scratch ---------------------------------------------------------------------------

    def scratch_volumes(self) -> list[str]:
        """Volsers of the scratch cartridges in the library, in order."""
        return sorted(self._scratch)

    def take_scratch(self) -> str:
        """Remove the first scratch cartridge from the scratch pool and return its volser.

        Raises:
            LibraryError: no scratch cartridge is left.
        """
        if not self._scratch:
            raise LibraryError("no scratch cartridge left in the library",
                               hint="Label new cartridges or return expired ones to scratch.")
        volser = min(self._scratch)
        self._scratch.remove(volser)
        self._save()
        return volser

    def return_to_scratch(self, volser: str) -> None:
        """Erase ``volser`` (label kept) and put it back in the scratch pool.

        Raises:
            LibraryError: not in the library, or mounted.
        """
        self._slot_of(volser)
        if volser in self._mounted:
            raise LibraryError(f"cartridge {volser} is mounted; unmount it before scratching it")
        cart = Cartridge(self._path(volser), volser)
        try:
            cart.truncate(0)
        except OSError as exc:
            raise MediaIOError(f"cannot erase cartridge {volser}: {exc.strerror}") from exc
        finally:
            cart.close()
        self._scratch.add(volser)
        self._save()

    def inventory(self) -> list[InventoryEntry]:
        """Every cartridge in the library, by slot."""
        return [InventoryEntry(volser=v, slot=i,
                               drive=self._mounted[v].drive_name if v in self._mounted else "",
                               scratch=v in self._scratch)
                for i, v in enumerate(self._slots) if v is not None]

    def outside(self) -> list[str]:
        """Volsers of exported cartridges."""
        return sorted(p.name.removesuffix(SUFFIX) for p in self._outside.glob("*" + SUFFIX))

    def strays(self) -> list[str]:
        """Volsers of cartridge files in the slots that the inventory does not list: left by
        a process killed between writing a cartridge and saving the inventory (a label or an
        import cut short). They are kept (an imported one holds data) and their volsers stay
        taken."""
        listed = {v for v in self._slots if v is not None}
        return sorted(v for p in self._slots_dir.glob("*" + SUFFIX)
                      if (v := p.name.removesuffix(SUFFIX)) not in listed)
