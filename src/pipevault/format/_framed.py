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

from collections.abc import Iterator
from dataclasses import dataclass

from pipevault.format._chunk import EncodedChunk
from pipevault.format._codecs import Buffer
from pipevault.format._records import (
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
)
from pipevault.format._superblock import Required
from pipevault.format.errors import FormatError


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


def _record(rtype: int, body: Buffer) -> bytes:
    return RECORD_HEADER.pack(rtype, 0, 0, len(body)) + body


_NEEDS = {Compression.NONE: 0, Compression.LZ4: int(Required.LZ4), Compression.ZSTD: int(Required.ZSTD)}
_AES_GCM = int(Required.AES_GCM)
_STORED_HASH_FLAG, _STORED_HASH = int(ChunkFlags.STORED_HASH), int(Required.STORED_HASH)


def required_by(header: ChunkHeader) -> int:
    """The ``Required`` bits a reader needs for a chunk with this header (an int: this runs
    for every chunk, and IntFlag operations run Python code)."""
    return (_NEEDS[header.compression] | (_AES_GCM if header.encryption is Encryption.AES_256_GCM else 0)
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
    parts: list[bytes | memoryview] = [_record(RecordType.ARCHIVE_HEADER, header_body)]
    if options_body is not None:
        parts.append(_record(RecordType.OPTIONS, options_body))
    if chunk is None:
        return FramedObject(object_index, b"".join(parts))
    h = chunk.header
    if (h.object_index, h.chunk_seq, h.object_offset) != (object_index, 0, 0):
        raise FormatError(f"chunk {h.object_index}/{h.chunk_seq}@{h.object_offset} is not the first chunk "
                          f"of object {object_index}")
    stored = memoryview(chunk.stored).cast("B")
    parts.append(_record(RecordType.CHUNK_HEADER, h.pack()))
    if len(stored):
        parts.append(RECORD_HEADER.pack(RecordType.DATA, 0, 0, TAG_LEN + len(stored)))
        parts.append(TAG.pack(object_index, 0, 0, 0))
        parts.append(stored)
    parts.append(_record(RecordType.CHUNK_FOOTER, chunk.footer.pack()))
    hashed = h.flags & ChunkFlags.HAS_DEDUP_HASH and not h.flags & ChunkFlags.DUPLICATE
    return FramedObject(object_index, b"".join(parts), 1, h.plain_len, h.stored_len, required_by(h),
                        h.dedup_hash if hashed else None)


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
