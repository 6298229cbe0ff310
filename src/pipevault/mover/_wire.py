"""The mover's in-pipe message layout: what each pool buffer of a backup pipe carries.

Every buffer starts with a 64-byte prefix, then its payload::

    u8  kind        META/BEGIN (an object starts), CHUNK (plaintext or encoded chunk), END, ...
    7   pad
    u64 object_index
    u64 chunk_seq
    u64 offset      object stream offset of the chunk
    u64 a           CHUNK: plaintext length / encoded: chunk header length
    u64 b           encoded: stored length
    u64 c           encoded: chunk footer length
    8   pad

An object's metadata travels packed, never as Python objects (no pickle: a stream may come
from another machine): its archive header as the stream format's own record body (the
reader packs it once) and its catalog fields as the *doc*: a JSON array ``[file space, high
name, low name, object type, size]``, a newline, the JSON object of its attributes. Only the
catalog stage opens it.

- META (reader -> encoder; the encoder turns it into BEGIN): ``META_REC`` (lengths) then
  ``meta | extents``, meta being the entry's raw metadata (:mod:`pipevault.mover.objmeta`).
- BEGIN: ``BEGIN_REC`` (lengths) then ``header | catalog doc | extents``.
- CHUNK: ``CHUNK_ROOM`` bytes left free, then the plaintext; after encoding, ENCODED:
  ``chunk header | stored | chunk footer``. A chunk stored as it is (neither compressed nor
  encrypted) is encoded in its own buffer: its header fills the room, its footer follows
  the data, and nothing is copied.
- END: ``END_REC`` (status, whole-object digest, stream bytes).
- BATCH (``a`` small objects whole): per object ``BATCH_REC`` then ``meta | data``.
- BATCH_ENCODED: per object ``BATCH_ENC`` then ``framed records | doc`` (see
  :func:`pipevault.format.frame_object`).
- CATALOG (store -> catalog stage, once the objects are durable): a volume-name table, then
  per object ``CATALOG_REC`` and ``doc | pieces | refs``; prefix ``b`` = 1 on the last buffer of
  a durability point (commit after it).

The layout is private to one pipe on one machine; what reaches media is the stream format.
"""

from __future__ import annotations

import json
import json.scanner
import struct
from json.encoder import encode_basestring_ascii
from typing import Any, cast

from pipevault.format import CHUNK_FOOTER_LEN, CHUNK_HEADER_LEN

PREFIX = struct.Struct("<B7xQQQQQQ8x")
PREFIX_LEN = 64
assert PREFIX.size == PREFIX_LEN

BEGIN, CHUNK, ENCODED, END, BATCH, BATCH_ENCODED, CATALOG, META = 1, 2, 3, 4, 5, 6, 7, 8
CHUNK_ROOM = CHUNK_HEADER_LEN  # before a CHUNK's plaintext: a chunk header (without a duplicate's ref)
CHUNK_TAIL = CHUNK_FOOTER_LEN  # kept free after it: a chunk footer
META_REC = struct.Struct("<II")  # meta, extents lengths
BEGIN_REC = struct.Struct("<III")  # header, doc, extents lengths
END_REC = struct.Struct("<B16sQ")  # status, xxh3-128 of the object's data, stream bytes
BATCH_REC = struct.Struct("<QIIB16s")  # index, meta and data lengths, status, digest
# index, records and doc lengths, chunks, plain and stored bytes, required bits, status,
# digest, has dedup hash, dedup hash
BATCH_ENC = struct.Struct("<QIIIQQIB16sB32s")
# index, status, digest, stream, stored, doc length, pieces, refs
CATALOG_REC = struct.Struct("<QB16sQQIHI")
PIECE = struct.Struct("<HQ")  # volume number in the buffer's table, first superblock there
REF = struct.Struct("<Q")  # index of an object whose chunks this one repeats (store.Durable.refs)



def put_prefix(view: memoryview, kind: int, index: int, seq: int = 0, offset: int = 0,
               a: int = 0, b: int = 0, c: int = 0) -> None:
    """Write the prefix at the start of ``view``."""
    PREFIX.pack_into(view, 0, kind, index, seq, offset, a, b, c)


def get_prefix(view: memoryview) -> tuple[int, int, int, int, int, int, int]:
    """``(kind, object_index, chunk_seq, offset, a, b, c)``."""
    return PREFIX.unpack_from(view, 0)


# The decoder's C scanner: (text, index) -> (value, end), StopIteration when there is none.
# (typeshed types its argument as a scanner; the decoder is what json passes it.)
_SCAN = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))
JSON_STR = encode_basestring_ascii  # what the JSON encoder writes for a str (its C function)


def dumps(fs: str, hl: str, ll: str, obj_type: int, size: int, attributes: str) -> bytes:
    """An object's catalog doc; ``attributes`` is the compact JSON text of an object (see
    :func:`pipevault.mover.objmeta.attributes_text`).

    The head is the compact JSON of ``[fs, hl, ll, obj_type, size]``, written out directly
    (once per file of a backup; the encoder's generic walk cost twice as much).
    """
    # ASCII escapes keep names that are not valid UTF-8 (surrogate escapes) intact, and
    # JSON escapes newlines in names: the first newline ends the head.
    return (f"[{JSON_STR(fs)},{JSON_STR(hl)},{JSON_STR(ll)},{int(obj_type)},{int(size)}]\n"
            + attributes).encode("ascii")


def loads(data: memoryview | bytes) -> tuple[list[Any], str]:
    """Inverse of :func:`dumps`: ``([fs, hl, ll, obj_type, size], attributes JSON text)``;
    the head's shape and the attributes are not checked (see ``remote_wire.check_doc``).

    Raises:
        ValueError: no head line of one JSON value; UnicodeDecodeError: not ASCII.
    """
    text = str(data, "ascii")
    cut = text.index("\n")
    try:
        head, end = _SCAN(text, 0)  # json.loads would add two regex matches and two frames
    except StopIteration:
        raise ValueError("catalog doc head is not JSON") from None
    if end != cut:
        raise ValueError(f"catalog doc head ends at {end}, its line at {cut}")
    return head, text[cut + 1:]


def pack_names(view: memoryview, pos: int, names: list[str]) -> int:
    """Write a table of names at ``pos``; returns the position after it."""
    struct.pack_into("<H", view, pos, len(names))
    pos += 2
    for name in names:
        raw = name.encode()
        struct.pack_into("<H", view, pos, len(raw))
        view[pos + 2: pos + 2 + len(raw)] = raw
        pos += 2 + len(raw)
    return pos


def unpack_names(view: memoryview, pos: int) -> tuple[list[str], int]:
    """Inverse of :func:`pack_names`: the names and the position after the table."""
    (count,) = struct.unpack_from("<H", view, pos)
    pos += 2
    names = []
    for _ in range(count):
        (n,) = struct.unpack_from("<H", view, pos)
        names.append(str(view[pos + 2: pos + 2 + n], "utf-8"))
        pos += 2 + n
    return names, pos
