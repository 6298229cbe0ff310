"""The session writer: packs records into superblocks (push API, no I/O).

The caller feeds objects and their data; complete superblocks accumulate until
:meth:`SessionWriter.take` hands them out for writing to a medium.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable
from typing import Any

import xxhash

from pipevault.clock import SYSTEM, Clock
from pipevault.format._chunk import ChunkEncoder, EncodedChunk
from pipevault.format._codecs import Buffer, Selector, compress
from pipevault.format._crypto import SessionKeys
from pipevault.format._fields import (
    ArchiveFooter,
    ArchiveHeader,
    ObjectStatus,
    Options,
    SessionFooter,
    SessionHeader,
    SessionStatus,
    fields_record,
)
from pipevault.format._framed import COMPRESSION_NEEDS, FramedObject, records_of, required_by, unframe_chunk
from pipevault.format._records import (
    ALL,
    CHUNK_FLAGS,
    CHUNK_FOOTER,
    CHUNK_HEADER,
    CHUNK_HEADER_LEN,
    CONTENT_HASH_AT,
    FLAG_CONTINUES,
    RECORD_HEADER,
    RECORD_HEADER_LEN,
    TAG,
    TAG_LEN,
    ChunkFlags,
    ChunkFooter,
    ChunkHeader,
    Compression,
    RecordType,
    Resume,
)
from pipevault.format._restart import ResumePoint
from pipevault.format._superblock import (
    COMPILED,
    DEFAULT_SIZE,
    HEADER_LEN,
    Optional,
    Required,
    SuperblockFlags,
    data_spans,
    pack_header,
    pack_plain,
    seal,
    size_log2_of,
)
from pipevault.format.errors import LimitError, WriterStateError

Allocate = Callable[[int], memoryview]
DEFAULT_CHUNK = 1 << 20
_DUPLICATE, _HAS_DEDUP_HASH = int(ChunkFlags.DUPLICATE), int(ChunkFlags.HAS_DEDUP_HASH)
_RAW_FALLBACK, _STORED_HASH_FLAG = int(ChunkFlags.RAW_FALLBACK), int(ChunkFlags.STORED_HASH)
_STORED_HASH_REQUIRED = int(Required.STORED_HASH)
_NO_COMPRESSION = Compression.NONE
_NONCE, _NO_HASH, _NO_DEDUP_HASH = bytes(12), bytes(16), bytes(32)
DEDUP_INDEX_MAX = 1 << 20  # dedup hashes remembered per session (about 100 MB at most)
KEEP_POINTS = 4096  # resume points kept: a tape drive buffer holds far fewer superblocks
_NO_FLAGS = SuperblockFlags.NONE
_ARCHIVE_FOOTER = RecordType.ARCHIVE_FOOTER


def _allocate(size: int) -> memoryview:
    return memoryview(bytearray(size))


class SessionWriter:
    """Writes one session as a sequence of superblocks.

    Args:
        header: the session header (``size_log2`` and ``key_check`` are filled in here).
        session_id: the session's UUID (default: a new random one).
        size: superblock size of the target medium (power of two, 64 KiB..16 MiB).
        key: 32-byte master key to encrypt chunks with AES-256-GCM, or None.
        selector: compression choice per chunk (default zstd-1 with an incompressibility probe).
        dedup: compute a dedup hash per chunk; ``discard_duplicates`` also replaces a chunk
            whose hash was already written in this session by a reference to it.
        chunk_size: how :meth:`write` cuts object data (default 1 MiB).
        allocate: returns a writable buffer of ``size`` bytes for each new superblock (a pool
            buffer, for example); it may hold old data, the writer zeroes what it does not fill.
        clock: time source for the footer and resume times.
        resume: continue a session after a failure instead of starting one (see :meth:`resume`).
        key_check: without ``key``, the key check of chunks encrypted elsewhere (added with
            :meth:`add_chunk`), written in the session header so a reader can tell a wrong key.
        stored_hash: encode chunks as format 1.1 (content hash of the stored bytes, see
            :class:`ChunkEncoder`); False writes them as format 1.0 did.

    Not thread-safe: one writer per session, fed by one thread. Encoding may run elsewhere
    (:attr:`encoder` is thread-safe); hand the results to :meth:`add_chunk` in order.
    """

    def __init__(self, header: SessionHeader | None = None, *, session_id: uuid.UUID | None = None,
                 size: int = DEFAULT_SIZE, key: bytes | None = None, selector: Selector | None = None,
                 dedup: bool = False, discard_duplicates: bool = False, chunk_size: int = DEFAULT_CHUNK,
                 allocate: Allocate = _allocate, clock: Clock = SYSTEM,
                 resume: ResumePoint | None = None, key_check: bytes = b"", stored_hash: bool = True) -> None:
        self.session_id = resume.session_id if resume else (session_id or uuid.uuid4())
        self.size_log2 = size_log2_of(resume.size if resume else size)
        self.size = 1 << self.size_log2
        if not 1 <= chunk_size <= 64 << 20:
            raise LimitError(f"chunk size {chunk_size} is outside 1 byte..64 MiB")
        self.chunk_size = chunk_size
        self.keys = SessionKeys.derive(key, self.session_id) if key is not None else None
        # Chunks encrypted elsewhere (a server storing a client's chunks never holds the key)
        # still get the key check in the header, so a reader with a wrong key is told so.
        self.key_check = self.keys.key_check if self.keys else key_check
        self.encoder = ChunkEncoder(self.session_id, keys=self.keys, selector=selector,
                                    dedup=dedup or discard_duplicates, stored_hash=stored_hash,
                                    raw_repeats=discard_duplicates)
        self._plain_flags = int(ChunkFlags.STORED_HASH) if stored_hash else 0
        self.discard_duplicates = discard_duplicates
        self._allocate = allocate
        # What the compiled packer calls for each new superblock: the pool's allocate itself
        # (no Python frame of ours in between); it checks and slices the buffer as _new_buffer does.
        self._allocate_sized = functools.partial(allocate, self.size)
        self._clock = clock
        self._done: list[memoryview] = []
        self._buf: memoryview | None = None
        self._pos = HEADER_LEN
        self._spans: list[tuple[int, int]] = []  # stored bytes in the open superblock (not checksummed)
        self._held: list[tuple[memoryview, int, list[tuple[int, int]]]] | None = None
        self._sid = self.session_id.bytes
        self._flags = SuperblockFlags.NONE
        self._required = Required.AES_GCM if self.key_check else Required.NONE
        self._optional = Optional.DEDUP_HASH if (dedup or discard_duplicates) else Optional.NONE
        self._seen: dict[bytes, tuple[int, int]] = {}
        # The state at each of the last KEEP_POINTS seals, by seq modulo KEEP_POINTS (a ring:
        # no dict insert and delete per superblock); each entry starts with its seq.
        self._points: list[tuple[Any, ...] | None] = [None] * KEEP_POINTS
        self._zeros = memoryview(bytes(self.size))
        self._header_pending = False
        self._obj_first_seq = self._chunk_seq = self._offset = self._obj_stored = self._obj_dups = 0
        self._obj_refs: set[int] = set()
        # The other objects whose chunks the object last ended (end_object or put_object)
        # repeats, its duplicates' refs, ascending: a reader that restores it alone must read
        # those too.
        self.object_refs: tuple[int, ...] = ()
        self._object: ArchiveHeader | None = None
        self._closed = False
        self.header: SessionHeader | None = None  # as written; None for a resumed session
        if resume is None:
            self.seq = 0
            self.objects = self.plain_bytes = self.stored_bytes = self.errors = self.duplicates = 0
            key_check = self.key_check
            base = header or SessionHeader()
            created = base.created_ns or int(clock.now() * 1e9)
            self.header = dataclasses.replace(base, size_log2=self.size_log2, key_check=key_check,
                                              created_ns=created)
            self._put(RecordType.SESSION_HEADER, self.header.pack())
            self._flags |= SuperblockFlags.SESSION_START
        else:
            self._resume(resume)

    def _resume(self, point: ResumePoint) -> None:
        if point.key_check != self.key_check:
            raise WriterStateError(f"resuming session {point.session_id} needs the key it was started with")
        self.seq = point.next_seq
        self.objects, self.plain_bytes = point.objects, point.plain_bytes
        self.stored_bytes = point.stored_bytes
        self.errors, self.duplicates = point.errors, point.duplicates
        self._required |= point.required
        self._next_object = point.next_object_index
        rec = Resume(point.next_seq - 1, point.open_object.object_index if point.open_object else ALL,
                     point.chunk_seq, point.object_offset, int(self._clock.now() * 1e9))
        self._put(RecordType.RESUME, rec.pack())
        self._flags |= SuperblockFlags.RESUMED
        if point.open_object is not None:
            self._open(point.open_object, point.object_first_seq, point.chunk_seq, point.object_offset,
                       point.object_stored, point.object_duplicates)
            self._obj_refs.update(point.object_refs)

    # -- objects --------------------------------------------------------------------------

    _next_object = 0

    def begin_object(self, header: ArchiveHeader) -> int:
        """Open the next object; returns the object index assigned (``header``'s is replaced).

        Raises:
            WriterStateError: an object is already open or the session is closed.
        """
        self._check_open(want_object=False)
        index = self._next_object
        if header.object_index != index:  # callers that know the index save a copy per object
            header = dataclasses.replace(header, object_index=index)
        body = header.pack()
        self._reserve(len(body))
        self._open(header, self.seq, 0, 0, 0, 0)
        # A header continued over superblocks is not durable until its last piece is.
        self._header_pending = True
        self._put(RecordType.ARCHIVE_HEADER, body)
        self._header_pending = False
        return index

    def _open(self, header: ArchiveHeader, first_seq: int, chunk_seq: int, offset: int, stored: int,
              dups: int) -> None:
        self._object = header
        self._next_object = header.object_index + 1
        self._obj_first_seq, self._chunk_seq, self._offset = first_seq, chunk_seq, offset
        self._obj_stored, self._obj_dups = stored, dups
        self._obj_refs.clear()

    def write(self, data: Buffer) -> None:
        """Append object data, cut into chunks of ``chunk_size``; encodes in this thread.

        ``data`` is read before the call returns and not kept.
        """
        view = memoryview(data).cast("B")
        index = self._require_object().object_index
        plain = self.keys is None and not self.encoder.dedup
        # Compressed chunks hashed as they are copied too: the hash of format 1.1 covers the
        # stored bytes (without it, the plaintext's, computed by the encoder).
        packed = plain and bool(self._plain_flags) and pack_plain is not None
        for start in range(0, len(view), self.chunk_size):
            piece = view[start:start + self.chunk_size]
            choice = self.encoder.selector(piece)
            if plain and choice[0] is _NO_COMPRESSION:
                self._put_plain(index, piece)
            elif packed:
                self._put_compressed(index, piece, choice)
            else:
                self.add_chunk(self.encoder.encode(piece, index, self._chunk_seq, self._offset, choice))

    def _put_compressed(self, index: int, view: memoryview, choice: tuple[Compression, int]) -> None:
        """Compress a chunk and pack it with ``_accel.pack_plain`` (format 1.1, no key, no dedup):
        the records :meth:`add_chunk` writes for what the encoder makes of it."""
        comp, level = choice
        stored: Buffer = compress(comp, level, view)
        flags = self._plain_flags
        if len(stored) >= len(view):  # does not shrink: stored raw, as the encoder does
            comp, level, flags, stored = _NO_COMPRESSION, 0, flags | _RAW_FALLBACK, view
        self._put_plain(index, view, stored, comp, level, flags)

    def _put_plain(self, index: int, view: memoryview, stored: Buffer | None = None,
                   comp: Compression = Compression.NONE, level: int = 0, flags: int | None = None) -> None:
        """Pack a chunk hashed as stored: hash each piece right after copying it, while it is in cache.

        Hashing first would read the plaintext from memory twice, and hashing the whole chunk
        after copying it all reads back what the copies into other superblocks evicted. The
        superblocks the copy fills are sealed once the hash is in the chunk header (their
        checksum covers it). With the extension built, the whole chunk is packed in one
        compiled call (``_accel.pack_plain``, hashing in the copy's pass).

        ``stored`` (default: ``view`` itself) are the bytes stored, ``comp`` and ``level``
        their compression and ``flags`` the chunk flags (default: the writer's); the hash is
        that of ``stored``, so a compressed chunk takes this path only in format 1.1.
        """
        n = len(view)
        data = view if stored is None else memoryview(stored)
        m = len(data)
        cflags = self._plain_flags if flags is None else flags
        # The features the chunk needs (required_by of its header), before the superblocks it
        # lies in get their headers.
        need = COMPRESSION_NEEDS[comp] | (_STORED_HASH_REQUIRED if cflags & _STORED_HASH_FLAG else 0)
        if need & ~int(self._required):
            self._required |= need
        chunk_seq, offset = self._chunk_seq, self._offset
        if pack_plain is not None:
            # The records packed from plain ints (a ChunkHeader costs more than the struct);
            # the content hash is zero here, the packer writes it.
            header = CHUNK_HEADER.pack(index, chunk_seq, offset, n, m, comp, level, 0, cflags, 0, _NONCE, _NO_HASH,
                                       _NO_DEDUP_HASH)
            footer = CHUNK_FOOTER.pack(index, chunk_seq, m, _NO_HASH, _NO_HASH)
            self._pack(header, footer, data, True)
        else:
            self._put_plain_python(ChunkHeader(index, chunk_seq, offset, n, m, comp, level, flags=CHUNK_FLAGS[cflags]),
                                   data)
        self._chunk_seq = chunk_seq + 1
        self._offset = offset + n
        self._obj_stored += m
        self.plain_bytes += n
        self.stored_bytes += m

    def _pack(self, header: bytes, footer: bytes, data: memoryview, hashed: bool) -> None:
        """Append a chunk's records in one compiled call (``_accel.pack_plain``); with ``hashed``
        the content hash of ``data`` is computed as it is copied and written into the header."""
        assert pack_plain is not None
        # Every superblock sealed inside the chunk has the state from before it, as the
        # Python path records: only the seq differs (the packer puts it in).
        sealed, self._buf, self._pos = pack_plain(
            self._allocate_sized, self._buf, self._pos, self._flags, self._sid, self.seq, self.size_log2,
            self._required, self._optional, header, footer, data, self._done, self._points, self._point(), hashed)
        if sealed:
            self.seq += sealed
            self._flags = _NO_FLAGS
            # The compiled checksum finds the stored bytes itself: spans are only for the
            # Python one, which is not in use when this path is.
            self._spans = []

    def _put_plain_python(self, header: ChunkHeader, view: memoryview) -> None:
        """The specification of ``_accel.pack_plain``: records put one by one."""
        index, n = header.object_index, header.stored_len
        self._put(RecordType.CHUNK_HEADER, header.pack(), continuable=False)
        hbuf, at = self._current(), self._pos - CHUNK_HEADER_LEN + CONTENT_HASH_AT
        self._held = []
        try:
            hasher = xxhash.xxh3_128()
            self._put_data(index, self._chunk_seq, self._offset, view, hasher.update)
            hbuf[at:at + 16] = hasher.digest()
        finally:
            held, self._held = self._held, None
            for buf, payload_len, spans in held:
                seal(buf, payload_len, spans)
        self._put(RecordType.CHUNK_FOOTER, ChunkFooter(index, self._chunk_seq, n).pack(), continuable=False)

    def next_chunk(self) -> tuple[int, int, int]:
        """``(object_index, chunk_seq, object_offset)`` the next chunk must carry (for encoding elsewhere)."""
        return self._require_object().object_index, self._chunk_seq, self._offset

    def add_chunk(self, chunk: EncodedChunk) -> None:
        """Pack an encoded chunk of the open object; its stored bytes are copied before return.

        Raises:
            WriterStateError: no object is open, or the chunk's index, seq or offset is not next.
        """
        obj = self._require_object()
        h = chunk.header
        expected = (obj.object_index, self._chunk_seq, self._offset)
        if (h.object_index, h.chunk_seq, h.object_offset) != expected:
            raise WriterStateError(f"chunk {h.object_index}/{h.chunk_seq}@{h.object_offset} is out of order; "
                                   f"expected {obj.object_index}/{self._chunk_seq}@{self._offset}")
        flags = int(h.flags)  # int operations: IntFlag ones run Python code, several per chunk
        hashed = flags & _HAS_DEDUP_HASH and not flags & _DUPLICATE
        if self.discard_duplicates and hashed:
            if len(self._seen) >= DEDUP_INDEX_MAX:
                self._seen.clear()  # bounded memory: later duplicates of forgotten chunks are stored again
            first = self._seen.setdefault(h.dedup_hash, (h.object_index, h.chunk_seq))
            if first != (h.object_index, h.chunk_seq):
                chunk = self.encoder.duplicate(h.object_index, h.chunk_seq, h.object_offset, h, first)
                h = chunk.header
                flags = int(h.flags)
        if flags & _DUPLICATE:
            self._optional |= Optional.DUPLICATES
            if h.ref is not None and h.ref[0] != h.object_index:
                self._obj_refs.add(h.ref[0])
        need = required_by(h)
        if need & ~int(self._required):
            self._required |= need
        if pack_plain is not None:
            self._pack(h.pack(), chunk.footer.pack(), memoryview(chunk.stored).cast("B"), False)
        else:
            self._put(RecordType.CHUNK_HEADER, h.pack(), continuable=False)
            self._put_data(h.object_index, h.chunk_seq, h.object_offset, memoryview(chunk.stored).cast("B"))
            self._put(RecordType.CHUNK_FOOTER, chunk.footer.pack(), continuable=False)
        self._chunk_seq += 1
        self._offset += h.plain_len
        self._obj_stored += h.stored_len
        if flags & _DUPLICATE:
            self.duplicates += 1
            self._obj_dups += 1
        self.plain_bytes += h.plain_len
        self.stored_bytes += h.stored_len

    def options(self, items: dict[str, bytes], *, chunk: bool = False) -> None:
        """Write an options record for the open object (its next chunk with ``chunk``), else the session.

        The record precedes what it applies to and names its scope itself.
        """
        self._check_open()
        obj = self._object.object_index if self._object else ALL
        seq = self._chunk_seq if chunk and self._object else ALL
        self._put(RecordType.OPTIONS, Options(tuple(items.items()), obj, seq).pack())

    def end_object(self, status: int = ObjectStatus.COMPLETE) -> ArchiveFooter:
        """Close the open object; returns its footer (totals and first/last superblock)."""
        obj = self._require_object()
        self._reserve(64)  # a footer body is under 64 bytes: it starts and ends in one superblock
        footer = ArchiveFooter(obj.object_index, status, self._offset, self._obj_stored, self._chunk_seq,
                               self._obj_first_seq, self.seq, self._obj_dups)
        self._put(RecordType.ARCHIVE_FOOTER, footer.pack())
        self.objects += 1
        self.errors += status != ObjectStatus.COMPLETE
        self._object = None
        self.object_refs = tuple(sorted(self._obj_refs))
        return footer

    def put_object(self, framed: FramedObject, status: int = ObjectStatus.COMPLETE) -> ArchiveFooter:
        """Write a whole object framed ahead (see :mod:`._framed`) and its footer.

        The records are copied in one move into the current superblock, or into a fresh one
        when they do not fit what is left (a framed object is never continued); one larger
        than a superblock's payload, or a duplicate to discard, takes the record-by-record
        path. Returns the footer, as :meth:`end_object` does.

        Raises:
            WriterStateError: an object is open, the session is closed, or ``framed`` does not
                carry the next object index.
        """
        self._check_open(want_object=False)
        index = framed.object_index
        if index != self._next_object:
            raise WriterStateError(f"framed object {index} is out of order; expected {self._next_object}")
        records = memoryview(framed.records).cast("B")
        need = len(records) + RECORD_HEADER_LEN + 64  # the footer body is under 64 bytes
        dup = (self.discard_duplicates and framed.dedup_hash is not None
               and (framed.dedup_hash in self._seen or len(self._seen) >= DEDUP_INDEX_MAX))
        if dup or need > self.size - HEADER_LEN:
            return self._put_records(framed, status)
        if self._buf is not None and self._pos + need > self.size:
            self._seal()
        buf = self._current()
        buf[self._pos:self._pos + len(records)] = records
        if not COMPILED:
            # The checksum leaves out stored bytes (docs/format.md §2): the Python checksum needs
            # to know where they landed; the compiled one finds them itself.
            self._spans += data_spans(buf, self._pos, self._pos + len(records))
        self._pos += len(records)
        if self.discard_duplicates and framed.dedup_hash is not None:
            self._seen[framed.dedup_hash] = (index, 0)
        if framed.required & ~int(self._required):
            self._required |= framed.required
        self._next_object = index + 1
        self.object_refs = ()  # framed whole: a duplicate takes the record-by-record path
        # Made without __init__ (a frozen dataclass's costs as much as the rest of this call).
        footer = fields_record(ArchiveFooter, {
            "object_index": index, "status": status, "plain_bytes": framed.plain_len,
            "stored_bytes": framed.stored_len, "chunks": framed.chunks, "first_seq": self.seq,
            "last_seq": self.seq, "duplicates": 0})
        self._put(_ARCHIVE_FOOTER, footer.pack())
        self.objects += 1
        self.errors += status != ObjectStatus.COMPLETE
        self.plain_bytes += framed.plain_len
        self.stored_bytes += framed.stored_len
        return footer

    def _put_records(self, framed: FramedObject, status: int) -> ArchiveFooter:
        """``put_object`` record by record: begin, options, the chunk, end."""
        chunk: list[memoryview] = []
        for rtype, body in records_of(framed):
            if rtype == RecordType.ARCHIVE_HEADER:
                self.begin_object(ArchiveHeader.unpack(body))
            elif rtype == RecordType.OPTIONS:
                opts = Options.unpack(body)
                self.options(dict(opts.items), chunk=opts.chunk_seq != ALL)
            else:
                chunk.append(body)
                if rtype == RecordType.CHUNK_FOOTER:
                    head, *data, foot = chunk
                    self.add_chunk(unframe_chunk(head, data[0] if data else memoryview(b""), foot))
                    chunk = []
        return self.end_object(status)

    def close(self, status: int = SessionStatus.COMPLETED) -> SessionFooter:
        """Write the session footer and seal the last superblock; an open object is aborted."""
        self._check_open()
        if self._object is not None:
            self.end_object(ObjectStatus.ABORTED)
            status = max(status, SessionStatus.FAILED)
        self._reserve(96)  # a session footer body is under 96 bytes
        footer = SessionFooter(status, self.objects, self.plain_bytes, self.stored_bytes, 0, self.seq,
                               int(self._clock.now() * 1e9), self.errors, self.duplicates)
        self._put(RecordType.SESSION_FOOTER, footer.pack())
        self._flags |= SuperblockFlags.SESSION_END
        self._seal()
        self._closed = True
        return footer

    def flush(self) -> None:
        """Seal the current superblock now, even if not full (a checkpoint before a sync)."""
        if self._buf is not None:
            self._seal()

    def resume_point(self, durable_seq: int) -> ResumePoint:
        """Where to continue if superblock ``durable_seq`` is the last one the medium keeps.

        The same answer :func:`~pipevault.format.resume_point` computes from the media,
        without reading them back; kept for the last 4096 superblocks sealed.

        Raises:
            WriterStateError: that superblock was not sealed, or is too old.
        """
        state = self._points[durable_seq % KEEP_POINTS] if durable_seq >= 0 else None
        if state is None or state[0] != durable_seq:
            raise WriterStateError(f"no resume point for superblock {durable_seq} of session "
                                   f"{self.session_id} (sealed: up to {self.seq - 1})")
        (_seq, required, objects, plain, stored, errors, dups, next_object, obj, first_seq, chunk_seq, offset,
         obj_stored, obj_dups, obj_refs) = state
        return ResumePoint(
            session_id=self.session_id, size=self.size, key_check=self.key_check,
            required=required, next_seq=durable_seq + 1, objects=objects, plain_bytes=plain,
            stored_bytes=stored, errors=errors, duplicates=dups, next_object_index=next_object,
            open_object=obj, object_first_seq=first_seq, chunk_seq=chunk_seq, object_offset=offset,
            object_stored=obj_stored, object_duplicates=obj_dups, object_refs=obj_refs)

    def _point(self) -> tuple[Any, ...]:
        """The writer's state at the seal of superblock ``seq``, kept raw: a ResumePoint is
        built only when asked for."""
        obj = None if self._header_pending else self._object
        if obj is None:
            return (self.seq, self._required, self.objects, self.plain_bytes, self.stored_bytes, self.errors,
                    self.duplicates, self._next_object - self._header_pending, None, 0, 0, 0, 0, 0, ())
        return (self.seq, self._required, self.objects, self.plain_bytes, self.stored_bytes, self.errors,
                self.duplicates, self._next_object, obj, self._obj_first_seq, self._chunk_seq, self._offset,
                self._obj_stored, self._obj_dups, tuple(sorted(self._obj_refs)) if self._obj_refs else ())

    def take(self) -> list[memoryview]:
        """The superblocks completed since the last call, in order; the caller now owns them."""
        done, self._done = self._done, []
        return done

    # -- packing --------------------------------------------------------------------------

    def _require_object(self) -> ArchiveHeader:
        self._check_open()
        if self._object is None:
            raise WriterStateError("no object is open: call begin_object first")
        return self._object

    def _check_open(self, want_object: bool | None = None) -> None:
        if self._closed:
            raise WriterStateError(f"session {self.session_id} is closed")
        if want_object is False and self._object is not None:
            raise WriterStateError(f"object {self._object.object_index} is still open: call end_object first")

    def _current(self) -> memoryview:
        if self._buf is None:
            self._buf = self._new_buffer()
            self._pos = HEADER_LEN
        return self._buf

    def _new_buffer(self) -> memoryview:
        buf = self._allocate(self.size)
        if len(buf) < self.size:
            raise LimitError(f"allocated superblock buffer of {len(buf)} bytes, need {self.size}")
        return buf[:self.size]

    def _reserve(self, body_len: int) -> None:
        """Start a new superblock unless a record of ``body_len`` (capped at one superblock) fits."""
        need = RECORD_HEADER_LEN + min(body_len, self.size - HEADER_LEN - RECORD_HEADER_LEN)
        if self._buf is not None and self._pos + need > self.size:
            self._seal()

    def _put(self, rtype: RecordType, body: bytes, *, continuable: bool = True) -> None:
        """Append one record; split a continuable body over superblocks, never a record header."""
        view = memoryview(body)
        buf = self._current()
        if self._pos + RECORD_HEADER_LEN + (1 if continuable else len(view)) > self.size:
            self._seal()
            buf = self._current()
        while True:
            room = self.size - self._pos - RECORD_HEADER_LEN
            n = min(room, len(view))
            more = n < len(view)
            RECORD_HEADER.pack_into(buf, self._pos, rtype, FLAG_CONTINUES if more else 0, 0, n)
            start = self._pos + RECORD_HEADER_LEN
            buf[start:start + n] = view[:n]
            self._pos = start + n
            if not more:
                return
            view = view[n:]
            rtype = RecordType.CONTINUATION
            self._seal()
            buf = self._current()

    def _put_data(self, object_index: int, chunk_seq: int, object_offset: int, stored: memoryview,
                  copied: Callable[[memoryview], object] | None = None) -> None:
        """Append ``stored`` as DATA records over superblocks; ``copied`` sees each piece once copied."""
        done = 0
        while done < len(stored):
            buf = self._buf if self._buf is not None else self._current()
            room = self.size - self._pos - RECORD_HEADER_LEN - TAG_LEN
            if room <= 0:
                self._seal()
                continue
            n = min(room, len(stored) - done)
            RECORD_HEADER.pack_into(buf, self._pos, RecordType.DATA, 0, 0, TAG_LEN + n)
            TAG.pack_into(buf, self._pos + RECORD_HEADER_LEN, object_index, chunk_seq, object_offset, done)
            start = self._pos + RECORD_HEADER_LEN + TAG_LEN
            piece = stored[done:done + n]
            buf[start:start + n] = piece
            if copied is not None:
                copied(piece)
            self._pos = start + n
            self._spans.append((start, self._pos))
            done += n

    def _seal(self) -> None:
        buf = self._current()
        if self._pos < self.size:
            # Pool buffers are reused: the padding must not leak earlier contents.
            buf[self._pos:] = self._zeros[:self.size - self._pos]
        payload_len = self._pos - HEADER_LEN
        pack_header(buf, self._sid, self.seq, payload_len, self.size_log2, self._flags, self._required,
                    self._optional)
        if self._held is None:
            seal(buf, payload_len, self._spans)
        else:
            self._held.append((buf, payload_len, self._spans))
        self._spans = []
        self._sealed(buf)

    def _sealed(self, buf: memoryview) -> None:
        """``buf``, superblock ``seq``, is complete (its checksum may wait in ``_held``)."""
        self._done.append(buf)
        self._points[self.seq % KEEP_POINTS] = self._point()
        self._buf = None
        self._flags = _NO_FLAGS
        self.seq += 1
