"""Cross-cutting behaviour as wrappers that take a :class:`Volume` and are one.

Statistics, fault injection and read-only access never live inside a driver. Compose them
visibly, e.g. ``StatisticsVolume(FaultyVolume(disk), clock)``, and get a layer back with
:func:`find_layer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pipevault.clock import SYSTEM, Clock
from pipevault.media._volume import BlockData, Capabilities, Volume, VolumeLabel, VolumeStatus
from pipevault.media.errors import MediaError, MediaIOError, MediaUnsupported

V = TypeVar("V", bound=Volume)
T = TypeVar("T")


class VolumeWrapper(Volume):
    """A volume that forwards every operation to ``inner``; subclasses override what they add."""

    def __init__(self, inner: Volume) -> None:
        self._inner = inner

    def unwrap(self) -> Volume:
        """The volume this one wraps."""
        return self._inner

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    @property
    def label(self) -> VolumeLabel:
        return self._inner.label

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def append(self, data: BlockData) -> int:
        return self._inner.append(data)

    def read(self, address: int) -> bytes:
        return self._inner.read(address)

    def read_into(self, address: int, out: memoryview) -> int:
        return self._inner.read_into(address, out)

    def status(self) -> VolumeStatus:
        return self._inner.status()

    def sync(self) -> None:
        self._inner.sync()

    def close(self) -> None:
        self._inner.close()

    def write(self, address: int, data: BlockData) -> int:
        return self._inner.write(address, data)

    def read_at(self, offset: int, length: int) -> bytes:
        return self._inner.read_at(offset, length)

    def write_filemark(self, count: int = 1) -> int:
        return self._inner.write_filemark(count)

    def space_filemarks(self, count: int) -> int:
        return self._inner.space_filemarks(count)

    def erase(self) -> None:
        self._inner.erase()


def find_layer(volume: Volume, kind: type[V]) -> V | None:
    """The outermost layer of ``volume`` (itself or a wrapped one) that is a ``kind``, or None."""
    current: Volume | None = volume
    while current is not None:
        if isinstance(current, kind):
            return current
        current = current.unwrap() if isinstance(current, VolumeWrapper) else None
    return None


@dataclass
class VolumeStatistics:
    """Counters of one volume's traffic; seconds are measured on the wrapper's clock."""

    appends: int = 0
    blocks_written: int = 0
    bytes_written: int = 0
    reads: int = 0
    bytes_read: int = 0
    syncs: int = 0
    filemarks: int = 0
    errors: int = 0
    write_seconds: float = 0.0
    read_seconds: float = 0.0
    sync_seconds: float = 0.0


class StatisticsVolume(VolumeWrapper):
    """Counts operations, bytes, errors and time spent in the wrapped volume."""

    def __init__(self, inner: Volume, clock: Clock = SYSTEM) -> None:
        super().__init__(inner)
        self._clock = clock
        self._stats = VolumeStatistics()

    def statistics(self) -> VolumeStatistics:
        """A copy of the counters so far."""
        return VolumeStatistics(**vars(self._stats))

    def _timed(self, fn: Callable[[], T], field: str) -> T:
        start = self._clock.monotonic()
        try:
            return fn()
        except MediaError:
            self._stats.errors += 1
            raise
        finally:
            elapsed = self._clock.monotonic() - start
            setattr(self._stats, field, getattr(self._stats, field) + elapsed)

    def append(self, data: BlockData) -> int:
        address = self._timed(lambda: self._inner.append(data), "write_seconds")
        self._count_write(data)
        return address

    def write(self, address: int, data: BlockData) -> int:
        result = self._timed(lambda: self._inner.write(address, data), "write_seconds")
        self._count_write(data)
        return result

    def _count_write(self, data: BlockData) -> None:
        size = memoryview(data).nbytes
        self._stats.appends += 1
        self._stats.blocks_written += size // self.block_size
        self._stats.bytes_written += size

    def read(self, address: int) -> bytes:
        block = self._timed(lambda: self._inner.read(address), "read_seconds")
        self._stats.reads += 1
        self._stats.bytes_read += len(block)
        return block

    def read_into(self, address: int, out: memoryview) -> int:
        n = self._timed(lambda: self._inner.read_into(address, out), "read_seconds")
        self._stats.reads += 1
        self._stats.bytes_read += n
        return n

    def read_at(self, offset: int, length: int) -> bytes:
        data = self._timed(lambda: self._inner.read_at(offset, length), "read_seconds")
        self._stats.reads += 1
        self._stats.bytes_read += len(data)
        return data

    def sync(self) -> None:
        self._timed(self._inner.sync, "sync_seconds")
        self._stats.syncs += 1

    def write_filemark(self, count: int = 1) -> int:
        address = self._timed(lambda: self._inner.write_filemark(count), "write_seconds")
        self._stats.filemarks += count
        return address


class FaultyVolume(VolumeWrapper):
    """Fails or corrupts chosen operations on demand, to test how callers cope.

    ``fail("append", on_call=3)`` makes the third ``append`` from now raise (a
    :class:`MediaIOError` unless another error is given), without reaching the inner volume.
    ``corrupt(address)`` makes reads of that block return it with one bit flipped, the silent
    corruption that checksums in the stream format must catch.
    """

    _OPERATIONS = ("append", "write", "read", "read_at", "sync", "write_filemark", "space_filemarks",
                   "erase", "close")

    def __init__(self, inner: Volume) -> None:
        super().__init__(inner)
        self._calls = dict.fromkeys(self._OPERATIONS, 0)
        self._planned: dict[tuple[str, int], MediaError] = {}
        self._corrupt: set[int] = set()

    def fail(self, operation: str, *, on_call: int = 1, times: int = 1,
             error: MediaError | None = None) -> None:
        """Make calls ``on_call`` .. ``on_call + times - 1`` (counted from now) of ``operation`` raise."""
        if operation not in self._calls:
            raise MediaUnsupported(f"fault injection into {operation!r}", self.name)
        for k in range(times):
            call = self._calls[operation] + on_call + k
            self._planned[operation, call] = error or MediaIOError(
                f"injected failure of {operation} call {call} on {self.name}", volume=self.name)

    def corrupt(self, address: int) -> None:
        """Flip one bit in every later read of block ``address``."""
        self._corrupt.add(address)

    def _enter(self, operation: str) -> None:
        self._calls[operation] += 1
        planned = self._planned.pop((operation, self._calls[operation]), None)
        if planned is not None:
            raise planned

    def append(self, data: BlockData) -> int:
        self._enter("append")
        return self._inner.append(data)

    def write(self, address: int, data: BlockData) -> int:
        self._enter("write")
        return self._inner.write(address, data)

    def read(self, address: int) -> bytes:
        self._enter("read")
        block = self._inner.read(address)
        if address in self._corrupt:
            damaged = bytearray(block)
            damaged[len(damaged) // 2] ^= 0x10
            return bytes(damaged)
        return block

    def read_into(self, address: int, out: memoryview) -> int:
        self._enter("read")
        n = self._inner.read_into(address, out)
        if address in self._corrupt:
            out[n // 2] ^= 0x10
        return n

    def read_at(self, offset: int, length: int) -> bytes:
        self._enter("read_at")
        return self._inner.read_at(offset, length)

    def sync(self) -> None:
        self._enter("sync")
        self._inner.sync()

    def write_filemark(self, count: int = 1) -> int:
        self._enter("write_filemark")
        return self._inner.write_filemark(count)

    def space_filemarks(self, count: int) -> int:
        self._enter("space_filemarks")
        return self._inner.space_filemarks(count)

    def erase(self) -> None:
        self._enter("erase")
        self._inner.erase()

    def close(self) -> None:
        self._enter("close")
        self._inner.close()


class ReadOnlyVolume(VolumeWrapper):
    """Refuses every change to the wrapped volume with :class:`MediaUnsupported`; reads pass."""

    def _refuse(self, operation: str) -> MediaUnsupported:
        return MediaUnsupported(operation, self.name, why="the volume is read-only")

    def append(self, data: BlockData) -> int:
        raise self._refuse("append")

    def write(self, address: int, data: BlockData) -> int:
        raise self._refuse("write")

    def write_filemark(self, count: int = 1) -> int:
        raise self._refuse("write_filemark")

    def erase(self) -> None:
        raise self._refuse("erase")
