"""Write-once optical volumes, grouped in families and addressed by descriptors (seed 003).

A family is a numbered series of write-once volumes ("platters"). Data is written only by
appending: :meth:`OpticalFamily.put` stores an object and returns the descriptor that finds it
again, (family, volume number, byte offset, length). An update never touches the old place: it
is written anew and gets a new descriptor, and the old bytes become dead. Dead space on a
volume is never reclaimed; a whole volume whose data is all dead can be expired. When a volume
fills up, writing continues at the start of the next volume of the family, and an object that
does not fit continues there too (its descriptor names where it starts).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipevault.clock import SYSTEM, Clock
from pipevault.media._blockfile import BlockFileVolume, write_header
from pipevault.media._volume import BlockData, Capabilities, VolumeLabel
from pipevault.media.errors import (
    BadBlock,
    EndOfData,
    LibraryError,
    MediaCorrupt,
    WriteOnceViolation,
)

OPTICAL_MEDIA_TYPE = "optical"
SECTOR_SIZE = 2048
_FAMILY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class OpticalVolume(BlockFileVolume):
    """A write-once, random-read volume: blocks are appended once and never overwritten or erased."""

    media_type = OPTICAL_MEDIA_TYPE

    def _make_capabilities(self, label: VolumeLabel) -> Capabilities:
        return Capabilities(medium="optical", random_read=True, append_only=True, write_once=True,
                            sequential=False, filemarks=False, removable=True,
                            block_size=label.block_size, capacity=label.capacity)

    def _check_rewrite(self, address: int) -> None:
        raise WriteOnceViolation(f"block {address} of write-once volume {self.name} is already written; "
                                 f"the next free block is {self.status().end_of_data}",
                                 volume=self.name, address=address)

    def erase(self) -> None:
        """Always refused: write-once space is never erased (expire the whole volume instead)."""
        raise WriteOnceViolation(f"write-once volume {self.name} cannot be erased", volume=self.name)


@dataclass(frozen=True, order=True)
class Descriptor:
    """Where an object lies in a family: the volume it starts on, the byte offset there, its length.

    ``str(d)`` gives ``family:volume:offset:length``, which :meth:`parse` reads back; the
    catalog stores either form.
    """

    family: str
    volume: int
    offset: int
    length: int

    def __str__(self) -> str:
        return f"{self.family}:{self.volume}:{self.offset}:{self.length}"

    @classmethod
    def parse(cls, text: str) -> Descriptor:
        """Read a descriptor written by ``str()``.

        Raises:
            BadBlock: the text is not ``family:volume:offset:length`` with non-negative numbers.
        """
        parts = text.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]):
            raise BadBlock(f"{text!r} is not a descriptor (family:volume:offset:length)")
        return cls(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))


@dataclass(frozen=True)
class FamilyVolume:
    """One volume of a family as its ledger sees it."""

    sequence: int
    name: str
    used_bytes: int
    live_bytes: int
    capacity: int
    expired: bool


class OpticalFamily:
    """The volumes of one family in ``directory``, and the descriptors that address their data.

    A ledger (``<family>.ledger.json``, replaced atomically) keeps each volume's live bytes
    and which volumes were expired; volume files carry their own labels. Not thread-safe: one
    owner (the HSM daemon or the mover) writes a family.

    Args:
        directory: where the volume files live.
        family: family name (letters, digits, ``_-``).
        volume_capacity: bytes of data one volume holds (rounded down to whole blocks).
        block_size: the write unit; objects are padded to whole blocks (a 2 KiB sector by default).
        clock: source of creation times in labels.
    """

    def __init__(self, directory: Path, family: str, *, volume_capacity: int,
                 block_size: int = SECTOR_SIZE, clock: Clock = SYSTEM) -> None:
        if not _FAMILY.match(family):
            raise LibraryError(f"{family!r} is not a valid family name")
        if volume_capacity < block_size:
            raise BadBlock(f"a volume of {volume_capacity} bytes cannot hold one {block_size}-byte block")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.family = family
        self.block_size = block_size
        self.volume_capacity = volume_capacity - volume_capacity % block_size
        self._clock = clock
        self._open: dict[int, OpticalVolume] = {}
        self._live: dict[int, int] = {}
        self._expired: set[int] = set()
        ledger = self._ledger_path()
        if ledger.exists():
            try:
                state = json.loads(ledger.read_text())
                self._live = {int(k): int(v) for k, v in state["live"].items()}
                self._expired = {int(v) for v in state["expired"]}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise MediaCorrupt(f"ledger {ledger} of family {family} is unreadable: {exc}",
                                   family=family) from exc
        for seq in self._sequences_on_disk():
            self._live.setdefault(seq, 0)

    def _ledger_path(self) -> Path:
        return self.directory / f"{self.family}.ledger.json"

    def _save(self) -> None:
        tmp = self._ledger_path().with_suffix(".tmp")
        tmp.write_text(json.dumps({"live": {str(k): v for k, v in sorted(self._live.items())},
                                   "expired": sorted(self._expired)}))
        os.replace(tmp, self._ledger_path())

    def volume_name(self, sequence: int) -> str:
        """Name of volume ``sequence`` of this family."""
        return f"{self.family}-{sequence:04d}"

    def _path(self, sequence: int) -> Path:
        return self.directory / f"{self.volume_name(sequence)}.pvo"

    def _sequences_on_disk(self) -> list[int]:
        prefix = f"{self.family}-"
        return sorted(int(p.stem[len(prefix):]) for p in self.directory.glob(f"{prefix}[0-9]*.pvo"))

    def volume(self, sequence: int) -> OpticalVolume:
        """Open volume ``sequence`` (kept open until :meth:`close`).

        Raises:
            EndOfData: the family has no such volume, or it was expired.
        """
        vol = self._open.get(sequence)
        if vol is not None:
            return vol
        if sequence in self._expired or not self._path(sequence).exists():
            state = "was expired" if sequence in self._expired else "does not exist"
            raise EndOfData(f"volume {sequence} of family {self.family} {state}", family=self.family)
        vol = OpticalVolume(self._path(sequence), expected_name=self.volume_name(sequence))
        self._open[sequence] = vol
        return vol

    def _new_volume(self, sequence: int) -> OpticalVolume:
        label = VolumeLabel(name=self.volume_name(sequence), media_type=OPTICAL_MEDIA_TYPE,
                            block_size=self.block_size, capacity=self.volume_capacity, family=self.family,
                            sequence=sequence, created=self._clock.now())
        write_header(self._path(sequence), label)
        self._live.setdefault(sequence, 0)
        return self.volume(sequence)

    def _writable(self) -> OpticalVolume:
        """The volume appends go to: the last one while it has room, else a new one."""
        sequences = self._sequences_on_disk()
        last = sequences[-1] if sequences else 0
        if last and last not in self._expired and self.volume(last).status().free_bytes > 0:
            return self.volume(last)
        return self._new_volume(last + 1)

    def put(self, data: BlockData, *, sync: bool = True) -> Descriptor:
        """Store ``data`` after everything written so far; returns its descriptor.

        The data is padded with zeros to whole blocks; the padding is never reused. With
        ``sync`` (the default) the descriptor is returned only once the data is durable.

        Raises:
            BadBlock: ``data`` is empty.
        """
        view = memoryview(data).cast("B")
        if not len(view):
            raise BadBlock("an empty object has no place on a volume")
        bs = self.block_size
        padded = len(view) + (-len(view)) % bs
        start: Descriptor | None = None
        done = 0
        touched: list[OpticalVolume] = []
        while done < padded:
            vol = self._writable()
            room = vol.status().free_bytes
            take = min(room, padded - done)
            piece = view[done:done + take]
            if len(piece) < take:
                piece = memoryview(bytes(piece) + bytes(take - len(piece)))
            address = vol.append(piece)
            seq = vol.label.sequence
            if start is None:
                start = Descriptor(self.family, seq, address * bs, len(view))
            self._live[seq] += max(0, min(done + take, len(view)) - done)
            done += take
            touched.append(vol)
        if sync:
            for vol in touched:
                vol.sync()
        self._save()
        assert start is not None
        return start

    def _pieces(self, desc: Descriptor) -> list[tuple[int, int, int]]:
        """(volume, offset, length) of each piece of ``desc``'s data, in order."""
        if desc.family != self.family:
            raise BadBlock(f"descriptor {desc} belongs to family {desc.family}, not {self.family}")
        pieces = []
        seq, offset, left = desc.volume, desc.offset, desc.length
        while left > 0:
            end = self.volume(seq).status().used_bytes
            if offset >= end:
                raise MediaCorrupt(f"descriptor {desc} points past the data of volume {seq}",
                                   family=self.family)
            take = min(left, end - offset)
            pieces.append((seq, offset, take))
            seq, offset, left = seq + 1, 0, left - take
        return pieces

    def get(self, desc: Descriptor) -> bytes:
        """The object ``desc`` describes, exactly as stored.

        Raises:
            EndOfData: a volume it lies on does not exist or was expired.
            MediaCorrupt: the data fails its checksum or the descriptor points past the data.
        """
        return b"".join(self.volume(seq).read_at(off, n) for seq, off, n in self._pieces(desc))

    def release(self, desc: Descriptor) -> None:
        """Mark ``desc``'s bytes dead (deleted or superseded). The space is not reused."""
        for seq, _, n in self._pieces(desc):
            self._live[seq] = max(0, self._live.get(seq, 0) - n)
        self._save()

    def update(self, old: Descriptor, data: BlockData) -> Descriptor:
        """Write the new version of ``old``'s object to a new place; ``old``'s bytes become dead."""
        new = self.put(data)
        self.release(old)
        return new

    def expire_volume(self, sequence: int) -> None:
        """Expire a whole volume whose data is all dead, so the medium can be discarded.

        Raises:
            WriteOnceViolation: live data remains on it (write-once space is freed only by
                expiring whole volumes, never partly), or it is the volume being filled.
        """
        vol = self.volume(sequence)
        live = self._live.get(sequence, 0)
        if live:
            raise WriteOnceViolation(f"volume {vol.name} still holds {live} live bytes; write-once space "
                                     "is freed only when a whole volume's data has expired", volume=vol.name)
        if vol.status().free_bytes and sequence == self._sequences_on_disk()[-1]:
            raise WriteOnceViolation(f"volume {vol.name} is still being filled", volume=vol.name)
        vol.close()
        del self._open[sequence]
        self._expired.add(sequence)
        self._save()

    def volumes(self) -> list[FamilyVolume]:
        """Every volume of the family, in sequence order, with its used and live bytes."""
        out = []
        for seq in self._sequences_on_disk():
            expired = seq in self._expired
            used = 0 if expired else self.volume(seq).status().used_bytes
            out.append(FamilyVolume(seq, self.volume_name(seq), used, self._live.get(seq, 0),
                                    self.volume_capacity, expired))
        return out

    def close(self) -> None:
        """Sync and close every open volume."""
        for vol in self._open.values():
            vol.close()
        self._open.clear()

