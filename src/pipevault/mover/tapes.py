"""Tape pools of a site: one simulated tape library per pool under ``<home>/libraries/<pool>/``.

The catalog is the truth about cartridges (pool, state, use); the library holds the cartridge
files, the slots and the drives. A pool's library is created on first use with
``TapeSettings.cartridges`` labelled cartridges, each recorded in the catalog as a scratch
volume of the pool; when every cartridge is in use and a slot is free, a new one is labelled
(an operator putting blank tapes in). A cartridge handed out for writing is locked by an
exclusive ``flock`` on ``locks/<volser>.lock``, so two writers never append to one tape; a
scratch cartridge is erased when it is taken, because scratch means its old data is dead.

Mount state is per process (the library's drives are objects of this process); one process
uses a library at a time in the simulation, as the storage agent owns a real one.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipevault.catalog import volumes as volume_rows
from pipevault.catalog.database import Catalog
from pipevault.clock import Clock
from pipevault.media import LTO9, BlockData, TapeDrive, TapeLibrary, TapeProfile, VolumeWrapper
from pipevault.media.errors import LibraryError, VolumeFull

TAPE_MEDIA_TYPE = "tape"
FAST_LTO9 = LTO9.scaled(0.001)
"""LTO-9 with time compressed a thousandfold: a mount costs tens of milliseconds of real time."""


@dataclass(frozen=True)
class TapeSettings:
    """How a site builds the library of a tape pool the first time it is used.

    Attributes:
        cartridges: cartridges labelled when the library is created.
        slots: storage slots (new cartridges are labelled into free ones when needed).
        drives: drives in the library.
        capacity: bytes per cartridge.
        profile: drive timing (:data:`FAST_LTO9` by default).
    """

    cartridges: int = 8
    slots: int = 32
    drives: int = 2
    capacity: int = 1 << 30
    profile: TapeProfile = FAST_LTO9


def try_lock(path: Path) -> int | None:
    """An exclusive non-blocking ``flock`` on ``path`` (created): the descriptor, or None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class MountedTape(VolumeWrapper):
    """A cartridge loaded in a drive of its library; :meth:`close` unmounts it to its slot.

    At end of medium (an append raising VolumeFull) the cartridge is synced and unmounted at
    once, so its drive is free for the next cartridge while the writer still holds this one;
    ``sync`` after that returns at once (everything was made durable by the unmount).
    """

    def __init__(self, drive: TapeDrive, shelf: TapeShelf, pool: str, volser: str) -> None:
        super().__init__(drive)
        self.drive = drive
        self._shelf, self._pool, self._volser = shelf, pool, volser

    @property
    def name(self) -> str:
        return self._volser

    def append(self, data: BlockData) -> int:
        try:
            return self.drive.append(data)
        except VolumeFull:
            self.close()
            raise

    def sync(self) -> None:
        if not self.drive.closed:
            self.drive.sync()

    def close(self) -> None:
        """Sync, rewind, unload and put the cartridge back in its slot; idempotent."""
        if not self.drive.closed:
            self._shelf.unmount(self._pool, self._volser)


class TapeShelf:
    """The libraries of a site's tape pools, opened on first use. Thread-safe.

    Args:
        directory: ``<home>/libraries``.
        catalog: the site's catalog (cartridges are recorded as volumes of their pool).
        settings: how new libraries are built.
        clock: the time drives and the robot spend.
    """

    def __init__(self, directory: Path, catalog: Catalog, settings: TapeSettings, clock: Clock) -> None:
        self.directory = directory
        self.catalog = catalog
        self.settings = settings
        self.clock = clock
        self._libraries: dict[str, TapeLibrary] = {}
        self._lock = threading.RLock()

    def library(self, pool: str) -> TapeLibrary:
        """The library of tape pool ``pool``, created with its cartridges on first use.

        Raises:
            LibraryError: the library's inventory is unreadable.
        """
        with self._lock:
            lib = self._libraries.get(pool)
            if lib is not None:
                return lib
            s = self.settings
            where = self.directory / pool
            (where / "locks").mkdir(parents=True, exist_ok=True)
            guard = os.open(where / "locks" / "library.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(guard, fcntl.LOCK_EX)  # one process creates the cartridges
                lib = TapeLibrary(where, slots=max(s.slots, s.cartridges), drives=s.drives,
                                  profile=s.profile, clock=self.clock, capacity=s.capacity)
                self._libraries[pool] = lib
                for _ in range(s.cartridges - len(lib.inventory())):
                    self._label(pool, lib)
            finally:
                os.close(guard)
            return lib

    def label(self, pool: str) -> str:
        """Label a new cartridge of ``pool`` in a free slot; returns its volser."""
        return self._label(pool, self.library(pool))

    def _label(self, pool: str, lib: TapeLibrary) -> str:
        prefix = "".join(c for c in pool.upper() if c.isalnum())[:6] or "TAPE"
        with self.catalog.read() as conn:
            taken = {v.name for v in volume_rows.list_volumes(conn)}
        for e in lib.inventory():
            if e.scratch and e.volser not in taken:
                # Labelled by a job killed before it reached the catalog: blank, so it is
                # this label (nothing is ever written to a cartridge the catalog lacks).
                self._catalogue(pool, lib, e.volser)
                return e.volser
        known = {e.volser for e in lib.inventory()} | set(lib.outside()) | set(lib.strays())
        n = len(known) + 1
        while f"{prefix}{n:04d}L9" in taken | known:
            n += 1
        volser = f"{prefix}{n:04d}L9"
        lib.label_new(volser)
        self._catalogue(pool, lib, volser)
        return volser

    def _catalogue(self, pool: str, lib: TapeLibrary, volser: str) -> None:
        with self.catalog.write() as conn:
            volume_rows.add_volume(conn, volser, pool, lib.capacity - lib.capacity % lib.block_size,
                                   now=self.clock.now(), media_type=TAPE_MEDIA_TYPE, state="scratch")

    def mount(self, pool: str, volser: str) -> MountedTape:
        """Load cartridge ``volser`` of ``pool`` into a free drive.

        Raises:
            LibraryError: the cartridge is not in the library, is mounted, or every drive is busy.
        """
        with self._lock:
            drive = self.library(pool).mount(volser)
        return MountedTape(drive, self, pool, volser)

    def unmount(self, pool: str, volser: str) -> None:
        """Rewind, unload and return ``volser`` to its slot (nothing if it is not mounted)."""
        with self._lock:
            lib = self.library(pool)
            if lib.drive_of(volser) is not None:
                lib.unmount(volser)

    def lock_path(self, pool: str, volser: str) -> Path:
        """The writer lock file of cartridge ``volser``."""
        return self.directory / pool / "locks" / f"{volser}.lock"

    @contextmanager
    def writable(self, pool: str, exclude: set[str]) -> Iterator[MountedTape]:
        """A mounted cartridge of ``pool`` to append to, locked against other writers.

        The first filling (then scratch) cartridge not in ``exclude`` that no other writer
        holds; a scratch one is erased first. When none is left, a new cartridge is labelled
        into a free slot.

        Raises:
            LibraryError: no cartridge is free and every slot is taken, or no drive is free.
        """
        lib = self.library(pool)
        with self.catalog.read() as conn:
            candidates = [(v.name, v.state) for state in ("filling", "scratch")
                          for v in volume_rows.list_volumes(conn, pool=pool, state=state)]
        for volser, state in candidates:
            if volser in exclude:
                continue
            lock = try_lock(self.lock_path(pool, volser))
            if lock is None:
                continue
            try:
                with self._prepared(pool, volser, state) as tape:
                    yield tape
                return
            finally:
                os.close(lock)
        with self._lock:
            try:
                volser = self._label(pool, lib)
            except LibraryError as exc:
                raise LibraryError(f"tape pool {pool} has no cartridge left to write on: {exc.message}",
                                   hint="Reclaim or expire cartridges of the pool, migrate its data on, "
                                        "or export full cartridges to free slots.") from exc
            lock = try_lock(self.lock_path(pool, volser))
        if lock is None:
            raise LibraryError(f"new cartridge {volser} of tape pool {pool} was taken by another writer",
                               hint="Run the job again.")
        try:
            with self._prepared(pool, volser, "scratch") as tape:
                yield tape
        finally:
            os.close(lock)

    @contextmanager
    def _prepared(self, pool: str, volser: str, state: str) -> Iterator[MountedTape]:
        """``volser`` mounted (and erased if scratch) for the caller's use; unmounted after."""
        tape = self.mount(pool, volser)
        try:
            if state == "scratch" and tape.status().end_of_data:
                tape.erase()
            yield tape
        finally:
            tape.close()

    def close(self) -> None:
        """Unmount every cartridge still mounted."""
        with self._lock:
            for lib in self._libraries.values():
                for entry in lib.inventory():
                    if entry.drive:
                        lib.unmount(entry.volser)
