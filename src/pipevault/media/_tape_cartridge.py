"""The file behind a simulated tape cartridge: a label header, then block and filemark records.

Layout: the volume header of ``_blockfile`` (magic, label JSON with media type "tape"), then
records in the order written, each a 16-byte header and its payload::

    4 bytes b"PVTR", 1 byte kind (b"D" data block, b"F" filemark), 3 bytes zero,
    4 bytes payload length (block size for data, 0 for a filemark), 4 bytes CRC-32 of the payload

End of data is the end of the file. Rewriting at a record truncates the file there, as a tape
drive forgets everything after the point it writes at. The record index (where each record
starts, and how many data bytes precede it) is rebuilt by walking the headers on open.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from pipevault.clock import Clock
from pipevault.media._blockfile import HEADER_SIZE, fsync, fsync_close, read_label, write_header
from pipevault.media._volume import VolumeLabel
from pipevault.media.errors import LabelMismatch, MediaCorrupt, MediaIOError

TAPE_MEDIA_TYPE = "tape"
_RECORD = struct.Struct("<4sc3xII")
_MAGIC = b"PVTR"
DATA = b"D"
FILEMARK = b"F"


def label_cartridge(path: Path, volser: str, *, block_size: int, capacity: int, clock: Clock,
                    pool: str = "") -> VolumeLabel:
    """Create a blank cartridge file ``path`` labelled ``volser``; returns the label written."""
    label = VolumeLabel(name=volser, media_type=TAPE_MEDIA_TYPE, block_size=block_size,
                        capacity=capacity, pool=pool, created=clock.now())
    write_header(path, label)
    return label


class Cartridge:
    """An open cartridge file: its label, its record index, and record-level I/O.

    The index lists, for each record (data block or filemark) in order, the file offset of its
    header, its kind, and the data bytes written before it. Only the drive uses this class.

    Raises on open:
        MediaIOError, MediaCorrupt: see ``read_label``; also a record header that is damaged.
        LabelMismatch: the file is not a tape, or ``expected_volser`` names another volume.
    """

    def __init__(self, path: Path, expected_volser: str | None = None) -> None:
        self.path = Path(path)
        self.label = read_label(self.path)
        if self.label.media_type != TAPE_MEDIA_TYPE:
            raise LabelMismatch(f"{path} holds a {self.label.media_type} volume, not a tape cartridge")
        self.label.check(expected_volser)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            raise MediaIOError(f"cannot open cartridge {path}: {exc.strerror}", path=str(path)) from exc
        self.offsets: list[int] = []
        self.kinds: list[bytes] = []
        self.bytes_before: list[int] = []
        self.data_bytes = 0
        self.recovered_tail_bytes = self._scan()

    def _scan(self) -> int:
        fd = self._require()
        size = os.fstat(fd).st_size
        offset = HEADER_SIZE
        while offset + _RECORD.size <= size:
            magic, kind, length, _ = _RECORD.unpack(os.pread(fd, _RECORD.size, offset))
            if magic != _MAGIC or kind not in (DATA, FILEMARK):
                raise MediaCorrupt(f"record header at byte {offset} of cartridge {self.label.name} "
                                   "is damaged",
                                   volume=self.label.name, offset=offset)
            if offset + _RECORD.size + length > size:
                break
            self._index(offset, kind, length)
            offset += _RECORD.size + length
        if offset < size:
            # A record cut short by a crash was never synced; the tape ends before it.
            os.ftruncate(fd, offset)
        return size - offset

    def _index(self, offset: int, kind: bytes, length: int) -> None:
        self.offsets.append(offset)
        self.kinds.append(kind)
        self.bytes_before.append(self.data_bytes)
        self.data_bytes += length

    def _require(self) -> int:
        if self._fd is None:
            raise MediaIOError(f"cartridge {self.label.name} is closed")
        return self._fd

    @property
    def records(self) -> int:
        """Records on the tape (data blocks and filemarks): the end-of-data address."""
        return len(self.offsets)

    def end_offset(self) -> int:
        """File offset just past the last record."""
        if not self.offsets:
            return HEADER_SIZE
        last = self.offsets[-1]
        return last + _RECORD.size + (self.label.block_size if self.kinds[-1] == DATA else 0)

    def bytes_at(self, address: int) -> int:
        """Data bytes written before record ``address`` (its distance from the load point)."""
        return self.bytes_before[address] if address < self.records else self.data_bytes

    def truncate(self, address: int) -> None:
        """Forget record ``address`` and everything after it."""
        fd = self._require()
        if address >= self.records:
            return
        os.ftruncate(fd, self.offsets[address])
        self.data_bytes = self.bytes_before[address]
        del self.offsets[address:], self.kinds[address:], self.bytes_before[address:]

    def append(self, kind: bytes, payloads: list[memoryview] | None, count: int = 1) -> int:
        """Write ``count`` records of ``kind`` (data: one per payload) at the end; first address."""
        fd = self._require()
        first = self.records
        offset = self.end_offset()
        parts: list[bytes | memoryview] = []
        items: list[memoryview | None] = list(payloads) if payloads is not None else [None] * count
        start = offset
        for payload in items:
            length = 0 if payload is None else len(payload)
            crc = 0 if payload is None else zlib.crc32(payload)
            parts.append(_RECORD.pack(_MAGIC, kind, length, crc))
            if payload is not None:
                parts.append(payload)
            self._index(offset, kind, length)
            offset += _RECORD.size + length
        try:
            written = os.pwritev(fd, parts, start)
        except OSError as exc:
            raise MediaIOError(f"write to cartridge {self.path} failed: {exc.strerror}") from exc
        if written != offset - start:
            raise MediaIOError(f"short write to cartridge {self.path} (disk full?)")
        return first

    def read(self, address: int) -> bytes | None:
        """The payload of record ``address``, or None for a filemark.

        Raises:
            MediaCorrupt: the record's header or checksum does not match.
        """
        fd = self._require()
        offset = self.offsets[address]
        want = _RECORD.size + (self.label.block_size if self.kinds[address] == DATA else 0)
        raw = os.pread(fd, want, offset)
        magic, kind, length, crc = _RECORD.unpack_from(raw)
        payload = raw[_RECORD.size:]
        if (magic != _MAGIC or kind != self.kinds[address] or len(payload) != length
                or zlib.crc32(payload) != crc):
            raise MediaCorrupt(f"record {address} of cartridge {self.label.name} fails its checksum",
                               volume=self.label.name, address=address)
        return None if kind == FILEMARK else payload

    def sync(self) -> None:
        """fsync the cartridge file."""
        fsync(self._require(), self.path)

    def close(self) -> None:
        """fsync and close the file; idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fsync_close(fd, self.path)
