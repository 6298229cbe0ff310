"""The scanner: reads any sequence of superblocks, many sessions interleaved.

It routes each superblock to its session by the header alone (dropping foreign ones unread
when asked to), verifies it, and yields every session's records in order, with damage
reports where superblocks are unreadable, missing, duplicated or conflicting. This is the
basis of catalog rebuild (``decode=False``) and of demultiplexing restore.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from pipevault.format._codecs import Buffer
from pipevault.format._events import Damage, Event
from pipevault.format._reader import SessionReader
from pipevault.format._superblock import HEADER_LEN, MAGIC, SESSION_ID_AT, peek_header, sole_data, verify
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
        views: deliver untransformed chunks as views of the superblocks they lie in, never
            copied (see :class:`SessionReader`): the caller keeps every block fed unchanged
            until it is done with the events of the chunks in it.
        defer: deliver compressed chunks of at least this many plaintext bytes stored, for
            the caller to check and decode (see :class:`SessionReader`); 0: never.
    """

    def __init__(self, *, key: Keys = None, sessions: Collection[uuid.UUID] | None = None,
                 decode: bool = True, want: Callable[[uuid.UUID, int], bool] | None = None,
                 views: bool = False, defer: int = 0) -> None:
        self._views = views
        self._defer = defer
        self._key = key
        self._sessions = frozenset(sessions) if sessions is not None else None
        self._decode = decode
        self._want = want
        self.readers: dict[uuid.UUID, SessionReader] = {}
        self._by_raw: dict[bytes, SessionReader] = {}  # the same readers by raw session id
        self.blocks = 0
        self.skipped = 0

    def _reader(self, sid: uuid.UUID) -> SessionReader:
        reader = self.readers.get(sid)
        if reader is None:
            key = self._key.get(sid) if isinstance(self._key, Mapping) else self._key
            want = self._want
            reader = self.readers[sid] = self._by_raw[sid.bytes] = SessionReader(
                sid, key=key, decode=self._decode, views=self._views, defer=self._defer,
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
        if sole_data is not None:
            # Most superblocks of a large object are one piece of a chunk: recognised and
            # verified in one compiled call; anything else takes the general path below.
            sole = sole_data(view)
            if sole is not None:
                known = self._by_raw.get(sole[0])
                if known is not None and known.continue_data(sole, view):
                    return []
            else:
                # Most superblocks of compressed objects hold the end of one chunk and the
                # start of the next: read in one compiled call where the reader can.
                known = self._by_raw.get(bytes(view[SESSION_ID_AT:SESSION_ID_AT + 16]))
                if known is not None:
                    events = known.walk(view)
                    if events is not None:
                        return events
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
        reader = self.readers.get(header.session_id)
        return (reader if reader is not None else self._reader(header.session_id)).feed(header, payload)

    def finish(self) -> list[Event]:
        """The media ended: report every session left incomplete."""
        out: list[Event] = []
        for reader in self.readers.values():
            out += reader.finish()
        return out


def scan(blocks: Iterable[Buffer | Damage], *, key: Keys = None, sessions: Collection[uuid.UUID] | None = None,
         decode: bool = True, want: Callable[[uuid.UUID, int], bool] | None = None,
         views: bool = False, defer: int = 0) -> Iterator[Event]:
    """Scan ``blocks`` (superblocks, or damage notes from :func:`split`) and yield all events.

    The options are those of :class:`Scanner`; the errors those of :meth:`Scanner.feed`.
    """
    scanner = Scanner(key=key, sessions=sessions, decode=decode, want=want, views=views, defer=defer)
    for block in blocks:
        if isinstance(block, Damage):
            yield block
        else:
            yield from scanner.feed(block)
    yield from scanner.finish()


def split(data: Buffer, size: int | None = None) -> Iterator[memoryview | Damage]:
    """Cut a byte stream (a disk volume, a tape image) into superblocks, resynchronising after damage.

    Superblocks are taken at steps of their size. Where no superblock begins, the next one is
    searched first at the same alignment (the next 64 positions), then at any offset, and a
    :class:`Damage` names the bytes skipped. Views share ``data``'s memory.

    Work is linear in the stream's length whatever it holds: candidates found while
    resynchronising are checksummed only within a budget of the stream's own size; past it a
    well-formed header is enough (the scanner still verifies every superblock it is given).
    """
    view = memoryview(data).cast("B")
    budget = [len(view) + (64 << 20)]
    pos = 0
    while pos < len(view):
        step = _step_at(view, pos, size)
        if step:
            yield view[pos:pos + step]
            pos += step
            continue
        nxt = _resync(view, pos, size, budget)
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


def _valid_at(view: memoryview, pos: int, budget: list[int]) -> bool:
    """Whether a superblock starts at ``pos``: verified while the budget lasts, else by its header."""
    try:
        header = peek_header(view[pos:pos + HEADER_LEN])
    except FormatError:
        return False
    cost = min(header.payload_len, len(view) - pos)
    if budget[0] < cost:
        return True
    budget[0] -= cost
    try:
        verify(view[pos:pos + header.size], header)
    except (UnknownVersionError, UnsupportedFeatureError):
        return True
    except FormatError:
        return False
    return True


def _resync(view: memoryview, pos: int, size: int | None, budget: list[int]) -> int:
    """The offset of the next superblock after ``pos`` (``len(view)`` if none)."""
    if size:
        for cand in range(pos + size, min(len(view), pos + 65 * size), size):
            if view[cand:cand + len(MAGIC)] == MAGIC and _valid_at(view, cand, budget):
                return cand
    base = pos + 1
    window = 1 << 20
    while base < len(view):
        # Search in windows so a damaged multi-gigabyte volume is never copied whole; the
        # pattern (magic, major version 1, a legal size) weeds out stray magics in C.
        chunk = bytes(view[base:base + window + HEADER_LEN])
        for match in _CANDIDATE.finditer(chunk, 0, window):
            if _valid_at(view, base + match.start(), budget):
                return base + match.start()
        base += window
    return len(view)


_CANDIDATE = re.compile(re.escape(MAGIC) + rb"\x01.{3}[\x10-\x18]", re.DOTALL)
