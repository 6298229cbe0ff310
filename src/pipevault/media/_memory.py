"""A volume in memory: rewritable, random access, nothing durable. For tests and benchmarks."""

from __future__ import annotations

from pipevault.media._volume import (
    SUPERBLOCK_SIZE,
    BlockData,
    Capabilities,
    FixedVolume,
    VolumeLabel,
    VolumeStatus,
)
from pipevault.media.errors import BadBlock, EndOfData, VolumeFull


class MemoryVolume(FixedVolume):
    """Blocks held in a list of ``bytes``; ``sync`` is a no-op because nothing is ever durable.

    With ``discard=True`` blocks are counted but not kept (a sink for measuring a pipeline
    without storage); reading one then raises :class:`EndOfData` naming the discard mode.
    """

    def __init__(self, name: str = "MEM000", *, block_size: int = SUPERBLOCK_SIZE,
                 capacity_blocks: int = 1024, discard: bool = False) -> None:
        if block_size <= 0 or capacity_blocks <= 0:
            raise BadBlock("a memory volume needs a positive block size and capacity")
        self._label = VolumeLabel(name=name, media_type="memory", block_size=block_size,
                                  capacity=block_size * capacity_blocks)
        self._caps = Capabilities(medium="memory", random_read=True, append_only=False, write_once=False,
                                  sequential=False, filemarks=False, removable=False,
                                  block_size=block_size, capacity=block_size * capacity_blocks)
        self._blocks: list[bytes] = []
        self._count = 0
        self._discard = discard
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, data: BlockData) -> int:
        return self.write(self._count, data)

    def write(self, address: int, data: BlockData) -> int:
        self._ensure_open()
        n = self._check_blocks(data)
        if address < 0 or address > self._count:
            raise BadBlock(f"cannot write at block {address} of {self.name}: end of data is {self._count}")
        if address + n > self._caps.capacity_blocks:
            raise VolumeFull(f"volume {self.name} has room for {self._caps.capacity_blocks - address} "
                             f"blocks from {address}, {n} were written", volume=self.name)
        if not self._discard:
            raw = bytes(memoryview(data).cast("B"))
            bs = self.block_size
            blocks = [raw[i * bs:(i + 1) * bs] for i in range(n)]
            self._blocks[address:address + n] = blocks
        self._count = max(self._count, address + n)
        return address

    def read(self, address: int) -> bytes:
        self._ensure_open()
        if address < 0:
            raise BadBlock(f"block address {address} is negative", volume=self.name)
        if address >= self._count:
            raise EndOfData(f"block {address} is past the end of data ({self._count}) on {self.name}")
        if self._discard:
            raise EndOfData(f"volume {self.name} discards what is written; block {address} was not kept")
        return self._blocks[address]

    def read_at(self, offset: int, length: int) -> bytes:
        self._ensure_open()
        return self._read_range(offset, length, self._count)

    def status(self) -> VolumeStatus:
        self._ensure_open()
        return VolumeStatus.of_blocks(self.name, self._count, self._caps)

    def sync(self) -> None:
        self._ensure_open()

    def close(self) -> None:
        self._closed = True

    def erase(self) -> None:
        """Discard every block."""
        self._ensure_open()
        self._blocks.clear()
        self._count = 0
