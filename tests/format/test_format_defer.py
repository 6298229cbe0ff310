"""Deferred decoding (``defer``): large compressed chunks handed out stored, decoded by the caller.

A deferring reader delivers the same chunks as a decoding one: those it defers carry their
stored bytes unchecked, ``decode_stored`` turns them into the same plaintext, and a damaged
deferred chunk raises IntegrityError exactly where the decoding reader reports damage.
"""

from __future__ import annotations

import pytest
from format_helpers import KEY, loglike, write_session
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import ChunkRead, Compression, Damage, Scanner, decode_stored, fixed, scan, verify
from pipevault.format._records import RECORD_HEADER, RECORD_HEADER_LEN, TAG_LEN, RecordType
from pipevault.format.errors import IntegrityError

TRANSFORMS = [(Compression.NONE, None), (Compression.LZ4, None), (Compression.ZSTD, None), (Compression.ZSTD, KEY)]


def _blocks(data: bytes, chunk: int, which: int, stored_hash: bool = True) -> list[memoryview]:
    comp, key = TRANSFORMS[which]
    _w, blocks = write_session([(b"/d", data)], size=1 << 16, key=key, chunk_size=chunk,
                               selector=fixed(comp, 1 if comp is Compression.ZSTD else 0), stored_hash=stored_hash)
    return blocks


def _plain(c: ChunkRead) -> bytes:
    if c.stored:
        return bytes(decode_stored(c.header, c.pieces))
    return b"".join(bytes(p) for p in c.pieces)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 300_000), chunk=st.integers(1_000, 200_000), which=st.integers(0, len(TRANSFORMS) - 1),
       stored_hash=st.booleans(), defer=st.sampled_from([1, 50_000]), views=st.booleans())
def test_deferred_chunks_decode_to_what_a_decoding_reader_delivers(
        size: int, chunk: int, which: int, stored_hash: bool, defer: int, views: bool) -> None:
    data = loglike(size, which)
    blocks = _blocks(data, chunk, which, stored_hash)
    decoded = [e for e in scan(blocks, key=KEY) if isinstance(e, ChunkRead)]
    deferred = [e for e in scan(blocks, key=KEY, defer=defer, views=views) if isinstance(e, ChunkRead)]
    assert [c.header for c in decoded] == [c.header for c in deferred]
    assert b"".join(_plain(c) for c in deferred) == data
    comp, key = TRANSFORMS[which]
    for c in deferred:
        # Exactly the compressed chunks of format 1.1 without encryption, from the threshold up.
        assert c.stored == (comp is not Compression.NONE and key is None and stored_hash
                            and c.header.compression is not Compression.NONE and c.header.plain_len >= defer)
        if c.stored:
            assert c.data is None and sum(len(p) for p in c.pieces) == c.header.stored_len


def _damaged(blocks: list[memoryview]) -> list[memoryview]:
    """The blocks with one bit flipped in the stored bytes of the first DATA record of block 1."""
    block = memoryview(bytearray(blocks[1]))
    header, payload = verify(block)
    pos = 0
    while True:
        rtype, _f, _r, length = RECORD_HEADER.unpack_from(payload, pos)
        if rtype == RecordType.DATA:
            break
        pos += RECORD_HEADER_LEN + length
    # The superblock checksum covers only the framing, so the block still verifies.
    block[header.header_len + pos + RECORD_HEADER_LEN + TAG_LEN + 3] ^= 8
    return [blocks[0], block, *blocks[2:]]


def test_a_damaged_deferred_chunk_fails_where_the_decoding_reader_reports_damage() -> None:
    data = loglike(400_000, 5)
    blocks = _damaged(_blocks(data, 150_000, 2))
    reader_damage = [e for e in scan(blocks) if isinstance(e, Damage)]
    assert [d.kind for d in reader_damage] == ["integrity"]
    (lost,) = reader_damage[0].affected
    scanner = Scanner(defer=1)
    deferred = [e for b in blocks for e in scanner.feed(b)]
    assert not any(isinstance(e, Damage) for e in deferred)  # the reader left the check to us
    failed = []
    for c in (e for e in deferred if isinstance(e, ChunkRead)):
        assert c.stored
        try:
            decode_stored(c.header, c.pieces)
        except IntegrityError:
            failed.append((c.header.object_index, c.header.object_offset, c.header.object_offset + c.header.plain_len))
    assert failed == [(lost.object_index, lost.start, lost.end)]


def test_decode_stored_refuses_pieces_that_are_not_the_stored_bytes() -> None:
    data = loglike(200_000, 7)
    chunks = [e for e in scan(_blocks(data, 200_000, 1), defer=1) if isinstance(e, ChunkRead)]
    (c,) = chunks
    stored = b"".join(bytes(p) for p in c.pieces)
    with pytest.raises(IntegrityError):
        decode_stored(c.header, (stored[:-1],))
    with pytest.raises(IntegrityError):
        decode_stored(c.header, (stored[1:], stored[:1]))
    assert bytes(decode_stored(c.header, (stored[:10], stored[10:]))) == data
