"""A tape drive simulated on cartridge files, with the behaviour and timing of a real one.

Sequential access: every block has an address (its logical object number, filemarks
included), reaching one costs a locate proportional to the distance, reading streams at native
speed, and writing anywhere but the end of data discards everything after it. Capacity ends at
end of medium; past the early-warning point writes still succeed but ``status().early_warning``
tells the writer to finish on another volume. The motor model (``_tape_motion``) makes the drive
back-hitch when fed below its minimum streaming rate. Time goes through the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipevault.clock import SYSTEM, Clock
from pipevault.media._tape_cartridge import DATA, FILEMARK, Cartridge
from pipevault.media._tape_motion import TapeMotion
from pipevault.media._tape_profile import LTO9, TapeProfile
from pipevault.media._volume import (
    BlockData,
    Capabilities,
    Volume,
    VolumeLabel,
    VolumeStatus,
)
from pipevault.media.errors import BadBlock, EndOfData, LibraryError, NotMounted, VolumeFull


@dataclass(frozen=True)
class TapeStatistics:
    """Counters of one drive since it was created; seconds are on the drive's clock."""

    loads: int
    unloads: int
    rewinds: int
    locates: int
    positioning_seconds: float
    blocks_written: int
    bytes_written: int
    blocks_read: int
    bytes_read: int
    filemarks_written: int
    early_warnings: int
    backhitches: int
    backhitch_seconds: float
    writer_wait_seconds: float


class TapeDrive(Volume):
    """One drive; a :class:`Volume` while a cartridge is loaded, :class:`NotMounted` otherwise.

    ``close()`` syncs and unloads. Not thread-safe: one writer or reader owns the drive.

    Args:
        name: the drive's name in its library.
        profile: the drive generation's timing (``LTO9`` by default).
        clock: where time is read and spent; ``ManualClock`` in tests, the system clock for a
            drive that really takes its time.
    """

    def __init__(self, name: str = "DRIVE0", *, profile: TapeProfile = LTO9, clock: Clock = SYSTEM) -> None:
        self.drive_name = name
        self.profile = profile
        self._clock = clock
        self._cart: Cartridge | None = None
        self._pos = 0
        self._motion = TapeMotion(profile, clock)
        self._counts = dict.fromkeys(("loads", "unloads", "rewinds", "locates", "blocks_written",
                                      "bytes_written", "blocks_read", "bytes_read", "filemarks_written",
                                      "early_warnings"), 0)
        self._positioning_s = 0.0
        self._warned = False

    # -- loading ---------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """A cartridge is in the drive."""
        return self._cart is not None

    def load(self, path: Path, *, expected_volser: str | None = None) -> VolumeLabel:
        """Thread the cartridge file ``path`` (``load_s``) and position at the load point.

        Raises:
            LibraryError: the drive already holds a cartridge.
            LabelMismatch, MediaCorrupt, MediaIOError: the cartridge is not the one expected,
                or its file is damaged.
        """
        if self._cart is not None:
            raise LibraryError(f"drive {self.drive_name} already holds {self._cart.label.name}",
                               drive=self.drive_name)
        cart = Cartridge(path, expected_volser)
        self._spend(self.profile.load_s)
        self._cart = cart
        self._pos = 0
        self._warned = self._past_early_warning()
        self._counts["loads"] += 1
        self._motion.positioned()
        return cart.label

    def unload(self) -> Path:
        """Flush, rewind and eject the cartridge; returns its file.

        Raises:
            NotMounted: the drive is empty.
        """
        cart = self._require()
        self._motion.flush()
        cart.sync()
        self.rewind()
        self._spend(self.profile.unload_s)
        cart.close()
        self._cart = None
        self._counts["unloads"] += 1
        return cart.path

    def _require(self) -> Cartridge:
        if self._cart is None:
            raise NotMounted(f"drive {self.drive_name} holds no cartridge", drive=self.drive_name)
        return self._cart

    def _spend(self, seconds: float) -> None:
        if seconds > 0:
            self._clock.sleep(seconds)

    # -- Volume ----------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        label = self._require().label
        return Capabilities(
            medium="tape", random_read=False, append_only=True, write_once=False, sequential=True,
            filemarks=True, removable=True, block_size=label.block_size,
            capacity=label.capacity - label.capacity % label.block_size,
            positioning=self.profile.position_cost(label.capacity),
            native_speed=self.profile.native_speed, min_speed=self.profile.min_speed)

    @property
    def label(self) -> VolumeLabel:
        return self._require().label

    @property
    def name(self) -> str:
        return self._cart.label.name if self._cart is not None else f"(empty drive {self.drive_name})"

    @property
    def closed(self) -> bool:
        return self._cart is None

    @property
    def position(self) -> int:
        """Address of the record under the head."""
        self._require()
        return self._pos

    def _past_early_warning(self) -> bool:
        cart = self._require()
        margin = cart.label.capacity * self.profile.early_warning_fraction
        return cart.data_bytes >= cart.label.capacity - margin

    def status(self) -> VolumeStatus:
        cart = self._require()
        bs = cart.label.block_size
        blocks = cart.data_bytes // bs
        return VolumeStatus(name=cart.label.name, end_of_data=cart.records, data_blocks=blocks,
                            used_bytes=cart.data_bytes,
                            free_bytes=self.capabilities.capacity - cart.data_bytes,
                            position=self._pos, early_warning=self._past_early_warning())

    # -- positioning -----------------------------------------------------------------------

    def rewind(self) -> None:
        """Flush and wind back to the load point (cost grows with the distance)."""
        cart = self._require()
        self._motion.flush()
        seconds = self.profile.rewind_seconds(cart.bytes_at(self._pos), cart.label.capacity)
        self._spend(seconds)
        self._positioning_s += seconds
        self._counts["rewinds"] += 1
        self._pos = 0
        self._motion.positioned()

    def locate(self, address: int) -> None:
        """Move the head to just before record ``address`` (``address`` may be end of data).

        Raises:
            BadBlock: negative address; EndOfData: beyond end of data.
        """
        cart = self._require()
        if address < 0:
            raise BadBlock(f"block address {address} is negative", volume=self.name)
        if address > cart.records:
            raise EndOfData(f"cannot locate to {address}: end of data of {self.name} is {cart.records}",
                            volume=self.name, address=address)
        self._move_to(address)

    def _move_to(self, address: int) -> None:
        if address == self._pos:
            return
        cart = self._require()
        self._motion.flush()
        distance = cart.bytes_at(address) - cart.bytes_at(self._pos)
        seconds = self.profile.locate_seconds(distance, cart.label.capacity)
        self._spend(seconds)
        self._positioning_s += seconds
        self._counts["locates"] += 1
        self._pos = address
        self._motion.positioned()

    def space_filemarks(self, count: int) -> int:
        """Move over ``count`` filemarks: forward ends just after the last one crossed,
        backward (negative ``count``) just before it. Returns the new position.

        Raises:
            EndOfData: end of data (forward) or the load point (backward) came first; the head
                is left there.
        """
        cart = self._require()
        target, left = self._pos, abs(count)
        step = 1 if count > 0 else -1
        while left:
            probe = target if step > 0 else target - 1
            if probe < 0 or probe >= cart.records:
                self._move_to(max(0, min(probe, cart.records)))
                where = "the end of data" if step > 0 else "the beginning of the tape"
                raise EndOfData(f"reached {where} of {self.name} with {left} filemark(s) still to space over",
                                volume=self.name)
            if cart.kinds[probe] == FILEMARK:
                left -= 1
            target = probe + 1 if step > 0 else probe
        self._move_to(target)
        return self._pos

    # -- reading ---------------------------------------------------------------------------

    def read_next(self) -> bytes | None:
        """The record under the head, moving past it: the block's bytes, or None for a filemark
        (as a read on a Unix tape device returns 0 bytes at a filemark).

        Raises:
            EndOfData: the head is at end of data. MediaCorrupt: the record fails its checksum.
        """
        cart = self._require()
        if self._pos >= cart.records:
            raise EndOfData(f"end of data on {self.name} at {self._pos}", volume=self.name)
        self._motion.flush()
        payload = cart.read(self._pos)
        if payload is not None:
            self._spend(len(payload) / self.profile.native_speed)
            self._counts["blocks_read"] += 1
            self._counts["bytes_read"] += len(payload)
        self._pos += 1
        return payload

    def read(self, address: int) -> bytes:
        cart = self._require()
        if address < 0:
            raise BadBlock(f"block address {address} is negative", volume=self.name)
        if address >= cart.records:
            raise EndOfData(f"block {address} is past the end of data ({cart.records}) on {self.name}",
                            volume=self.name, address=address)
        if cart.kinds[address] == FILEMARK:
            raise BadBlock(f"address {address} of {self.name} is a filemark, not a block",
                           volume=self.name, address=address)
        self._move_to(address)
        payload = self.read_next()
        assert payload is not None
        return payload

    # -- writing ---------------------------------------------------------------------------

    def append(self, data: BlockData) -> int:
        return self.write(self._require().records, data)

    def write(self, address: int, data: BlockData) -> int:
        """Write blocks at ``address``; everything from ``address`` on is discarded first.

        Returns ``address``. Raises BadBlock beyond end of data, VolumeFull past end of medium
        (nothing written, nothing discarded).
        """
        cart = self._require()
        n = self._check_blocks(data)
        if address < 0 or address > cart.records:
            raise BadBlock(f"cannot write at {address} of {self.name}: end of data is {cart.records}",
                           volume=self.name, address=address)
        bs = cart.label.block_size
        if cart.bytes_at(address) + n * bs > self.capabilities.capacity:
            raise VolumeFull(f"end of medium: {n} block(s) at {address} do not fit on {self.name}",
                             volume=self.name)
        self._move_to(address)
        cart.truncate(address)
        view = memoryview(data).cast("B")
        for i in range(n):
            self._motion.feed(bs)
            cart.append(DATA, [view[i * bs:(i + 1) * bs]])
        self._pos = cart.records
        self._counts["blocks_written"] += n
        self._counts["bytes_written"] += n * bs
        if not self._warned and self._past_early_warning():
            self._warned = True
            self._counts["early_warnings"] += 1
        return address

    def write_filemark(self, count: int = 1) -> int:
        """Write ``count`` filemarks at the end of data; like a real drive this flushes the buffer
        synchronously, so the next write starts with a back-hitch."""
        cart = self._require()
        if count < 1:
            raise BadBlock(f"cannot write {count} filemarks", volume=self.name)
        self._move_to(cart.records)
        first = cart.append(FILEMARK, None, count)
        self._motion.flush()
        self._pos = cart.records
        self._counts["filemarks_written"] += count
        return first

    def sync(self) -> None:
        """Flush the drive buffer to tape and fsync the cartridge file."""
        cart = self._require()
        self._motion.flush()
        cart.sync()

    def erase(self) -> None:
        """Rewind and erase the whole tape (label kept) so it can be reused as scratch."""
        cart = self._require()
        self.rewind()
        cart.truncate(0)
        cart.sync()
        self._warned = False

    def close(self) -> None:
        if self._cart is not None:
            self.unload()

    def __repr__(self) -> str:
        return f"<TapeDrive {self.drive_name} holding {self.name}>"

    # -- statistics ------------------------------------------------------------------------

    @property
    def speed(self) -> float:
        """The speed (bytes/s) the drive matched to its writer, or streams at when reading."""
        return self._motion.speed

    def statistics(self) -> TapeStatistics:
        """A snapshot of the drive's counters."""
        m = self._motion.stats
        return TapeStatistics(**self._counts, positioning_seconds=self._positioning_s,
                              backhitches=m.backhitches, backhitch_seconds=m.backhitch_seconds,
                              writer_wait_seconds=m.writer_wait_seconds)
