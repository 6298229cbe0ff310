"""Whole small objects framed ahead of the writer (docs/format.md §4: the records are the same).

A session has one writer, fed by one thread: with many small files its per-record Python
work, not the bytes, bounds a backup. :func:`frame_object` packs an object's archive
header, options and its one chunk into complete records wherever the chunk was encoded (a
multi-instance stage); :meth:`SessionWriter.put_object` then copies them into a superblock
in one move and adds the archive footer, which only the writer can date (it names the
superblocks the object lies in). What reaches the medium is byte for byte what
``begin_object``, ``options``, ``add_chunk`` and ``end_object`` would have written.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import xxhash

from pipevault.format._chunk import REPEATS_MAX, ChunkEncoder, EncodedChunk
from pipevault.format._codecs import Buffer, packer
from pipevault.format._crypto import UNKEYED_DEDUP_ALGO, UNKEYED_DEDUP_HASH
from pipevault.format._records import (
    CHUNK_FOOTER,
    CHUNK_FOOTER_LEN,
    CHUNK_HEADER,
    CHUNK_HEADER_LEN,
    RECORD_HEADER,
    RECORD_HEADER_LEN,
    TAG,
    TAG_LEN,
    ChunkFlags,
    ChunkFooter,
    ChunkHeader,
    Compression,
    Encryption,
    RecordType,
    new_frozen,
)
from pipevault.format._superblock import Required
from pipevault.format.errors import FormatError

_CHUNK_HEADER, _DATA, _CHUNK_FOOTER = int(RecordType.CHUNK_HEADER), int(RecordType.DATA), int(RecordType.CHUNK_FOOTER)

_frame_whole: Callable[..., tuple[bytes, int, int, bytes | None] | None] | None
try:
    # A small object's records in one call (``_accel_frame.c``); frame_whole's Python path
    # below is its specification, and packs what the compiled one declines (None).
    from pipevault.format._accel import frame_whole as _frame_whole
except ImportError:
    _frame_whole = None


@dataclass(frozen=True, slots=True)
class FramedObject:
    """An object's records up to (not including) its archive footer.

    Attributes:
        object_index: the index the archive header carries.
        records: complete records (archive header, options, chunk header, one data record,
            chunk footer); owned by whoever holds the FramedObject, read by ``put_object``.
        chunks, plain_len, stored_len: what the footer totals.
        required: the ``Required`` feature bits the chunk needs from a reader.
        dedup_hash: the chunk's dedup hash when it carries one (for duplicate discard).
    """

    object_index: int
    records: Buffer
    chunks: int = 0
    plain_len: int = 0
    stored_len: int = 0
    required: int = 0
    dedup_hash: bytes | None = None

    @classmethod
    def of(cls, object_index: int, records: Buffer, chunks: int, plain_len: int, stored_len: int, required: int,
           dedup_hash: bytes | None) -> FramedObject:
        """``FramedObject(...)`` with every field given, made without running ``__init__`` (a
        backup's store makes one for every small object it receives: a fifth of the time)."""
        return new_frozen(cls, object_index, records, chunks, plain_len, stored_len, required, dedup_hash)


def _record(rtype: int, body: Buffer) -> bytes:
    return RECORD_HEADER.pack(rtype, 0, 0, len(body)) + body


COMPRESSION_NEEDS = {Compression.NONE: 0, Compression.LZ4: int(Required.LZ4), Compression.ZSTD: int(Required.ZSTD)}
"""The ``Required`` bits (an int) a chunk of each compression needs (part of :func:`required_by`)."""
_AES_GCM = int(Required.AES_GCM)
_AES_256_GCM = Encryption.AES_256_GCM  # a module constant: an enum member lookup costs ~0.2 us
_STORED_HASH_FLAG, _STORED_HASH = int(ChunkFlags.STORED_HASH), int(Required.STORED_HASH)
_HASHED, _DUPLICATE = int(ChunkFlags.HAS_DEDUP_HASH), int(ChunkFlags.DUPLICATE)
_DEDUP_ALGO = int(UNKEYED_DEDUP_ALGO)  # an int for the compiled framing
_ARCHIVE_HEADER, _OPTIONS = int(RecordType.ARCHIVE_HEADER), int(RecordType.OPTIONS)
_NO_ENCRYPTION, _NO_NONCE, _ZERO16 = Encryption.NONE, bytes(12), bytes(16)
# Whole records in one pack each (record header and body; a DATA record header with its tag):
# a backup frames every small file, and each separate pack or concatenation costs as much as
# the bytes it moves.
_CHUNK_HEADER_RECORD = struct.Struct(RECORD_HEADER.format + CHUNK_HEADER.format[1:])
_CHUNK_HEADER_HEAD = RECORD_HEADER.pack(RecordType.CHUNK_HEADER, 0, 0, CHUNK_HEADER_LEN)
_DATA_HEAD = struct.Struct(RECORD_HEADER.format + TAG.format[1:])
_CHUNK_FOOTER_RECORD = struct.Struct(RECORD_HEADER.format + CHUNK_FOOTER.format[1:])


def required_by(header: ChunkHeader) -> int:
    """The ``Required`` bits a reader needs for a chunk with this header (an int: this runs
    for every chunk, and IntFlag operations run Python code)."""
    return (COMPRESSION_NEEDS[header.compression] | (_AES_GCM if header.encryption is _AES_256_GCM else 0)
            | (_STORED_HASH if int(header.flags) & _STORED_HASH_FLAG else 0))


def frame_object(object_index: int, header_body: bytes, chunk: EncodedChunk | None,
                 options_body: bytes | None = None) -> FramedObject:
    """Frame one object: ``header_body`` is its packed ArchiveHeader (carrying
    ``object_index``), ``chunk`` its only chunk (chunk seq 0, offset 0) or None for an object
    without data, ``options_body`` a packed Options record for the object.

    The chunk's stored bytes are copied; the caller may reuse them on return.

    Raises:
        FormatError: the chunk is not the object's first chunk.
    """
    head = RECORD_HEADER.pack(_ARCHIVE_HEADER, 0, 0, len(header_body))
    if options_body is not None:
        header_body = header_body + RECORD_HEADER.pack(_OPTIONS, 0, 0, len(options_body)) + options_body
    if chunk is None:
        return FramedObject(object_index, head + header_body)
    h = chunk.header
    if h.object_index != object_index or h.chunk_seq or h.object_offset:
        raise FormatError(f"chunk {h.object_index}/{h.chunk_seq}@{h.object_offset} is not the first chunk "
                          f"of object {object_index}")
    stored = memoryview(chunk.stored).cast("B")
    n = h.stored_len
    flags = int(h.flags)
    f = chunk.footer
    chunk_head = _CHUNK_HEADER_HEAD + h.pack() if h.ref is not None else _CHUNK_HEADER_RECORD.pack(
        _CHUNK_HEADER, 0, 0, CHUNK_HEADER_LEN, object_index, 0, 0, h.plain_len, n, h.compression, h.level,
        h.encryption, flags, h.dedup_algo, h.nonce, h.content_hash, h.dedup_hash)
    foot = _CHUNK_FOOTER_RECORD.pack(_CHUNK_FOOTER, 0, 0, CHUNK_FOOTER_LEN, f.object_index, f.chunk_seq,
                                     f.stored_len, f.sealed_hash, f.tag)
    if len(stored):
        records = b"".join((head, header_body, chunk_head,
                            _DATA_HEAD.pack(_DATA, 0, 0, TAG_LEN + len(stored), object_index, 0, 0, 0), stored,
                            foot))
    else:
        records = b"".join((head, header_body, chunk_head, foot))
    return new_frozen(FramedObject, object_index, records, 1, h.plain_len, n, required_by(h),
                      h.dedup_hash if flags & _HASHED and not flags & _DUPLICATE else None)


def frame_whole(object_index: int, header_body: bytes, plain: Buffer, encoder: ChunkEncoder) -> FramedObject:
    """``frame_object(object_index, header_body, encoder(plain, object_index, 0, 0))``, byte
    for byte, for an object whose data is one chunk: the chunk's records are packed straight
    from what :meth:`ChunkEncoder.transform` gives, without the chunk header, footer and
    encoded chunk made in between (a backup frames every small file: they cost half of what
    framing one did). Sessions with keys, and format 1.0 chunks, take that long way.

    Raises:
        LimitError: the chunk is larger than 64 MiB.
    """
    view = memoryview(plain).cast("B")
    if encoder.keys is not None or not encoder.stored_hash:
        return frame_object(object_index, header_body, encoder(view, object_index, 0, 0))
    choice = encoder.selector(view)
    if _frame_whole is not None:
        made = _frame_whole(object_index, header_body, view, choice[0], choice[1], packer(*choice),
                            UNKEYED_DEDUP_HASH if encoder.dedup else None, _DEDUP_ALGO, encoder.repeats,
                            REPEATS_MAX)
        if made is not None:
            records, n, required, dedup_hash = made
            return new_frozen(FramedObject, object_index, records, 1, len(view), n, required, dedup_hash)
    stored, comp, level, flags, algo, dhash = encoder.transform(view, choice)
    n = len(stored)
    flags |= _STORED_HASH_FLAG
    chunk_head = _CHUNK_HEADER_RECORD.pack(
        _CHUNK_HEADER, 0, 0, CHUNK_HEADER_LEN, object_index, 0, 0, len(view), n, comp, level, _NO_ENCRYPTION,
        flags, algo, _NO_NONCE, xxhash.xxh3_128_digest(stored), dhash)
    foot = _CHUNK_FOOTER_RECORD.pack(_CHUNK_FOOTER, 0, 0, CHUNK_FOOTER_LEN, object_index, 0, n, _ZERO16, _ZERO16)
    head = RECORD_HEADER.pack(_ARCHIVE_HEADER, 0, 0, len(header_body))
    if n:
        records = b"".join((head, header_body, chunk_head,
                            _DATA_HEAD.pack(_DATA, 0, 0, TAG_LEN + n, object_index, 0, 0, 0), stored, foot))
    else:
        records = b"".join((head, header_body, chunk_head, foot))
    return new_frozen(FramedObject, object_index, records, 1, len(view), n, COMPRESSION_NEEDS[comp] | _STORED_HASH,
                      dhash if flags & _HASHED else None)


def records_of(framed: FramedObject) -> Iterator[tuple[int, memoryview]]:
    """``(record type, body)`` of each record in ``framed`` (a DATA body without its tag).

    Raises:
        FormatError: the records are cut short or a length runs past the end.
    """
    view = memoryview(framed.records).cast("B")
    pos = 0
    while pos < len(view):
        if pos + RECORD_HEADER_LEN > len(view):
            raise FormatError(f"framed object {framed.object_index}: record header cut at byte {pos}")
        rtype, _flags, _reserved, length = RECORD_HEADER.unpack_from(view, pos)
        pos += RECORD_HEADER_LEN
        if pos + length > len(view):
            raise FormatError(f"framed object {framed.object_index}: record runs past the end")
        body = view[pos:pos + length]
        yield rtype, body[TAG_LEN:] if rtype == RecordType.DATA else body
        pos += length


def unframe_chunk(header: memoryview, data: memoryview, footer: memoryview) -> EncodedChunk:
    """The encoded chunk of a framed object, from its three record bodies."""
    return EncodedChunk(ChunkHeader.unpack(header), data, ChunkFooter.unpack(footer))
