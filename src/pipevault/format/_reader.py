"""The per-session reader: turns one session's superblocks into records, in order.

:class:`SessionReader` is fed the verified superblocks of one session in media order. It
checks sequence numbers (dropping duplicates, reporting gaps and conflicts), joins continued
records and chunk pieces, decodes chunks, and after damage resynchronises at the first record
that says where it belongs, reporting exactly which object bytes were lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipevault.format._chunk import ChunkAssembly, ChunkDecoder
from pipevault.format._codecs import Buffer
from pipevault.format._crypto import SessionKeys
from pipevault.format._events import (
    Affected,
    ChunkRead,
    Damage,
    Event,
    ObjectEnded,
    ObjectStarted,
    OptionsRead,
    Resumed,
    SessionEnded,
    SessionStarted,
)
from pipevault.format._fields import ArchiveFooter, ArchiveHeader, Options, SessionFooter, SessionHeader
from pipevault.format._records import (
    ALL,
    CHUNK_HEADER_TABLES,
    CONTINUABLE,
    FLAG_CONTINUES,
    SKIPPABLE,
    TAG,
    TAG_LEN,
    ChunkFlags,
    ChunkFooter,
    ChunkHeader,
    Encryption,
    RecordType,
    Resume,
    compiled_record_spans,
    new_frozen,
    read_record_header,
    record_spans,
)
from pipevault.format._superblock import SoleData, SuperblockFlags, SuperblockHeader
from pipevault.format.errors import (
    FormatError,
    IntegrityError,
    KeyRequiredError,
    UnsupportedFeatureError,
    WrongKeyError,
)

Want = Callable[[int], bool]
# Plain ints: compared once per record on the hot path.
_DATA, _CONTINUATION, _RESUME = int(RecordType.DATA), int(RecordType.CONTINUATION), int(RecordType.RESUME)
_CHUNK_HEADER, _CHUNK_FOOTER = int(RecordType.CHUNK_HEADER), int(RecordType.CHUNK_FOOTER)
_ARCHIVE_HEADER, _ARCHIVE_FOOTER = int(RecordType.ARCHIVE_HEADER), int(RecordType.ARCHIVE_FOOTER)
_SESSION_HEADER, _SESSION_FOOTER = int(RecordType.SESSION_HEADER), int(RecordType.SESSION_FOOTER)
_OPTIONS = int(RecordType.OPTIONS)
_DUPLICATE = int(ChunkFlags.DUPLICATE)
_KNOWN = frozenset(int(t) for t in RecordType)
_RECENT = 256
_spans = compiled_record_spans
walk_chunks: Callable[..., tuple[Any, ...] | None] | None
try:
    # Superblocks of compressed chunks' records read in one call (_accel_walk.c); the Python
    # code below is its specification, and reads whatever it declines.
    from pipevault.format._accel import walk_chunks
except ImportError:
    walk_chunks = None
_WALK_TYPES = (ChunkHeader, ChunkFooter, ChunkRead, *CHUNK_HEADER_TABLES)
MAX_RECORD = 64 << 20  # a metadata record joined from continuations (names, xattrs) never needs more


@dataclass
class _Gap:
    first_seq: int
    last_seq: int
    kind: str
    message: str
    obj_index: int | None      # object open when the damage began
    obj_name: bytes | None
    start: int                 # first object byte not delivered
    next_object: int           # first object index not yet seen


class SessionReader:
    """Reads one session. Not thread-safe.

    Args:
        session_id: the session.
        key: the 32-byte master key (needed only to decode encrypted chunks).
        decode: deliver chunk plaintext; False reads structure only (catalog rebuild).
        want: object indexes whose data to decode (default all); other chunks are checked
            structurally and delivered with ``data=None``.
        views: deliver untransformed chunks as views of their superblocks, never copied
            (:attr:`ChunkRead.pieces`); the caller then keeps every superblock fed unchanged
            until it is done with the events of the chunks lying in it.
        defer: compressed chunks of at least this many plaintext bytes whose content hash
            covers the stored bytes (and not encrypted) are delivered stored, unchecked
            (``ChunkRead.stored``), for the caller to check and decode with
            :func:`decode_stored`, e.g. in parallel; 0: never.
    """

    def __init__(self, session_id: uuid.UUID, *, key: bytes | None = None, decode: bool = True,
                 want: Want | None = None, views: bool = False, defer: int = 0) -> None:
        self.session_id = session_id
        self._views = views
        self._defer = defer
        # The compiled walk delivers chunks as a views reader that decodes everything does.
        self._walks = walk_chunks is not None and views and decode and want is None
        self._raw_id = session_id.bytes
        self._key = key
        self._decode = decode
        self._want = want
        self._decoder: ChunkDecoder | None = None
        self.expected: int | None = None
        self.header: SessionHeader | None = None
        self.footer: SessionFooter | None = None
        self.last_seq = -1
        self._recent: dict[int, int] = {}
        self._cont: tuple[int, bytearray, int] | None = None
        self._record_seq = -1  # superblock where the record being decoded began
        self.obj_index: int | None = None
        self.obj: ArchiveHeader | None = None
        self.obj_offset = 0
        self.next_chunk = 0
        self.next_object = 0
        self.chunk: ChunkHeader | None = None
        self._chunk_first_seq = 0
        self._asm: ChunkAssembly | None = None  # the open chunk's bytes, when they are to be decoded
        self._got = 0
        self._gap: _Gap | None = None
        self._delivered = (-1, -1)
        self._started = -1
        self._ended = -1
        self.seq = -1

    # -- superblocks ----------------------------------------------------------------------

    def feed(self, header: SuperblockHeader, payload: memoryview) -> list[Event]:
        """Process one verified superblock of this session; returns the events it completes.

        Chunk data in the events may be views of ``payload``: valid while the caller leaves
        that buffer unchanged.

        Raises:
            WrongKeyError, KeyRequiredError: decoding an encrypted session without its key.
            UnsupportedFeatureError: a record type or field this reader does not know.
        """
        out: list[Event] = []
        seq = header.seq
        if self.expected is None:
            if seq != 0:
                self._begin_gap(0, seq - 1, "lost", "the session's first superblocks were not seen", out)
        elif seq < self.expected:
            if self._recent.get(seq) == header.checksum:
                return out
            if not header.flags & SuperblockFlags.RESUMED:
                out.append(Damage(self.session_id, "conflict", f"a second, different superblock {seq} "
                                  "was found and ignored", seq, seq))
                return out
        elif seq > self.expected:
            self._begin_gap(self.expected, seq - 1, "lost", f"superblocks {self.expected}..{seq - 1} are "
                            "missing or unreadable", out)
        self._advance(seq, header.checksum)
        try:
            self._records(payload, out)
        except (UnsupportedFeatureError, WrongKeyError, KeyRequiredError):
            raise
        except FormatError as exc:
            self._begin_gap(seq, seq, "structure", str(exc.message), out)
        if self._asm is not None and not self._views:
            # A chunk whose data all lies in this superblock but whose footer comes in the
            # next: its data must not stay a view of a buffer the caller may reuse now.
            self._asm.detach()
        return out

    def _advance(self, seq: int, checksum: int) -> None:
        """Superblock ``seq`` (with ``checksum``) is the one being read."""
        self.expected = seq + 1
        self.seq = self._record_seq = seq
        if seq > self.last_seq:
            self.last_seq = seq
        self._recent[seq] = checksum
        self._recent.pop(seq - _RECENT, None)

    def continue_data(self, sole: SoleData, block: memoryview) -> bool:
        """Read a verified superblock that is one DATA record, if it simply continues the open chunk.

        ``sole`` is what ``_accel.sole_data(block)`` found. Returns False, having changed
        nothing, unless the superblock is the next expected one, no damage or continued record
        is pending and the piece continues the open chunk within its stored length; then it
        has done exactly what :meth:`feed` would (which would return no event) and returns True.
        """
        _sid, seq, checksum, object_index, chunk_seq, object_offset, at, start, end = sole
        chunk = self.chunk
        if (seq != self.expected or self._gap is not None or self._cont is not None or chunk is None
                or at != self._got or at + end - start > chunk.stored_len or object_index != chunk.object_index
                or chunk_seq != chunk.chunk_seq or object_offset != chunk.object_offset):
            return False
        self._advance(seq, checksum)
        if self._asm is not None:
            self._asm.add(block[start:end], at)
            if not self._views:
                self._asm.detach()
        self._got = at + end - start
        return True

    def walk(self, block: memoryview) -> list[Event] | None:
        """Read a superblock of compressed chunks' records in one compiled call, if it is one.

        Returns what :meth:`feed` would return having done exactly what it would, or None,
        having changed nothing, when ``_accel.walk_chunks`` declines the superblock (anything
        but an intact, expected superblock of DATA, CHUNK_HEADER and CHUNK_FOOTER records of
        chunks it decodes as this reader would, without damage): then :meth:`feed` reads it.
        """
        if not self._walks or walk_chunks is None or self._gap is not None or self._cont is not None:
            return None
        chunk, asm = self.chunk, self._asm
        held = asm.views_held() if asm is not None else None
        if chunk is not None and held is None:
            return None
        index, seq = self._delivered
        walked = walk_chunks(block, self._raw_id, -1 if self.expected is None else self.expected, chunk,
                             self._got, held, -1 if self.obj_index is None else self.obj_index, self.next_chunk,
                             self.obj_offset, index, seq, self._chunk_first_seq, self._defer, self.session_id,
                             _WALK_TYPES)
        if walked is None:
            return None
        (seq, checksum, opened, self._got, pieces, self.next_chunk, self.obj_offset, index, chunk_seq,
         self._chunk_first_seq, read) = walked
        events: list[Event] = read
        self._delivered = (index, chunk_seq)
        self._advance(seq, checksum)
        if opened is None:
            self._asm = None
        elif opened is chunk and held is not None:
            held += pieces
        else:
            self._asm = ChunkAssembly.holding(opened, pieces)
        self.chunk = opened
        return events

    def finish(self) -> list[Event]:
        """The media ended: report what is incomplete."""
        out: list[Event] = []
        if self._gap is not None:
            self._resolve(None, None, out)
        elif self.footer is None:
            affected: tuple[Affected, ...] = (Affected(None, None, 0, None),)
            if self.obj_index is not None:
                name = self.obj.name if self.obj else None
                affected = (Affected(self.obj_index, name, self.obj_offset, None), *affected)
            out.append(Damage(self.session_id, "truncated", "the media end before the session footer",
                              self.last_seq + 1 if self.last_seq >= 0 else None, None, affected))
        return out

    # -- records --------------------------------------------------------------------------

    def _records(self, payload: memoryview, out: list[Event]) -> None:
        first = True
        spans, stop = (_spans or record_spans)(payload)
        for rtype, flags, start, pos in spans:
            body = payload[start:pos]
            if rtype == _DATA and not flags and self._cont is None:
                self._data(body)  # the common case first: one per chunk per superblock
            elif rtype == _CONTINUATION:
                if not first:
                    raise FormatError("a continuation record that does not open its superblock")
                if self._cont is None:
                    continue  # its beginning was lost in a gap already reported
                self._cont[1].extend(body)
                if len(self._cont[1]) > MAX_RECORD:
                    raise FormatError(f"a continued record grows past {MAX_RECORD} bytes")
                if flags & FLAG_CONTINUES:
                    return
                rtype, joined, started = self._cont
                self._cont = None
                self._record_seq = started
                self._record(rtype, memoryview(joined), out)
                self._record_seq = self.seq
            elif rtype == _RESUME:
                self._cont = None  # a restart abandons a record cut by the failure
                self._record(rtype, body, out)
            elif self._cont is not None:
                raise FormatError(f"record {self._cont[0]:#x} was to be continued but superblock "
                                  f"{self.seq} does not continue it")
            elif flags & FLAG_CONTINUES:
                if rtype not in CONTINUABLE and rtype & SKIPPABLE == 0:
                    raise FormatError(f"record type {rtype:#04x} may not be continued")
                if pos != len(payload):
                    raise FormatError("a continued record that does not end its superblock")
                self._cont = (rtype, bytearray(body), self.seq)
            else:
                self._record(rtype, body, out)
            first = False
        if stop < len(payload):
            read_record_header(payload, stop)  # raises: the walk stopped at a header it refuses
            raise FormatError(f"record at payload offset {stop} refused")

    def _record(self, rtype: int, body: memoryview, out: list[Event]) -> None:
        if rtype == _CHUNK_HEADER:
            self._chunk_header(ChunkHeader.unpack(body), out)
        elif rtype == _CHUNK_FOOTER:
            self._chunk_footer(ChunkFooter.unpack(body), out)
        elif rtype == _DATA:
            self._data(body)
        elif rtype == _ARCHIVE_HEADER:
            self._archive_header(ArchiveHeader.unpack(body), out)
        elif rtype == _ARCHIVE_FOOTER:
            self._archive_footer(ArchiveFooter.unpack(body), out)
        elif rtype == _OPTIONS:
            out.append(OptionsRead(self.session_id, self._record_seq, Options.unpack(body)))
        elif rtype == _SESSION_HEADER:
            self._session_header(SessionHeader.unpack(body), out)
        elif rtype == _SESSION_FOOTER:
            footer = SessionFooter.unpack(body)
            if self._gap is not None:
                self._resolve(footer.objects, 0, out)
            elif self.chunk is not None or self.obj_index is not None:
                raise FormatError("session footer inside an open object")
            self.footer = footer
            out.append(SessionEnded(self.session_id, self.seq, footer))
        elif rtype == _RESUME:
            self._resume(Resume.unpack(body), out)
        # Any other type has the skippable bit (read_record_header refused the rest): ignored.

    def _session_header(self, header: SessionHeader, out: list[Event]) -> None:
        if self.header is not None or self._record_seq != 0:
            raise FormatError("a session header after the start of the session")
        self.header = header
        if self._decode and header.key_check:
            keys = SessionKeys.for_reading(self._key, self.session_id, header.key_check)
            self._decoder = ChunkDecoder(self.session_id, keys)
        out.append(SessionStarted(self.session_id, self._record_seq, header))

    def _archive_header(self, header: ArchiveHeader, out: list[Event]) -> None:
        if self._gap is not None:
            self._resolve(header.object_index, 0, out)
        elif self.obj_index is not None or header.object_index != self.next_object:
            raise FormatError(f"archive header {header.object_index} while expecting object "
                              f"{self.next_object} (open: {self.obj_index})")
        self._open(header.object_index, header, 0, 0)
        if header.object_index > self._started:
            self._started = header.object_index
            out.append(new_frozen(ObjectStarted, self.session_id, self._record_seq, header))

    def _open(self, index: int, header: ArchiveHeader | None, chunk_seq: int, offset: int) -> None:
        self.obj_index, self.obj = index, header
        self.next_chunk, self.obj_offset = chunk_seq, offset
        self.next_object = index + 1
        self.chunk = None

    def _archive_footer(self, footer: ArchiveFooter, out: list[Event]) -> None:
        if self._gap is not None:
            # Everything of this object up to its end that the gap swallowed is lost.
            self._resolve(footer.object_index, footer.plain_bytes, out)
            self.next_object = footer.object_index + 1
        elif footer.object_index != self.obj_index or self.chunk is not None:
            raise FormatError(f"archive footer {footer.object_index} does not close the open object")
        self.obj_index, self.obj, self.chunk = None, None, None
        if footer.object_index > self._ended:
            self._ended = footer.object_index
            out.append(new_frozen(ObjectEnded, self.session_id, self.seq, footer))

    def _resume(self, resume: Resume, out: list[Event]) -> None:
        self._cont = None
        self.chunk = None
        index = None if resume.object_index == ALL else resume.object_index
        if self._gap is not None:
            self._resolve(index, resume.object_offset, out)
        if index is None:
            self.obj_index, self.obj = None, None
        else:
            keep = self.obj if self.obj is not None and self.obj.object_index == index else None
            self._open(index, keep, resume.chunk_seq, resume.object_offset)
        out.append(Resumed(self.session_id, self.seq, resume))

    def _chunk_header(self, header: ChunkHeader, out: list[Event]) -> None:
        if self._gap is not None:
            self._resolve(header.object_index, header.object_offset, out)
            keep = self.obj if self.obj_index == header.object_index else None
            self._open(header.object_index, keep, header.chunk_seq, header.object_offset)
        if self.chunk is not None or self.obj_index != header.object_index or (
                header.chunk_seq, header.object_offset) != (self.next_chunk, self.obj_offset):
            raise FormatError(f"chunk {header.object_index}/{header.chunk_seq}@{header.object_offset} is "
                              f"out of place (expected {self.obj_index}/{self.next_chunk}@{self.obj_offset})")
        self.chunk = header
        self._chunk_first_seq = self.seq
        self._got = 0
        wanted = self._wanted(header) and not int(header.flags) & _DUPLICATE
        self._asm = ChunkAssembly(header, self._decoder, self._views,
                                  0 < self._defer <= header.plain_len) if wanted else None

    def _data(self, body: memoryview) -> None:
        if self._gap is not None:
            return  # the chunk it belongs to is part of the reported damage
        if len(body) < TAG_LEN:
            raise FormatError("data record too short for its tag header")
        tag = TAG.unpack_from(body, 0)
        chunk = self.chunk
        if chunk is None or tag != (chunk.object_index, chunk.chunk_seq, chunk.object_offset, self._got):
            raise FormatError(f"data piece {tag[0]}/{tag[1]}+{tag[3]} does not continue the open chunk")
        data = body[TAG_LEN:]
        if self._got + len(data) > chunk.stored_len:
            raise FormatError(f"chunk {chunk.object_index}/{chunk.chunk_seq} has more data than announced")
        if self._asm is not None:
            self._asm.add(data, self._got)
        self._got += len(data)

    def _wanted(self, chunk: ChunkHeader) -> bool:
        return self._decode and (self._want is None or self._want(chunk.object_index))

    def _chunk_footer(self, footer: ChunkFooter, out: list[Event]) -> None:
        if self._gap is not None:
            return
        chunk = self.chunk
        if chunk is None or (footer.object_index, footer.chunk_seq) != (chunk.object_index, chunk.chunk_seq):
            raise FormatError(f"chunk footer {footer.object_index}/{footer.chunk_seq} closes no open chunk")
        if self._got != chunk.stored_len:
            raise FormatError(f"chunk {chunk.object_index}/{chunk.chunk_seq} has {self._got} of "
                              f"{chunk.stored_len} stored bytes")
        self.chunk = None
        self.next_chunk += 1
        self.obj_offset += chunk.plain_len
        data: Buffer | None = None
        pieces: tuple[Buffer, ...] = ()
        asm, self._asm = self._asm, None
        stored = asm.take_stored(footer) if asm is not None and asm.defers else None
        if stored is not None:
            pieces = stored
        elif asm is not None:
            try:
                got = asm.finish(footer, self._decoder_for)
                if isinstance(got, tuple):
                    pieces = got
                else:
                    data, pieces = got, (got,)
            except IntegrityError as exc:
                out.append(Damage(self.session_id, "integrity", exc.message, self._chunk_first_seq, self.seq,
                                  (Affected(chunk.object_index, self.obj.name if self.obj else None,
                                            chunk.object_offset, chunk.object_offset + chunk.plain_len),)))
                return
        key = (chunk.object_index, chunk.chunk_seq)
        if key > self._delivered:
            self._delivered = key
            out.append(new_frozen(ChunkRead, self.session_id, self._chunk_first_seq, self.seq, chunk, data, pieces,
                                  stored is not None))

    def _decoder_for(self, chunk: ChunkHeader) -> ChunkDecoder:
        if self._decoder is None:
            keys = None
            if chunk.encryption is Encryption.AES_256_GCM:
                # The session header was lost: the key cannot be checked, so a wrong key
                # shows up as integrity damage on each chunk.
                if self._key is None:
                    raise KeyRequiredError(f"session {self.session_id} is encrypted; no key was given")
                keys = SessionKeys.derive(self._key, self.session_id)
            self._decoder = ChunkDecoder(self.session_id, keys)
        return self._decoder

    # -- damage ---------------------------------------------------------------------------

    def _begin_gap(self, first: int, last: int, kind: str, message: str, out: list[Event]) -> None:
        if self._gap is not None:
            self._gap.last_seq = max(self._gap.last_seq, last)
            return
        name = self.obj.name if self.obj is not None else None
        self._gap = _Gap(first, last, kind, message, self.obj_index, name, self.obj_offset, self.next_object)
        self._cont = None
        self.chunk = None
        self._asm = None

    def _resolve(self, next_index: int | None, next_offset: int | None, out: list[Event]) -> None:
        """Close the open gap at the first intact position: object ``next_index``, byte ``next_offset``."""
        gap = self._gap
        assert gap is not None
        self._gap = None
        affected: list[Affected] = []
        if gap.obj_index is not None:
            end = next_offset if next_index == gap.obj_index else None
            if end is None or end > gap.start:
                affected.append(Affected(gap.obj_index, gap.obj_name, gap.start, end))
        lo = gap.obj_index + 1 if gap.obj_index is not None else gap.next_object
        if next_index is None:
            affected.append(Affected(None, None, 0, None))
        else:
            affected += [Affected(i, None, 0, None) for i in range(lo, next_index)]
            if next_index >= lo and next_index != gap.obj_index and next_offset:
                affected.append(Affected(next_index, None, 0, next_offset))
        out.append(Damage(self.session_id, gap.kind, gap.message, gap.first_seq, gap.last_seq,
                          tuple(affected)))
