"""Record headers and the fixed-layout records: chunk header and footer, data tag, resume.

These are the per-chunk structures on the hot path, so they are fixed ``struct`` layouts
(docs/format.md §3, §5, §9). Metadata records with field lists live in ``_fields``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum, IntFlag
from typing import Any, NamedTuple, TypeVar

from pipevault.format.errors import FormatError, TruncatedError, UnsupportedFeatureError

T = TypeVar("T")
RECORD_HEADER = struct.Struct("<BBHI")
RECORD_HEADER_LEN = RECORD_HEADER.size  # 8
SKIPPABLE = 0x80
ALL = 0xFFFFFFFF
MAX_CHUNK = 64 << 20


class RecordType(IntEnum):
    """Record types of format v1 (docs/format.md §3)."""

    SESSION_HEADER = 0x01
    SESSION_FOOTER = 0x02
    ARCHIVE_HEADER = 0x03
    ARCHIVE_FOOTER = 0x04
    CHUNK_HEADER = 0x05
    DATA = 0x06
    CHUNK_FOOTER = 0x07
    OPTIONS = 0x08
    CONTINUATION = 0x09
    RESUME = 0x0A


CONTINUABLE = frozenset({RecordType.SESSION_HEADER, RecordType.SESSION_FOOTER, RecordType.ARCHIVE_HEADER,
                         RecordType.ARCHIVE_FOOTER, RecordType.OPTIONS, RecordType.CONTINUATION})
_KNOWN = {int(t) for t in RecordType}
FLAG_CONTINUES = 1


class Compression(IntEnum):
    """Compression algorithm of a chunk."""

    NONE = 0
    LZ4 = 1
    ZSTD = 2


class Encryption(IntEnum):
    """Encryption of a chunk."""

    NONE = 0
    AES_256_GCM = 1


class DedupAlgo(IntEnum):
    """How a chunk's dedup hash was computed."""

    NONE = 0
    HMAC_SHA256 = 1  # read only: written before BLAKE3 (SHA-256 is 4x slower here)
    SHA256 = 2  # read only, as HMAC_SHA256
    BLAKE3 = 3  # unkeyed: only in sessions without keys
    KEYED_BLAKE3 = 4  # BLAKE3's keyed mode with the session's dedup key


class ChunkFlags(IntFlag):
    """Per-chunk flags."""

    NONE = 0
    RAW_FALLBACK = 1
    DUPLICATE = 2
    HAS_DEDUP_HASH = 4
    STORED_HASH = 8  # content_hash covers the stored bytes, and is absent under encryption (§5.1)


class RecordHeader(NamedTuple):
    """The 8-byte header in front of every record (a tuple: one is decoded per record read)."""

    type: int
    flags: int
    length: int

    @property
    def continues(self) -> bool:
        """The body goes on in a CONTINUATION record in the session's next superblock."""
        return bool(self.flags & FLAG_CONTINUES)


def read_record_header(payload: memoryview, pos: int) -> RecordHeader:
    """Decode the record header at ``payload[pos:]`` and check its body fits the payload.

    Raises:
        TruncatedError: the header or its body runs past the payload.
        FormatError: reserved bits set.
        UnsupportedFeatureError: an unknown type without the skippable bit.
    """
    if pos + RECORD_HEADER_LEN > len(payload):
        raise TruncatedError(f"record header at payload offset {pos} runs past the payload")
    rtype, flags, reserved, length = RECORD_HEADER.unpack_from(payload, pos)
    if reserved or flags & ~FLAG_CONTINUES:
        raise FormatError(f"record at payload offset {pos} has reserved bits set")
    if pos + RECORD_HEADER_LEN + length > len(payload):
        raise TruncatedError(f"record of {length} bytes at payload offset {pos} runs past the payload")
    if rtype not in _KNOWN and not rtype & SKIPPABLE:
        raise UnsupportedFeatureError(f"unknown record type {rtype:#04x}", record_type=rtype)
    return RecordHeader._make((rtype, flags, length))


Spans = list[tuple[int, int, int, int]]
"""``(type, flags, body start, body end)`` of each record of a payload, in order."""


def record_spans(payload: memoryview) -> tuple[Spans, int]:
    """The records of ``payload`` up to the first header :func:`read_record_header` would
    refuse (cut short, reserved bits, running past the payload, unknown and not skippable),
    and the offset where that header begins (``len(payload)`` when every record is sound).

    The specification of ``_accel.record_spans``, which the reader takes when it is built:
    the walk finds where each record lies, the reader decides what the records mean.
    """
    spans = []
    pos, end = 0, len(payload)
    unpack = RECORD_HEADER.unpack_from
    while pos + RECORD_HEADER_LEN <= end:
        rtype, flags, reserved, length = unpack(payload, pos)
        start = pos + RECORD_HEADER_LEN
        stop = start + length
        if reserved or flags & ~FLAG_CONTINUES or stop > end or (rtype not in _KNOWN and not rtype & SKIPPABLE):
            break
        spans.append((rtype, flags, start, stop))
        pos = stop
    return spans, pos


def _new_python(cls: type[T], /, *values: Any) -> T:
    return cls(*values)


_compiled_spans: Callable[[memoryview], tuple[Spans, int]] | None
_chunk_header: Callable[..., Any] | None
_chunk_footer: Callable[..., Any] | None
try:
    # Chunk headers and footers decoded in one call each (one of each per chunk read).
    from pipevault.format._accel import chunk_footer as _chunk_footer
    from pipevault.format._accel import chunk_header as _chunk_header
    from pipevault.format._accel import make as _make
    from pipevault.format._accel import record_spans as _compiled_spans
except ImportError:  # a source tree whose extension was not built: the Python code runs
    _compiled_spans = _chunk_header = _chunk_footer = None
    _make = _new_python
compiled_record_spans = _compiled_spans
"""``_accel.record_spans`` (None when not built)."""
new_frozen = _make
"""``new_frozen(cls, *values)``: ``cls(*values)`` for a frozen slotted dataclass without
``__post_init__``, every field given, made without running Python code when ``_accel`` is
built (events, encoded chunks and framed objects are made per object; a frozen ``__init__``
costs ~0.3 us a field)."""


_COMPRESSION = list(Compression)
_ENCRYPTION = list(Encryption)
_DEDUP = list(DedupAlgo)
CHUNK_FLAGS = [ChunkFlags(v) for v in range(16)]
"""``ChunkFlags`` of each int value: per-chunk code computes flags as ints (IntFlag operations
run Python code) and looks the member up here."""
CHUNK_HEADER_TABLES = (_COMPRESSION, _ENCRYPTION, _DEDUP, CHUNK_FLAGS)
"""The enum members of a chunk header's codes, as ``_accel.chunk_header`` takes them."""
_DUPLICATE = int(ChunkFlags.DUPLICATE)
CHUNK_HEADER = struct.Struct("<IIQIIBbBBB3x12s4x16s32s")
CHUNK_HEADER_LEN = CHUNK_HEADER.size  # 96
CONTENT_HASH_AT = 48  # offset of content_hash in the body
_REF = struct.Struct("<II4x")


class ChunkHeader(NamedTuple):
    """How one chunk was transformed and where its bytes belong (docs/format.md §5.1).

    For a DUPLICATE chunk, ``ref`` names the earlier chunk (object index, chunk seq) whose
    plaintext it repeats; it occupies the nonce field on media.
    """

    object_index: int
    chunk_seq: int
    object_offset: int
    plain_len: int
    stored_len: int
    compression: Compression = Compression.NONE
    level: int = 0
    encryption: Encryption = Encryption.NONE
    flags: ChunkFlags = ChunkFlags.NONE
    dedup_algo: DedupAlgo = DedupAlgo.NONE
    nonce: bytes = bytes(12)
    content_hash: bytes = bytes(16)
    dedup_hash: bytes = bytes(32)
    ref: tuple[int, int] | None = None

    def pack(self) -> bytes:
        """The 96-byte body."""
        nonce = _REF.pack(*self.ref) if self.ref is not None else self.nonce
        return CHUNK_HEADER.pack(self.object_index, self.chunk_seq, self.object_offset, self.plain_len,
                                  self.stored_len, self.compression, self.level, self.encryption,
                                  self.flags, self.dedup_algo, nonce, self.content_hash, self.dedup_hash)

    @classmethod
    def unpack(cls, body: memoryview) -> ChunkHeader:
        """Decode a body; longer bodies (later minor versions) are accepted, extra bytes ignored.

        Raises:
            TruncatedError: shorter than 96 bytes.
            UnsupportedFeatureError: unknown compression, encryption or dedup algorithm.
            FormatError: inconsistent lengths or flags.
        """
        if _chunk_header is not None:  # the sound case in one compiled call; the code below raises
            made = _chunk_header(body, cls, _COMPRESSION, _ENCRYPTION, _DEDUP, CHUNK_FLAGS)
            if made is not None:
                return made  # type: ignore[no-any-return]
        if len(body) < CHUNK_HEADER_LEN:
            raise TruncatedError(f"chunk header of {len(body)} bytes, need {CHUNK_HEADER_LEN}")
        (oi, cs, off, plain, stored, comp, level, enc, flags, dedup, nonce, chash,
         dhash) = CHUNK_HEADER.unpack_from(body, 0)
        try:
            compression, encryption, algo = _COMPRESSION[comp], _ENCRYPTION[enc], _DEDUP[dedup]
        except IndexError as exc:
            raise UnsupportedFeatureError(f"chunk {oi}/{cs} uses an unknown transform "
                                          f"(compression {comp}, encryption {enc}, dedup {dedup})") from exc
        if flags & ~15 or plain > MAX_CHUNK or stored > MAX_CHUNK + 64:
            raise FormatError(f"chunk {oi}/{cs} header out of range (flags {flags:#x}, "
                              f"lengths {plain}/{stored})")
        cflags = CHUNK_FLAGS[flags]
        ref = None
        if flags & _DUPLICATE:
            if stored:
                raise FormatError(f"duplicate chunk {oi}/{cs} claims {stored} stored bytes")
            ref = _REF.unpack_from(nonce, 0)
            nonce = bytes(12)
        return cls._make((oi, cs, off, plain, stored, compression, level, encryption, cflags, algo, nonce,
                          chash, dhash, ref))


CHUNK_FOOTER = struct.Struct("<III4x16s16s")
CHUNK_FOOTER_LEN = CHUNK_FOOTER.size  # 48


class ChunkFooter(NamedTuple):
    """Closes a chunk; carries the sealed content hash and GCM tag when encrypted (§5.3)."""

    object_index: int
    chunk_seq: int
    stored_len: int
    sealed_hash: bytes = bytes(16)
    tag: bytes = bytes(16)

    def pack(self) -> bytes:
        """The 48-byte body."""
        return CHUNK_FOOTER.pack(self.object_index, self.chunk_seq, self.stored_len, self.sealed_hash,
                                  self.tag)

    @classmethod
    def unpack(cls, body: memoryview) -> ChunkFooter:
        """Decode a body. Raises TruncatedError when shorter than 48 bytes."""
        if _chunk_footer is not None:
            made = _chunk_footer(body, cls)
            if made is not None:
                return made  # type: ignore[no-any-return]
        if len(body) < CHUNK_FOOTER_LEN:
            raise TruncatedError(f"chunk footer of {len(body)} bytes, need {CHUNK_FOOTER_LEN}")
        return cls._make(CHUNK_FOOTER.unpack_from(body, 0))


TAG = struct.Struct("<IIQI4x")
TAG_LEN = TAG.size  # 24


class Tag(NamedTuple):
    """The tag header at the start of every DATA record (offset and block tagging, §5.2)."""

    object_index: int
    chunk_seq: int
    object_offset: int
    stored_offset: int

    @classmethod
    def unpack(cls, body: memoryview) -> Tag:
        """Decode the first 24 bytes of a DATA body. Raises TruncatedError when shorter."""
        if len(body) < TAG_LEN:
            raise TruncatedError(f"data record of {len(body)} bytes has no room for its tag header")
        return cls(*TAG.unpack_from(body, 0))


_RESUME = struct.Struct("<QIIQq")
RESUME_LEN = _RESUME.size  # 32


class Resume(NamedTuple):
    """Marks where a restarted session continues (docs/format.md §9)."""

    after_seq: int
    object_index: int
    chunk_seq: int
    object_offset: int
    resumed_ns: int

    def pack(self) -> bytes:
        """The 32-byte body."""
        return _RESUME.pack(self.after_seq, self.object_index, self.chunk_seq, self.object_offset,
                            self.resumed_ns)

    @classmethod
    def unpack(cls, body: memoryview) -> Resume:
        """Decode a body. Raises TruncatedError when shorter than 32 bytes."""
        if len(body) < RESUME_LEN:
            raise TruncatedError(f"resume record of {len(body)} bytes, need {RESUME_LEN}")
        return cls(*_RESUME.unpack_from(body, 0))
