"""Superblocks: the fixed-size unit written to media, with a 64-byte self-describing header.

Layout (docs/format.md §2)::

    0 magic(8) 8 major(1) 9 minor(1) 10 header_len(2) 12 size_log2(1) 13 flags(1) 14 rsv(2)
    16 required(4) 20 optional(4) 24 session_id(16) 40 seq(8) 48 payload_len(4) 52 rsv(4)
    56 checksum(8) = xxh3-64 of bytes [0, 56) followed by the payload without the stored bytes
                     of its DATA records (those are covered by their chunk's content hash or GCM tag)
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from enum import IntFlag
from typing import Any, NamedTuple

import xxhash

from pipevault.format._records import RECORD_HEADER, RECORD_HEADER_LEN, TAG_LEN, RecordType
from pipevault.format.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    TruncatedError,
    UnknownVersionError,
    UnsupportedFeatureError,
)

MAGIC = b"\x89PVSB\r\n\x1a"
VERSION_MAJOR = 1
VERSION_MINOR = 1
HEADER_LEN = 64
MIN_SIZE_LOG2 = 16
MAX_SIZE_LOG2 = 24
DEFAULT_SIZE_LOG2 = 18
DEFAULT_SIZE = 1 << DEFAULT_SIZE_LOG2
CHECKSUM_OFFSET = 56

_HEADER = struct.Struct("<8sBBHBBHII16sQII")  # all but the checksum: 56 bytes
SESSION_ID_AT = struct.calcsize("<8sBBHBBHII")  # 24: where the raw session id lies in a header
_CHECKSUM = struct.Struct("<Q")
_DATA = int(RecordType.DATA)
_TAGGED = RECORD_HEADER_LEN + TAG_LEN  # record header and tag header: covered by the checksum
Spans = Sequence[tuple[int, int]]
"""``(start, end)`` offsets in a superblock of the stored bytes the checksum leaves out, in order."""

SoleData = tuple[bytes, int, int, int, int, int, int, int, int]
_compiled: Callable[[memoryview, int, int], int] | None
sole_data: Callable[[memoryview], SoleData | None] | None
"""The compiled recogniser of a superblock that is one DATA record (``_accel.sole_data``)."""
PackPlain = Callable[[Callable[[], memoryview], memoryview | None, int, int, bytes, int, int, int, int, bytes, bytes,
                      memoryview, list[memoryview], list[Any], tuple[Any, ...], bool], tuple[int, memoryview, int]]
pack_plain: PackPlain | None
"""The compiled packer of a whole untransformed chunk (``_accel.pack_plain``; the specification
is ``SessionWriter._put_plain``'s Python path)."""
try:
    # The same checksum in one C call (``_accel.c``): the Python walk below is its specification.
    from pipevault.format._accel import checksum as _compiled
    from pipevault.format._accel import pack_plain, sole_data
except ImportError:  # a source tree whose extension was not built: the Python code runs
    _compiled = sole_data = pack_plain = None
COMPILED = _compiled is not None
"""Whether superblocks are checksummed by the compiled ``_accel`` module (tests insist on it)."""


class SuperblockFlags(IntFlag):
    """Hints in the header so a scan can find session boundaries without parsing payloads."""

    NONE = 0
    SESSION_START = 1
    SESSION_END = 2
    RESUMED = 4


class Required(IntFlag):
    """Features a reader must understand (docs/format.md §7)."""

    NONE = 0
    LZ4 = 1
    ZSTD = 2
    AES_GCM = 4
    STORED_HASH = 8  # chunks whose content hash covers their stored bytes (docs/format.md §5.1)


class Optional(IntFlag):
    """Features a reader may ignore."""

    NONE = 0
    DEDUP_HASH = 1
    DUPLICATES = 2


KNOWN_REQUIRED = Required.LZ4 | Required.ZSTD | Required.AES_GCM | Required.STORED_HASH
_KNOWN_REQUIRED = int(KNOWN_REQUIRED)


# Decoding a header happens for every superblock read: the flag values and the few session
# ids in flight are made once, not per superblock.
_FLAGS = [SuperblockFlags(v) for v in range(8)]
_REQUIRED = [Required(v) for v in range(16)]
_OPTIONAL = [Optional(v) for v in range(4)]
_uuids: dict[bytes, uuid.UUID] = {}


def _session_uuid(raw: bytes) -> uuid.UUID:
    found = _uuids.get(raw)
    if found is None:
        if len(_uuids) >= 4096:
            _uuids.clear()
        found = _uuids[raw] = uuid.UUID(bytes=raw)
    return found


def size_log2_of(size: int) -> int:
    """``log2(size)`` for a legal superblock size.

    Raises:
        LimitError: ``size`` is not a power of two between 64 KiB and 16 MiB.
    """
    log2 = size.bit_length() - 1
    if size <= 0 or size != 1 << log2 or not MIN_SIZE_LOG2 <= log2 <= MAX_SIZE_LOG2:
        raise LimitError(f"superblock size {size} is not a power of two from 64 KiB to 16 MiB")
    return log2


class SuperblockHeader(NamedTuple):
    """The decoded 64-byte header of one superblock (a tuple: one is decoded per superblock read)."""

    session_id: uuid.UUID
    seq: int
    payload_len: int
    size_log2: int = DEFAULT_SIZE_LOG2
    flags: SuperblockFlags = SuperblockFlags.NONE
    required: Required = Required.NONE
    optional: Optional = Optional.NONE
    version_minor: int = VERSION_MINOR
    header_len: int = HEADER_LEN
    checksum: int = 0
    version_major: int = VERSION_MAJOR
    unknown_required: int = 0

    @property
    def size(self) -> int:
        """Bytes the superblock occupies on the medium."""
        return 1 << self.size_log2

    @property
    def capacity(self) -> int:
        """Payload bytes a superblock of this size can hold."""
        return self.size - self.header_len


def data_spans(buf: memoryview, start: int, end: int) -> list[tuple[int, int]]:
    """The stored bytes of the DATA records in the payload ``buf[start:end]`` (docs/format.md §2).

    Walks the record headers only. A record that runs past ``end`` stops the walk: the rest is
    covered by the checksum, so damage to a length field shows up as a checksum mismatch.
    """
    spans = []
    unpack = RECORD_HEADER.unpack_from
    pos = start
    while pos + RECORD_HEADER_LEN <= end:
        rtype, _flags, _rsv, length = unpack(buf, pos)
        nxt = pos + RECORD_HEADER_LEN + length
        if nxt > end:
            break
        if rtype == _DATA and length > TAG_LEN:
            spans.append((pos + _TAGGED, nxt))
        pos = nxt
    return spans


def checksum(buf: memoryview, end: int, spans: Spans, start: int = HEADER_LEN) -> int:
    """xxh3-64 of ``buf[:56]`` and of the payload ``buf[start:end]`` minus ``spans``.

    The specification of :func:`payload_checksum` (which computes the spans itself).
    """
    h = xxhash.xxh3_64(buf[:CHECKSUM_OFFSET])
    pos = start
    for lo, hi in spans:
        h.update(buf[pos:lo])
        pos = hi
    h.update(buf[pos:end])
    return h.intdigest()


def payload_checksum(buf: memoryview, start: int, end: int) -> int:
    """The checksum of a superblock whose payload is ``buf[start:end]``, spans found by a walk.

    ``checksum(buf, end, data_spans(buf, start, end), start)``, in one compiled call when
    ``_accel`` is built.
    """
    if _compiled is not None:
        return _compiled(buf, start, end)
    return checksum(buf, end, data_spans(buf, start, end), start)


def pack_header(buf: memoryview, session_id: bytes, seq: int, payload_len: int, size_log2: int = DEFAULT_SIZE_LOG2,
                flags: int = 0, required: int = 0, optional: int = 0) -> None:
    """Write the header fields of a version 1.1 superblock into ``buf[:56]``; :func:`seal` follows."""
    _HEADER.pack_into(buf, 0, MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_LEN, size_log2, flags, 0, required,
                      optional, session_id, seq, payload_len, 0)


def seal(buf: memoryview, payload_len: int, spans: Spans) -> None:
    """Write the checksum of a superblock whose header fields and payload are in place.

    ``spans`` are the payload's :func:`data_spans` (the writer knows them without a walk);
    the compiled checksum finds them itself, faster than the Python hash takes a list.
    """
    end = HEADER_LEN + payload_len
    value = _compiled(buf, HEADER_LEN, end) if _compiled is not None else checksum(buf, end, spans)
    _CHECKSUM.pack_into(buf, CHECKSUM_OFFSET, value)


def write_header(buf: memoryview, header: SuperblockHeader, spans: Spans | None = None) -> None:
    """Write ``header`` into ``buf[:64]`` and seal it: compute the checksum over the payload.

    ``buf`` is the whole superblock, payload already in place; the caller keeps ownership.
    ``spans`` are the payload's :func:`data_spans` when the caller knows them; otherwise they
    are found by walking the records.
    """
    _HEADER.pack_into(buf, 0, MAGIC, VERSION_MAJOR, header.version_minor, HEADER_LEN, header.size_log2,
                      header.flags, 0, header.required, header.optional,
                      header.session_id.bytes, header.seq, header.payload_len, 0)
    if spans is None:
        spans = data_spans(buf, HEADER_LEN, HEADER_LEN + header.payload_len)
    seal(buf, header.payload_len, spans)


def peek_header(buf: memoryview) -> SuperblockHeader:
    """Decode a header without verifying the checksum (enough to skip a foreign superblock).

    Only the fields every version keeps in place are trusted here (magic, session id, seq,
    sizes); the version and features are checked by :func:`verify` once the checksum proves
    the header intact, so a flipped bit reads as damage, not as a newer format.

    Raises:
        TruncatedError: fewer than 64 bytes.
        FormatError: no magic, or sizes out of range.
    """
    if len(buf) < HEADER_LEN:
        raise TruncatedError(f"superblock header needs {HEADER_LEN} bytes, got {len(buf)}")
    (magic, _major, minor, header_len, size_log2, flags, _rsv, required, optional, sid, seq,
     payload_len, _rsv2) = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError("no superblock magic: not a pipevault superblock or damaged header")
    if not MIN_SIZE_LOG2 <= size_log2 <= MAX_SIZE_LOG2 or header_len < HEADER_LEN:
        raise FormatError(f"superblock header out of range: size_log2={size_log2}, "
                          f"header_len={header_len}")
    if payload_len > (1 << size_log2) - header_len:
        raise FormatError(f"payload length {payload_len} exceeds superblock size {1 << size_log2}")
    (sealed,) = _CHECKSUM.unpack_from(buf, CHECKSUM_OFFSET)
    session = _uuids.get(sid)
    # Positional _make: one header is decoded per superblock read.
    return SuperblockHeader._make((
        session if session is not None else _session_uuid(sid), seq, payload_len, size_log2, _FLAGS[flags & 7],
        _REQUIRED[required & 15], _OPTIONAL[optional & 3], minor, header_len, sealed, _major,
        required & ~_KNOWN_REQUIRED))


def verify(buf: memoryview, header: SuperblockHeader | None = None) -> tuple[SuperblockHeader, memoryview]:
    """Decode and verify one superblock; return its header and a view of its payload.

    The checksum covers the header and every record but the stored bytes of DATA records:
    those are verified per chunk when it is decoded (content hash, GCM tag).

    ``buf`` may be longer than the payload (padding) but must hold header and payload; the
    returned payload view shares ``buf``'s memory (no copy) and lives as long as the caller
    keeps ``buf`` unchanged. ``header`` is ``peek_header(buf)`` when the caller has it already.

    Raises:
        TruncatedError: ``buf`` ends inside the payload.
        ChecksumError: the checksum does not match.
        UnknownVersionError: an intact superblock of another major version.
        UnsupportedFeatureError: an intact superblock needing an unknown required feature.
        and the errors of :func:`peek_header`.
    """
    if header is None:
        header = peek_header(buf)
    end = header.header_len + header.payload_len
    if len(buf) < end:
        raise TruncatedError(f"superblock seq {header.seq} of session {header.session_id} is cut "
                             f"at {len(buf)} of {end} bytes", seq=header.seq)
    got = _compiled(buf, header.header_len, end) if _compiled is not None else payload_checksum(
        buf, header.header_len, end)
    if got != header.checksum:
        raise ChecksumError(f"checksum mismatch in superblock seq {header.seq} of session "
                            f"{header.session_id}", seq=header.seq, session=str(header.session_id))
    if header.version_major != VERSION_MAJOR:
        raise UnknownVersionError(f"superblock format version {header.version_major}.{header.version_minor}; "
                                  f"this reader knows {VERSION_MAJOR}.x",
                                  version=f"{header.version_major}.{header.version_minor}")
    if header.unknown_required:
        raise UnsupportedFeatureError(f"superblock needs unknown required features "
                                      f"{header.unknown_required:#x}", features=header.unknown_required)
    return header, buf[header.header_len:end]
