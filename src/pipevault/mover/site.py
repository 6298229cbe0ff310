"""The storage site a job runs against: catalog, pools, classes and keys, with embedded defaults.

With no configuration at all everything lives under ``PIPEVAULT_HOME``: the SQLite catalog
(``catalog.db``), a disk pool ``disk`` whose volumes are files under ``pools/disk`` and the
management class ``STANDARD``. Both defaults are created on first use. A pool of media type
``tape`` is a simulated tape library under ``libraries/<pool>`` (see :mod:`pipevault.mover.tapes`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipevault.catalog import classes as class_rows
from pipevault.catalog import pools as pool_rows
from pipevault.catalog import volumes as volume_rows
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogConflict, CatalogNotFound
from pipevault.clock import SYSTEM, Clock
from pipevault.config import Settings
from pipevault.media import DiskPoolDirectory, Volume
from pipevault.mover import keys
from pipevault.mover.errors import KeyMissing
from pipevault.mover.tapes import TAPE_MEDIA_TYPE, TapeSettings, TapeShelf, try_lock

DEFAULT_POOL = "disk"
DEFAULT_CLASS = "STANDARD"


def settings_passphrase(settings: Settings) -> bytes | None:
    """The node key's passphrase the settings give (``passphrase``, else ``passphrase_file``)."""
    if settings["passphrase"]:
        return str(settings["passphrase"]).encode()
    if settings["passphrase_file"]:
        return Path(settings["passphrase_file"]).read_bytes().rstrip(b"\r\n")
    return None


@dataclass
class Site:
    """An open site. Close it (or use it as a context manager) to release the catalog."""

    home: Path
    node: str
    catalog: Catalog
    volume_size: int
    clock: Clock
    passphrase: bytes | None
    tape: TapeSettings = field(default_factory=TapeSettings)
    _shelf: TapeShelf | None = field(default=None, repr=False)
    settings: Settings | None = field(default=None, repr=False)  # what it was opened from

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock = SYSTEM, passphrase: bytes | None = None,
             node: str | None = None, tape: TapeSettings | None = None) -> Site:
        """Open the catalog the settings name and make sure the default pool and class exist.

        ``passphrase`` unlocks the node's key; when None it is read from the file named by
        the ``passphrase_file`` option, if any. ``tape`` says how the libraries of tape pools
        are built on first use.
        """
        home = settings.home
        home.mkdir(parents=True, exist_ok=True)
        catalog = Catalog.from_settings(settings, clock=clock)
        if passphrase is None:
            passphrase = settings_passphrase(settings)
        site = cls(home, node or settings["node"], catalog, settings["volume_size"], clock, passphrase,
                   tape or TapeSettings(), settings=settings)
        site._ensure_defaults()
        return site

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unmount any tape still mounted and release the catalog."""
        if self._shelf is not None:
            self._shelf.close()
        self.catalog.close()

    @property
    def tapes(self) -> TapeShelf:
        """The libraries of the site's tape pools."""
        if self._shelf is None:
            self._shelf = TapeShelf(self.home / "libraries", self.catalog, self.tape, self.clock)
        return self._shelf

    def media_type(self, pool: str) -> str:
        """The media type of pool ``pool``. Raises CatalogNotFound."""
        with self.catalog.read() as conn:
            return pool_rows.get_pool(conn, pool).media_type

    def _ensure_defaults(self) -> None:
        now = self.clock.now()
        with self.catalog.write() as conn:
            try:
                pool_rows.get_pool(conn, DEFAULT_POOL)
            except CatalogNotFound:
                pool_rows.define_pool(conn, DEFAULT_POOL, "disk", now=now,
                                      description="embedded disk pool under PIPEVAULT_HOME")
            try:
                class_rows.get_class(conn, DEFAULT_CLASS)
            except CatalogNotFound:
                class_rows.define_class(conn, class_rows.DEFAULT_CLASS, now=now)

    def management_class(self, name: str | None) -> class_rows.ManagementClass:
        """The class ``name`` (the default class when None). Raises CatalogNotFound."""
        with self.catalog.read() as conn:
            return class_rows.get_class(conn, name or DEFAULT_CLASS)

    def pool_directory(self, pool: str) -> DiskPoolDirectory:
        """The directory of disk pool ``pool``."""
        return DiskPoolDirectory(self.home / "pools" / pool, pool=pool, max_file_size=self.volume_size,
                                 clock=self.clock)

    def key(self, *, create: bool) -> bytes:
        """The node's master key (created on first use when ``create``). Raises KeyMissing."""
        if self.passphrase is None:
            raise KeyMissing(f"node {self.node} needs its passphrase for encrypted data")
        return keys.node_key(self.home, self.node, self.passphrase, create=create)

    def open_volume(self, name: str) -> Volume:
        """Open catalogued volume ``name`` for reading (a tape is mounted in a free drive;
        closing the volume unmounts it)."""
        with self.catalog.read() as conn:
            vol = volume_rows.get_volume(conn, name)
        if vol.media_type == TAPE_MEDIA_TYPE:
            return self.tapes.mount(vol.pool, name)
        return self.pool_directory(vol.pool).open(name)

    @contextmanager
    def volume_lock(self, name: str) -> Iterator[bool]:
        """Hold the writer lock of catalogued volume ``name`` while no writer has it; yields
        whether it was taken (False: a job is writing to the volume now)."""
        with self.catalog.read() as conn:
            vol = volume_rows.get_volume(conn, name)
        if vol.media_type == TAPE_MEDIA_TYPE:
            path = self.tapes.lock_path(vol.pool, name)
        else:
            path = self.pool_directory(vol.pool).directory / f"{name}.lock"
        lock = try_lock(path)
        try:
            yield lock is not None
        finally:
            if lock is not None:
                os.close(lock)

    @contextmanager
    def writable_volume(self, pool: str, exclude: set[str]) -> Iterator[Volume]:
        """A volume of ``pool`` to append to, locked against other writers while in use.

        Takes the first filling (then scratch) volume not in ``exclude`` that no other job
        holds; labels a new one when there is none. The lock is an exclusive ``flock`` on a
        file beside the volume, so two backups never append to one volume at once. A scratch
        volume still holding old (dead) data is erased first. Tape pools hand out mounted
        cartridges of their library (:meth:`TapeShelf.writable`).
        """
        if self.media_type(pool) == TAPE_MEDIA_TYPE:
            with self.tapes.writable(pool, exclude) as tape:
                yield tape
            return
        directory = self.pool_directory(pool)
        with self.catalog.read() as conn:
            candidates = [(v.name, v.state) for state in ("filling", "scratch")
                          for v in volume_rows.list_volumes(conn, pool=pool) if v.state == state]
        for name, state in candidates:
            if name in exclude:
                continue
            lock = try_lock(directory.directory / f"{name}.lock")
            if lock is None:
                continue
            try:
                volume = directory.open(name) if directory.path_of(name).exists() else directory.create(name)
                if state == "scratch" and volume.status().data_blocks:
                    volume.erase()
                yield volume
                return
            finally:
                os.close(lock)
        name, lock = self._new_volume(directory, pool)
        try:
            volume = directory.create(name)
            with self.catalog.write() as conn:
                volume_rows.add_volume(conn, name, pool, volume.capabilities.capacity, now=self.clock.now(),
                                       state="filling")
            yield volume
        finally:
            os.close(lock)

    def label_volume(self, pool: str, name: str | None = None) -> str:
        """Label a new empty volume of ``pool`` and record it as scratch; returns its name.

        A disk pool gets a new volume file (``name`` or the pool's next free name); a tape pool
        gets a new cartridge in a free slot of its library (named by the library).

        Raises:
            CatalogConflict: a volume of that name exists.
            MediaError: the pool's directory or library cannot take another volume.
        """
        if self.media_type(pool) == TAPE_MEDIA_TYPE:
            return self.tapes.label(pool)
        directory = self.pool_directory(pool)
        if name is None:
            name, lock = self._new_volume(directory, pool)
            os.close(lock)
        volume = directory.create(name)
        try:
            with self.catalog.write() as conn:
                volume_rows.add_volume(conn, name, pool, volume.capabilities.capacity, now=self.clock.now(),
                                       state="scratch")
        except BaseException:
            volume.close()
            directory.path_of(name).unlink(missing_ok=True)
            raise
        volume.close()
        return name

    def _new_volume(self, directory: DiskPoolDirectory, pool: str) -> tuple[str, int]:
        prefix = "".join(c for c in pool.upper() if c.isalnum())[:8] or "VOL"
        with self.catalog.read() as conn:
            taken = {v.name for v in volume_rows.list_volumes(conn)}
        n = len(taken) + 1
        while True:
            name = f"{prefix}{n:06d}"
            if name not in taken and not directory.path_of(name).exists():
                lock = try_lock(directory.directory / f"{name}.lock")
                if lock is not None:
                    return name, lock
            n += 1

    def mark_volume(self, name: str, state: str) -> None:
        """Set a volume's state in the catalog (``full`` when it ran out of space)."""
        with self.catalog.write() as conn:
            try:
                volume_rows.set_state(conn, name, state)
            except CatalogConflict:
                pass

