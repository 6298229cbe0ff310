"""The scanner: reads any sequence of superblocks, many sessions interleaved.

It routes each superblock to its session by the header alone (dropping foreign ones unread
when asked to), verifies it, and yields every session's records in order, with damage
reports where superblocks are unreadable, missing, duplicated or conflicting. This is the
basis of catalog rebuild (``decode=False``) and of demultiplexing restore.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from pipevault.format._codecs import Buffer
from pipevault.format._events import Damage, Event
from pipevault.format._reader import SessionReader
from pipevault.format._superblock import HEADER_LEN, MAGIC, peek_header, verify
from pipevault.format.errors import FormatError, UnknownVersionError, UnsupportedFeatureError

Keys = bytes | Mapping[uuid.UUID, bytes] | None


class Scanner:
    """Push reader over superblocks of any sessions. Not thread-safe.

    Args:
        key: the master key of every session, or a mapping session id -> key.
        sessions: read only these sessions; superblocks of others are dropped after their
            header is read (no checksum, no parsing).
        decode: deliver chunk plaintext (False: structure only, for catalog rebuild).
        want: ``want(session_id, object_index)`` says whose chunk data to decode.
    """

    def __init__(self, *, key: Keys = None, sessions: Collection[uuid.UUID] | None = None,
                 decode: bool = True, want: Callable[[uuid.UUID, int], bool] | None = None) -> None:
        self._key = key
        self._sessions = frozenset(sessions) if sessions is not None else None
        self._decode = decode
        self._want = want
        self.readers: dict[uuid.UUID, SessionReader] = {}
        self.blocks = 0
        self.skipped = 0

    def _reader(self, sid: uuid.UUID) -> SessionReader:
        reader = self.readers.get(sid)
        if reader is None:
            key = self._key.get(sid) if isinstance(self._key, Mapping) else self._key
            want = self._want
            reader = self.readers[sid] = SessionReader(
                sid, key=key, decode=self._decode,
                want=(lambda index: want(sid, index)) if want is not None else None)
        return reader

    def feed(self, block: Buffer) -> list[Event]:
        """Read one superblock; returns the events it completes (see ``_events`` for buffer lifetime).

        Raises:
            UnknownVersionError, UnsupportedFeatureError: an intact superblock of a newer format.
            WrongKeyError, KeyRequiredError: decoding an encrypted session without its key.
        """
        self.blocks += 1
        view = memoryview(block).cast("B")
        try:
            header = peek_header(view)
        except FormatError as exc:
            return [Damage(None, "unreadable", f"superblock #{self.blocks} of this scan: {exc.message}")]
        if self._sessions is not None and header.session_id not in self._sessions:
            self.skipped += 1
            return []
        try:
            header, payload = verify(view, header)
        except (UnknownVersionError, UnsupportedFeatureError):
            raise
        except FormatError as exc:
            return [Damage(None, "unreadable", f"superblock #{self.blocks} of this scan (it claims session "
                           f"{header.session_id} seq {header.seq}): {exc.message}")]
        return self._reader(header.session_id).feed(header, payload)

    def finish(self) -> list[Event]:
        """The media ended: report every session left incomplete."""
        out: list[Event] = []
        for reader in self.readers.values():
            out += reader.finish()
        return out


def scan(blocks: Iterable[Buffer | Damage], *, key: Keys = None, sessions: Collection[uuid.UUID] | None = None,
         decode: bool = True, want: Callable[[uuid.UUID, int], bool] | None = None) -> Iterator[Event]:
    """Scan ``blocks`` (superblocks, or damage notes from :func:`split`) and yield all events.

    The options are those of :class:`Scanner`; the errors those of :meth:`Scanner.feed`.
    """
    scanner = Scanner(key=key, sessions=sessions, decode=decode, want=want)
    for block in blocks:
        if isinstance(block, Damage):
            yield block
        else:
            yield from scanner.feed(block)
    yield from scanner.finish()


def split(data: Buffer, size: int | None = None) -> Iterator[memoryview | Damage]:
    """Cut a byte stream (a disk volume, a tape image) into superblocks, resynchronising after damage.

    Superblocks are taken at steps of their size. Where no superblock begins, the next one is
    searched first at the same alignment, then at any offset, and a :class:`Damage` names the
    bytes skipped. Views share ``data``'s memory.
    """
    view = memoryview(data).cast("B")
    pos = 0
    while pos < len(view):
        step = _step_at(view, pos, size)
        if step:
            yield view[pos:pos + step]
            pos += step
            continue
        nxt = _resync(view, pos, size)
        yield Damage(None, "unreadable", f"bytes {pos}..{nxt} of the stream hold no valid superblock")
        pos = nxt


def _step_at(view: memoryview, pos: int, size: int | None) -> int:
    if view[pos:pos + len(MAGIC)] != MAGIC:
        return 0
    try:
        header = peek_header(view[pos:pos + HEADER_LEN])
    except FormatError:
        return 0
    return size or header.size


def _valid_at(view: memoryview, pos: int) -> bool:
    try:
        verify(view[pos:pos + peek_header(view[pos:pos + HEADER_LEN]).size])
    except (UnknownVersionError, UnsupportedFeatureError):
        return True
    except FormatError:
        return False
    return True


def _resync(view: memoryview, pos: int, size: int | None) -> int:
    """The offset of the next verifiable superblock after ``pos`` (``len(view)`` if none)."""
    if size:
        for cand in range(pos + size, len(view), size):
            if view[cand:cand + len(MAGIC)] == MAGIC and _valid_at(view, cand):
                return cand
    cand = pos + 1
    window = 1 << 20
    while cand < len(view):
        # Search in windows so a damaged multi-gigabyte volume is never copied whole.
        found = bytes(view[cand:cand + window + len(MAGIC) - 1]).find(MAGIC)
        if found < 0:
            cand += window
            continue
        cand += found
        if _valid_at(view, cand):
            return cand
        cand += 1
    return len(view)
