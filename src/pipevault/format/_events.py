"""What a reader yields: each session's records in order, and damage reports.

Data in :class:`ChunkRead` may be a view of the superblock buffer passed to the ``feed`` call
that produced the event (an untransformed chunk that lies in one superblock): it stays valid
until the caller reuses that buffer. Chunks joined from several superblocks or decoded get
buffers of their own. A scanner made with ``views=True`` copies no untransformed chunk: it
hands out views of every superblock the chunk lies in (:attr:`ChunkRead.pieces`), valid while
the caller leaves those buffers unchanged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pipevault.format._codecs import Buffer
from pipevault.format._fields import ArchiveFooter, ArchiveHeader, Options, SessionFooter, SessionHeader
from pipevault.format._records import ChunkHeader, Resume


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """A session header was read."""

    session_id: uuid.UUID
    seq: int
    header: SessionHeader


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """A session footer was read: the session is complete on these media."""

    session_id: uuid.UUID
    seq: int
    footer: SessionFooter


@dataclass(frozen=True, slots=True)
class ObjectStarted:
    """An archive header was read; ``seq`` is the superblock it starts in."""

    session_id: uuid.UUID
    seq: int
    header: ArchiveHeader


@dataclass(frozen=True, slots=True)
class ObjectEnded:
    """An archive footer was read."""

    session_id: uuid.UUID
    seq: int
    footer: ArchiveFooter


@dataclass(frozen=True, slots=True)
class ChunkRead:
    """One complete, verified chunk.

    ``data`` is the plaintext when decoding was asked for and the object is wanted, else
    None; it is also None for a duplicate chunk, whose ``header.ref`` names the chunk
    (object index, chunk seq) holding the same bytes. ``pieces`` is the plaintext as the
    buffers it lies in, in order: ``(data,)`` when it is one buffer, and from a reader with
    ``views=True`` the views of an untransformed chunk's superblocks, with ``data`` None
    (``header.plain_len`` bytes in all); empty when nothing was decoded.

    ``stored``: from a reader with ``defer``, the chunk was not checked nor decoded:
    ``pieces`` are its stored bytes (``header.stored_len`` in all, views of superblocks as
    above, or a buffer of the reader's), ``data`` is None, and ``decode_stored(header,
    pieces)`` checks and decodes them, raising IntegrityError where the reader would have
    reported integrity damage.
    """

    session_id: uuid.UUID
    first_seq: int
    last_seq: int
    header: ChunkHeader
    data: Buffer | None
    pieces: tuple[Buffer, ...] = ()
    stored: bool = False


@dataclass(frozen=True, slots=True)
class OptionsRead:
    """Processing instructions for the session, an object or a chunk."""

    session_id: uuid.UUID
    seq: int
    options: Options


@dataclass(frozen=True, slots=True)
class Resumed:
    """The session was restarted after a failure at this point."""

    session_id: uuid.UUID
    seq: int
    resume: Resume


@dataclass(frozen=True, slots=True)
class Affected:
    """Object bytes that cannot be delivered.

    ``object_index`` None means "objects after the last one seen, how many is unknown";
    ``name`` is None when the object's header was lost; ``end`` None means to the object's end.
    """

    object_index: int | None
    name: bytes | None
    start: int
    end: int | None

    def describe(self) -> str:
        """One line for a report."""
        if self.object_index is None:
            return "any later objects of the session"
        label = f" ({self.name.decode(errors='replace')})" if self.name else ""
        who = f"object {self.object_index}{label}"
        return f"{who} bytes {self.start}..{'end' if self.end is None else self.end}"


@dataclass(frozen=True, slots=True)
class Damage:
    """Something could not be read; the reader went on at the next valid superblock.

    ``kind``: ``unreadable`` (bad superblock), ``lost`` (missing superblocks), ``conflict``
    (two different superblocks with one seq), ``structure`` (bad records in a valid
    superblock), ``integrity`` (a chunk failed its tag or hash), ``truncated`` (the media end
    inside the session). ``first_seq``/``last_seq`` bound the superblocks involved, when known.
    """

    session_id: uuid.UUID | None
    kind: str
    message: str
    first_seq: int | None = None
    last_seq: int | None = None
    affected: tuple[Affected, ...] = ()

    def describe(self) -> str:
        """A multi-line human report."""
        where = f"session {self.session_id}" if self.session_id else "unknown session"
        seqs = "" if self.first_seq is None else f" superblocks {self.first_seq}..{self.last_seq}"
        lines = [f"{self.kind}: {where}{seqs}: {self.message}"]
        lines += [f"  affected: {a.describe()}" for a in self.affected]
        return "\n".join(lines)


Event = (SessionStarted | SessionEnded | ObjectStarted | ObjectEnded | ChunkRead | OptionsRead | Resumed
         | Damage)
