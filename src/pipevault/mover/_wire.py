"""The mover's in-pipe message layout: what each pool buffer of a backup pipe carries.

Every buffer starts with a 64-byte prefix, then its payload::

    u8  kind        BEGIN (an object starts), CHUNK (plaintext or encoded chunk), END
    7   pad
    u64 object_index
    u64 chunk_seq
    u64 offset      object stream offset of the chunk
    u64 a           CHUNK: plaintext length / encoded: chunk header length
    u64 b           encoded: stored length
    u64 c           encoded: chunk footer length
    8   pad

BEGIN and END payloads are pickled dictionaries (names, attributes, digests). Small files
travel many to a buffer: BATCH (``a`` objects) holds for each ``BATCH_REC`` (object index and
the lengths of the next three) then ``begin | data | end``; BATCH_ENCODED holds for each
``BATCH_ENC`` then ``begin | chunk header | stored | chunk footer | end`` (empty chunk parts
for an object without data). The layout is private to one pipe on one machine; what reaches
media is the stream format.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

PREFIX = struct.Struct("<B7xQQQQQQ8x")
PREFIX_LEN = 64
assert PREFIX.size == PREFIX_LEN

BEGIN, CHUNK, ENCODED, END, BATCH, BATCH_ENCODED = 1, 2, 3, 4, 5, 6
BATCH_REC = struct.Struct("<QIII")
BATCH_ENC = struct.Struct("<QIIIII")


def put_prefix(view: memoryview, kind: int, index: int, seq: int = 0, offset: int = 0,
               a: int = 0, b: int = 0, c: int = 0) -> None:
    """Write the prefix at the start of ``view``."""
    PREFIX.pack_into(view, 0, kind, index, seq, offset, a, b, c)


def get_prefix(view: memoryview) -> tuple[int, int, int, int, int, int, int]:
    """``(kind, object_index, chunk_seq, offset, a, b, c)``."""
    return PREFIX.unpack_from(view, 0)


def dumps(doc: dict[str, Any]) -> bytes:
    """Serialise a BEGIN/END payload."""
    return pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: memoryview) -> dict[str, Any]:
    """Inverse of :func:`dumps` (only ever applied to what this pipe wrote)."""
    doc = pickle.loads(data)
    assert isinstance(doc, dict)
    return doc
