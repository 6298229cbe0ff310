"""The one interface every medium implements: :class:`Volume`, its capabilities and label.

A volume stores whole blocks (the stream format's superblocks, 256 KiB by default) of one
fixed size and addresses them by number. What else it can do is declared up front in a frozen
:class:`Capabilities`; an operation outside them raises :class:`MediaUnsupported` naming the
operation and the medium, it never succeeds silently.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from pipevault.format import DEFAULT_SIZE
from pipevault.media.errors import BadBlock, EndOfData, LabelMismatch, MediaUnsupported, NotMounted

SUPERBLOCK_SIZE = DEFAULT_SIZE
"""Default block size: the stream format's superblock (256 KiB)."""

BlockData = bytes | bytearray | memoryview
"""What a write accepts. The volume copies it; the caller keeps ownership of the buffer."""


@dataclass(frozen=True)
class PositionCost:
    """Seconds a move of the head over ``d`` bytes costs (0 for disk and memory).

    A high-speed move costs ``fixed_s + per_byte_s * d``; a medium that can also just read
    through the data at ``stream_speed`` bytes/s takes whichever is quicker (short moves).
    """

    fixed_s: float = 0.0
    per_byte_s: float = 0.0
    stream_speed: float | None = None

    def seconds(self, distance_bytes: int) -> float:
        """The modelled time to move over ``distance_bytes`` (either direction)."""
        distance = abs(distance_bytes)
        if distance == 0:
            return 0.0
        wind = self.fixed_s + self.per_byte_s * distance
        return wind if self.stream_speed is None else min(wind, distance / self.stream_speed)


@dataclass(frozen=True)
class Capabilities:
    """What a medium can do; checked once by callers instead of trying and failing.

    Attributes:
        medium: kind of medium ("disk", "tape", "optical", "memory").
        random_read: any block, and any byte offset (``read_at``), can be read without
            sequential cost.
        append_only: new data goes only at the end of data; a write before it either
            truncates what follows (``sequential`` media) or is refused (``write_once``).
        write_once: written space is never overwritten, erased or reclaimed.
        sequential: reaching a block costs positioning time proportional to the distance.
        filemarks: ``write_filemark`` and ``space_filemarks`` exist.
        removable: the volume can be unloaded from its drive and moved.
        positioning: cost model of moving to another block.
        native_speed: bytes/s the medium streams at, or None when the medium does not model it.
        min_speed: lowest rate the drive can match before it stops and back-hitches, or None.
        block_size: bytes per block; every write is whole blocks of this size.
        capacity: bytes of data the volume holds (a multiple of ``block_size``).
    """

    medium: str
    random_read: bool
    append_only: bool
    write_once: bool
    sequential: bool
    filemarks: bool
    removable: bool
    block_size: int
    capacity: int
    positioning: PositionCost = field(default_factory=PositionCost)
    native_speed: float | None = None
    min_speed: float | None = None

    @property
    def capacity_blocks(self) -> int:
        """How many blocks fit on the volume."""
        return self.capacity // self.block_size

    @property
    def rewritable(self) -> bool:
        """A block before the end of data can be overwritten in place."""
        return not (self.append_only or self.write_once)


@dataclass(frozen=True)
class VolumeLabel:
    """How a volume identifies itself; stored in its header so the medium alone names it.

    ``family`` and ``sequence`` place write-once volumes in their family (empty / 0 otherwise).
    All fields are plain values so the catalog can persist them as they are.
    """

    name: str
    media_type: str
    block_size: int
    capacity: int
    pool: str = ""
    family: str = ""
    sequence: int = 0
    created: float = 0.0
    format_version: int = 1

    def to_json(self) -> bytes:
        """The label as canonical JSON bytes (sorted keys), for a volume header."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VolumeLabel:
        """Parse a label written by :meth:`to_json`; unknown keys are ignored.

        Raises:
            ValueError: not a JSON object with the required fields.
        """
        raw: Any = json.loads(data.decode())
        if not isinstance(raw, dict):
            raise ValueError("label is not a JSON object")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def check(self, expected_name: str | None) -> None:
        """Raise :class:`LabelMismatch` unless ``expected_name`` is None or this label's name."""
        if expected_name is not None and expected_name != self.name:
            raise LabelMismatch(f"volume is labelled {self.name!r}, not {expected_name!r}",
                                found=self.name, expected=expected_name)


@dataclass(frozen=True)
class VolumeStatus:
    """A volume's state at an instant.

    Attributes:
        end_of_data: address the next ``append`` gets (data blocks plus filemarks before it).
        data_blocks: blocks of data held.
        used_bytes: ``data_blocks * block_size``.
        free_bytes: room left for data.
        position: address the head is at (equal to ``end_of_data`` on random-access media).
        early_warning: the writer passed the early-warning point near the end of the medium.
    """

    name: str
    end_of_data: int
    data_blocks: int
    used_bytes: int
    free_bytes: int
    position: int
    early_warning: bool = False

    @classmethod
    def of_blocks(cls, name: str, blocks: int, caps: Capabilities) -> VolumeStatus:
        """The status of a random-access volume holding ``blocks`` blocks and no filemarks."""
        bs = caps.block_size
        return cls(name=name, end_of_data=blocks, data_blocks=blocks, used_bytes=blocks * bs,
                   free_bytes=(caps.capacity_blocks - blocks) * bs, position=blocks)


class Volume(ABC):
    """A medium holding fixed-size blocks: the interface every driver and wrapper implements.

    Required: ``capabilities``, ``label``, ``append``, ``read``, ``status``, ``sync``, ``close``.
    Optional operations have defaults here that raise :class:`MediaUnsupported`; a driver
    overrides exactly those its capabilities declare.

    Thread safety: a volume is used by one thread at a time (the writer or reader that owns
    it); the caller serialises access.

    Every operation on a closed volume raises :class:`NotMounted`.
    """

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this volume can do (constant for its lifetime)."""

    @property
    @abstractmethod
    def label(self) -> VolumeLabel:
        """The label read from (or written to) the volume's header."""

    @property
    def name(self) -> str:
        """The volume's name (volser / barcode for tape)."""
        return self.label.name

    @property
    def block_size(self) -> int:
        """Bytes per block."""
        return self.capabilities.block_size

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True after :meth:`close` (or unload, for tape)."""

    @abstractmethod
    def append(self, data: BlockData) -> int:
        """Write one or more whole blocks at the end of data.

        ``data`` is copied before returning; the caller may reuse the buffer at once.

        Returns:
            The address of the first block written; the following blocks get the next ones.

        Raises:
            BadBlock: ``len(data)`` is zero or not a multiple of ``block_size``.
            VolumeFull: the blocks do not all fit; nothing was written.
            NotMounted: the volume is closed.
        """

    @abstractmethod
    def read(self, address: int) -> bytes:
        """The block at ``address``, exactly as written.

        Sequential media position to it first, paying the positioning cost.

        Raises:
            EndOfData: ``address`` is at or past the end of data.
            BadBlock: ``address`` is negative or names a filemark.
            MediaCorrupt: the block read back does not match its checksum.
        """

    def read_into(self, address: int, out: memoryview) -> int:
        """Read the block at ``address`` into ``out`` (at least ``block_size`` bytes, owned by
        the caller); returns its length. Raises as :meth:`read` does.

        Drivers that can read straight into the caller's buffer override this; the default
        copies what :meth:`read` returns.
        """
        block = self.read(address)
        out[:len(block)] = block
        return len(block)

    @abstractmethod
    def status(self) -> VolumeStatus:
        """Where the volume stands: end of data, blocks, bytes used and free, position."""

    @abstractmethod
    def sync(self) -> None:
        """Return only when everything written so far is durable on the medium."""

    @abstractmethod
    def close(self) -> None:
        """Make written data durable and release the medium; idempotent."""

    # Optional operations: each raises MediaUnsupported unless the driver overrides it.

    def write(self, address: int, data: BlockData) -> int:
        """Write whole blocks starting at ``address`` (``address <= end_of_data``).

        Rewritable media replace the blocks in place; sequential media make them the new end
        of data, discarding everything after (like a real tape); write-once media refuse.

        Returns:
            ``address``.

        Raises:
            WriteOnceViolation: ``address`` is before the end of data on write-once media.
            MediaUnsupported: the medium cannot write at an address.
        """
        raise MediaUnsupported("write at an address", self.name)

    def read_at(self, offset: int, length: int) -> bytes:
        """``length`` bytes from byte ``offset`` of the data (blocks laid end to end).

        Raises:
            MediaUnsupported: the medium has no random read.
            EndOfData: the range goes past the data written.
        """
        raise MediaUnsupported("read at a byte offset", self.name, why="no random read")

    def write_filemark(self, count: int = 1) -> int:
        """Write ``count`` filemarks at the end of data, flushing the drive; returns the first's address."""
        raise MediaUnsupported("write_filemark", self.name, why="no filemarks")

    def space_filemarks(self, count: int) -> int:
        """Move over ``count`` filemarks (backwards when negative); returns the new position."""
        raise MediaUnsupported("space_filemarks", self.name, why="no filemarks")

    def erase(self) -> None:
        """Discard all data, keeping the label, so the volume can be reused from scratch."""
        raise MediaUnsupported("erase", self.name)

    def _ensure_open(self) -> None:
        if self.closed:
            raise NotMounted(f"volume {self.name} is not mounted (closed)", volume=self.name)

    def _check_blocks(self, data: BlockData) -> int:
        """The number of whole blocks in ``data``; raises BadBlock if it is not whole blocks."""
        size = memoryview(data).nbytes
        if size == 0 or size % self.block_size:
            raise BadBlock(f"{size} bytes is not a whole number of {self.block_size}-byte blocks "
                           f"for volume {self.name}", volume=self.name, size=size)
        return size // self.block_size

    def _read_range(self, offset: int, length: int, data_blocks: int) -> bytes:
        """``read_at`` for random-read media built on :meth:`read` of the blocks the range touches."""
        bs = self.block_size
        if offset < 0 or length < 0:
            raise BadBlock(f"byte range {offset}+{length} is invalid", volume=self.name)
        if offset + length > data_blocks * bs:
            raise EndOfData(f"bytes {offset}..{offset + length} pass the end of data "
                            f"({data_blocks * bs}) on {self.name}", volume=self.name, offset=offset)
        if length == 0:
            return b""
        first, last = offset // bs, (offset + length - 1) // bs
        data = b"".join(self.read(i) for i in range(first, last + 1))
        start = offset - first * bs
        return data[start:start + length]

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.capabilities.medium}>"


class FixedVolume(Volume):
    """A volume whose capabilities and label are set once, when it is opened (``_caps``, ``_label``)."""

    _caps: Capabilities
    _label: VolumeLabel

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    @property
    def label(self) -> VolumeLabel:
        return self._label
