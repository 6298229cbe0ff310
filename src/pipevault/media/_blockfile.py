"""A volume kept in one file: a label header, then fixed-size block slots with checksums.

Layout (all integers little-endian)::

    offset 0     8 bytes  magic b"PVVOL001"
    offset 8     4 bytes  label length n
    offset 12    4 bytes  CRC-32 of the label
    offset 16    n bytes  label, canonical JSON (VolumeLabel.to_json), zero padded to HEADER_SIZE
    HEADER_SIZE  slot 0, slot 1, ...   slot i = block i (block_size bytes) + 16-byte trailer

    trailer: 4 bytes b"PVBX", 4 bytes block number, 8 bytes XXH3-64 of the block
    (written before 2026-11-23: b"PVBK", block number, CRC-32 of the block, 4 bytes zero;
    still read)

XXH3-64 instead of CRC-32: checking 256 KiB takes 14 us against zlib's 135 (a gigabyte
stored or restored spent 0.5 s of CPU in CRC-32 alone), with as strong a check against
random damage. The trailer lets a read prove it got the block that was written at that address, and lets
opening a file after a crash cut a torn final slot (one never made durable by ``sync``).
Disk and write-once optical volumes share this file; they differ in what writes they allow.
"""

from __future__ import annotations

import os
import struct
import zlib
from abc import abstractmethod
from pathlib import Path

import xxhash

from pipevault.media._volume import BlockData, Capabilities, FixedVolume, VolumeLabel, VolumeStatus
from pipevault.media.errors import (
    BadBlock,
    EndOfData,
    LabelMismatch,
    MediaCorrupt,
    MediaIOError,
    VolumeFull,
)

MAGIC = b"PVVOL001"
HEADER_SIZE = 4096
_HEAD = struct.Struct("<8sII")
_TRAILER = struct.Struct("<4sIQ")
TRAILER_SIZE = _TRAILER.size
_TRAILER_MAGIC = b"PVBX"  # XXH3-64 of the block
_CRC32_MAGIC = b"PVBK"  # older trailers: CRC-32 of the block in the low half, zero in the high


def slot_size(block_size: int) -> int:
    """Bytes one block takes in the file, trailer included."""
    return block_size + TRAILER_SIZE


def capacity_blocks_for_file(max_file_size: int, block_size: int) -> int:
    """How many blocks fit in a volume file no larger than ``max_file_size`` bytes."""
    return max(0, (max_file_size - HEADER_SIZE) // slot_size(block_size))


def write_header(path: Path, label: VolumeLabel) -> None:
    """Create ``path`` holding only ``label``'s header, durably (file and directory fsynced).

    Raises:
        MediaIOError: the file exists already or cannot be written.
    """
    body = label.to_json()
    if _HEAD.size + len(body) > HEADER_SIZE:
        raise BadBlock(f"label of {label.name} is too long for a volume header")
    head = _HEAD.pack(MAGIC, len(body), zlib.crc32(body)) + body
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    except OSError as exc:
        raise MediaIOError(f"cannot create volume file {path}: {exc.strerror}", path=str(path)) from exc
    try:
        os.write(fd, head.ljust(HEADER_SIZE, b"\0"))
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def read_label(path: Path) -> VolumeLabel:
    """The label in the header of the volume file ``path``.

    Raises:
        MediaIOError: the file cannot be read.
        MediaCorrupt: no volume header, or its checksum is wrong.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_SIZE)
    except OSError as exc:
        raise MediaIOError(f"cannot read volume file {path}: {exc.strerror}", path=str(path)) from exc
    if len(head) < _HEAD.size:
        raise MediaCorrupt(f"{path} is too short to be a volume", path=str(path))
    magic, length, crc = _HEAD.unpack_from(head)
    body = head[_HEAD.size:_HEAD.size + length]
    if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
        raise MediaCorrupt(f"{path} has no valid volume header", path=str(path))
    try:
        return VolumeLabel.from_json(body)
    except (ValueError, TypeError) as exc:
        raise MediaCorrupt(f"{path} has an unreadable label: {exc}", path=str(path)) from exc


def fsync(fd: int, path: Path) -> None:
    """fsync ``fd`` (the file ``path``), raising MediaIOError on failure."""
    try:
        os.fsync(fd)
    except OSError as exc:
        raise MediaIOError(f"fsync of {path} failed: {exc.strerror}", path=str(path)) from exc


def fsync_close(fd: int, path: Path) -> None:
    """fsync then close ``fd``; the descriptor is closed even when fsync fails."""
    try:
        fsync(fd, path)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlockFileVolume(FixedVolume):
    """A volume stored in one file (see the module docstring for the layout).

    Subclasses give the capabilities and decide which writes before the end of data they
    allow (:meth:`_check_rewrite`). Opening cuts a torn final slot left by a crash.

    Raises on open:
        MediaIOError, MediaCorrupt: see :func:`read_label`.
        LabelMismatch: ``expected_name`` is given and the label names another volume, or the
            label's media type is not ``media_type``.
    """

    media_type = "file"

    def __init__(self, path: Path, *, expected_name: str | None = None) -> None:
        self._path = Path(path)
        self._label = read_label(self._path)
        self._label.check(expected_name)
        if self._label.media_type != self.media_type:
            raise LabelMismatch(f"{self._path} holds a {self._label.media_type} volume, "
                                f"not {self.media_type}", path=str(self._path))
        self._caps = self._make_capabilities(self._label)
        self._slot = slot_size(self._label.block_size)
        try:
            self._fd: int | None = os.open(self._path, os.O_RDWR)
            size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise MediaIOError(f"cannot open {self._path}: {exc.strerror}", path=str(self._path)) from exc
        self._blocks, torn = divmod(max(0, size - HEADER_SIZE), self._slot)
        self.recovered_tail_bytes = torn
        if torn:
            # A slot only partly on disk was never acknowledged by sync(); it is not data.
            os.ftruncate(self._fd, HEADER_SIZE + self._blocks * self._slot)

    @abstractmethod
    def _make_capabilities(self, label: VolumeLabel) -> Capabilities:
        """The capabilities of a volume with this label."""

    @abstractmethod
    def _check_rewrite(self, address: int) -> None:
        """Raise unless blocks before the end of data may be overwritten at ``address``."""

    @property
    def path(self) -> Path:
        """The volume's file."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _io(self) -> int:
        self._ensure_open()
        assert self._fd is not None
        return self._fd

    def append(self, data: BlockData) -> int:
        fd = self._io()
        n = self._check_blocks(data)
        if self._blocks + n > self._caps.capacity_blocks:
            raise VolumeFull(f"volume {self.name} has room for {self._caps.capacity_blocks - self._blocks} "
                             f"more blocks, {n} were written", volume=self.name)
        first = self._blocks
        self._pwrite_blocks(fd, first, data)
        self._blocks += n
        return first

    def write(self, address: int, data: BlockData) -> int:
        fd = self._io()
        n = self._check_blocks(data)
        if address < 0 or address > self._blocks:
            raise BadBlock(f"cannot write at block {address} of {self.name}: end of data is {self._blocks}",
                           volume=self.name, address=address)
        if address < self._blocks:
            self._check_rewrite(address)
        if address + n > self._caps.capacity_blocks:
            raise VolumeFull(f"blocks {address}..{address + n - 1} do not fit on {self.name}",
                             volume=self.name)
        self._pwrite_blocks(fd, address, data)
        self._blocks = max(self._blocks, address + n)
        return address

    def _pwrite_blocks(self, fd: int, first: int, data: BlockData) -> None:
        view = memoryview(data).cast("B")
        bs = self.block_size
        parts: list[bytes | memoryview] = []
        for i in range(len(view) // bs):
            block = view[i * bs:(i + 1) * bs]
            parts.append(block)
            parts.append(_TRAILER.pack(_TRAILER_MAGIC, first + i, xxhash.xxh3_64_intdigest(block)))
        try:
            written = os.pwritev(fd, parts, HEADER_SIZE + first * self._slot)
        except OSError as exc:
            raise MediaIOError(f"write to {self._path} failed: {exc.strerror}", path=str(self._path)) from exc
        if written != len(view) + TRAILER_SIZE * (len(parts) // 2):
            raise MediaIOError(f"short write to {self._path} (disk full?)", path=str(self._path))

    def read(self, address: int) -> bytes:
        fd = self._io()
        self._check_address(address)
        try:
            raw = os.pread(fd, self._slot, HEADER_SIZE + address * self._slot)
        except OSError as exc:
            raise MediaIOError(f"read from {self._path} failed: {exc.strerror}",
                               path=str(self._path)) from exc
        bs = self.block_size
        if len(raw) != self._slot:
            raise MediaCorrupt(f"block {address} of {self.name} is truncated",
                               volume=self.name, address=address)
        self._check_block(address, memoryview(raw)[:bs], raw, bs)
        return raw[:bs]

    def read_into(self, address: int, out: memoryview) -> int:
        """:meth:`read` straight into ``out``: no copy besides the kernel's."""
        fd = self._io()
        self._check_address(address)
        bs = self.block_size
        trailer = bytearray(TRAILER_SIZE)
        try:
            n = os.preadv(fd, [out[:bs], trailer], HEADER_SIZE + address * self._slot)
        except OSError as exc:
            raise MediaIOError(f"read from {self._path} failed: {exc.strerror}",
                               path=str(self._path)) from exc
        if n != self._slot:
            raise MediaCorrupt(f"block {address} of {self.name} is truncated",
                               volume=self.name, address=address)
        self._check_block(address, out[:bs], trailer, 0)
        return bs

    def _check_block(self, address: int, block: memoryview, trailer: bytes | bytearray, at: int) -> None:
        magic, number, check = _TRAILER.unpack_from(trailer, at)
        if magic == _TRAILER_MAGIC:
            good = xxhash.xxh3_64_intdigest(block) == check
        else:
            good = magic == _CRC32_MAGIC and zlib.crc32(block) == check
        if not good or number != address:
            raise MediaCorrupt(f"block {address} of {self.name} fails its checksum",
                               volume=self.name, address=address)

    def _check_address(self, address: int) -> None:
        if address < 0:
            raise BadBlock(f"block address {address} is negative", volume=self.name)
        if address >= self._blocks:
            raise EndOfData(f"block {address} is past the end of data ({self._blocks}) on {self.name}",
                            volume=self.name, address=address)

    def read_at(self, offset: int, length: int) -> bytes:
        self._io()
        return self._read_range(offset, length, self._blocks)

    def status(self) -> VolumeStatus:
        self._io()
        return VolumeStatus.of_blocks(self.name, self._blocks, self._caps)

    def sync(self) -> None:
        fsync(self._io(), self._path)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fsync_close(fd, self._path)

    def _truncate_all(self) -> None:
        fd = self._io()
        os.ftruncate(fd, HEADER_SIZE)
        os.fsync(fd)
        self._blocks = 0
