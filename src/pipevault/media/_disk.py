"""Disk volumes: files of a maximum size in a pool directory.

A disk volume is random access and rewritable. ``sync`` is the durability point: it returns
after ``fsync`` of the volume file. Each volume's header carries its label, so a file moved to
another directory still says which volume it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipevault.clock import SYSTEM, Clock
from pipevault.media._blockfile import (
    BlockFileVolume,
    capacity_blocks_for_file,
    read_label,
    write_header,
)
from pipevault.media._volume import SUPERBLOCK_SIZE, Capabilities, VolumeLabel
from pipevault.media.errors import BadBlock, LibraryError, MediaIOError

DISK_MEDIA_TYPE = "disk"
VOLUME_SUFFIX = ".pvv"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_volume_name(name: str) -> str:
    """Return ``name`` if it is a safe volume name (letters, digits, ``_.-``; at most 64).

    Raises:
        LibraryError: the name could escape the pool directory or is empty.
    """
    if not _NAME.match(name) or ".." in name:
        raise LibraryError(f"{name!r} is not a valid volume name (letters, digits, '_', '.', '-')")
    return name


class DiskVolume(BlockFileVolume):
    """A rewritable, random-access volume in one file (see ``_blockfile`` for the layout)."""

    media_type = DISK_MEDIA_TYPE

    def _make_capabilities(self, label: VolumeLabel) -> Capabilities:
        return Capabilities(medium="disk", random_read=True, append_only=False, write_once=False,
                            sequential=False, filemarks=False, removable=False,
                            block_size=label.block_size, capacity=label.capacity)

    def _check_rewrite(self, address: int) -> None:
        return None

    def erase(self) -> None:
        """Discard every block; the label stays, so the volume can return to scratch."""
        self._truncate_all()


class DiskPoolDirectory:
    """The volume files of one disk pool: ``<directory>/<name>.pvv``, each at most ``max_file_size``.

    Args:
        directory: where the files live (created if missing).
        pool: pool name written into each new volume's label.
        max_file_size: largest size of a volume file, header and checksums included.
        block_size: block size of new volumes.
        clock: source of the creation time in labels.
    """

    def __init__(self, directory: Path, *, pool: str, max_file_size: int,
                 block_size: int = SUPERBLOCK_SIZE, clock: Clock = SYSTEM) -> None:
        self.directory = Path(directory)
        self.pool = pool
        self.block_size = block_size
        self.max_file_size = max_file_size
        self._clock = clock
        if capacity_blocks_for_file(max_file_size, block_size) < 1:
            raise BadBlock(f"a volume file of {max_file_size} bytes cannot hold one {block_size}-byte block")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MediaIOError(f"cannot create pool directory {self.directory}: {exc.strerror}") from exc

    def path_of(self, name: str) -> Path:
        """The file of volume ``name``."""
        return self.directory / (check_volume_name(name) + VOLUME_SUFFIX)

    def create(self, name: str) -> DiskVolume:
        """Label a new empty volume ``name`` and open it.

        Raises:
            LibraryError: a volume of that name exists in this directory.
        """
        path = self.path_of(name)
        if path.exists():
            raise LibraryError(f"volume {name} already exists in {self.directory}", volume=name)
        blocks = capacity_blocks_for_file(self.max_file_size, self.block_size)
        label = VolumeLabel(name=name, media_type=DISK_MEDIA_TYPE, block_size=self.block_size,
                            capacity=blocks * self.block_size, pool=self.pool, created=self._clock.now())
        write_header(path, label)
        return DiskVolume(path, expected_name=name)

    def open(self, name: str) -> DiskVolume:
        """Open existing volume ``name``, checking its label names it.

        Raises:
            LibraryError: no such volume; LabelMismatch: the file holds another volume.
        """
        path = self.path_of(name)
        if not path.exists():
            raise LibraryError(f"no volume {name} in {self.directory}", volume=name)
        return DiskVolume(path, expected_name=name)

    def labels(self) -> Iterator[VolumeLabel]:
        """The labels of every volume file in the directory, in name order."""
        for path in sorted(self.directory.glob("*" + VOLUME_SUFFIX)):
            yield read_label(path)
