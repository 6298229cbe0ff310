"""Zero-copy delivery (``views=True``): untransformed chunks as views of their superblocks.

Whatever the transform and the cut of chunks over superblocks, a views reader delivers the
same plaintext as a copying one; an untransformed chunk's pieces are views of the very
buffers fed (no byte copied), and a damaged chunk delivers nothing.
"""

from __future__ import annotations

from format_helpers import KEY, loglike, write_session
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import ChunkRead, Compression, Damage, Scanner, fixed, scan, verify
from pipevault.format._records import RECORD_HEADER, RECORD_HEADER_LEN, TAG_LEN, RecordType

TRANSFORMS = [(Compression.NONE, None), (Compression.LZ4, None), (Compression.ZSTD, None),
              (Compression.NONE, KEY), (Compression.ZSTD, KEY)]


def _blocks(size: int, chunk: int, which: int, stored_hash: bool = True) -> tuple[bytes, list[memoryview]]:
    comp, key = TRANSFORMS[which]
    data = loglike(size, which)
    _w, blocks = write_session([(b"/v", data)], size=1 << 16, key=key, chunk_size=chunk,
                               selector=fixed(comp, 1 if comp is Compression.ZSTD else 0), stored_hash=stored_hash)
    return data, blocks


def _chunks(blocks: list[memoryview], views: bool) -> list[ChunkRead]:
    return [e for e in scan(blocks, key=KEY, views=views) if isinstance(e, ChunkRead)]


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, 300_000), chunk=st.integers(1_000, 200_000), which=st.integers(0, len(TRANSFORMS) - 1),
       stored_hash=st.booleans())
def test_views_deliver_what_a_copying_reader_does(size: int, chunk: int, which: int, stored_hash: bool) -> None:
    data, blocks = _blocks(size, chunk, which, stored_hash)
    copied, viewed = _chunks(blocks, False), _chunks(blocks, True)
    assert [c.header for c in copied] == [c.header for c in viewed]
    assert b"".join(bytes(c.data or b"") for c in copied) == data
    assert b"".join(b"".join(c.pieces) for c in viewed) == data
    for c in viewed:
        assert sum(len(p) for p in c.pieces) == c.header.plain_len
        assert (c.data is None) == (len(c.pieces) > 1)


def test_untransformed_pieces_are_views_of_the_buffers_fed() -> None:
    _data, blocks = _blocks(200_000, 150_000, 0)
    fed = {id(b.obj) for b in blocks}
    several = [c for c in _chunks(blocks, True) if len(c.pieces) > 1]
    assert several
    for c in several:
        assert all(isinstance(p, memoryview) and id(p.obj) in fed for p in c.pieces)


def test_a_damaged_chunk_delivers_no_piece_in_views_mode() -> None:
    data, blocks = _blocks(200_000, 150_000, 0)
    block = memoryview(bytearray(blocks[1]))
    header, payload = verify(block)
    pos = 0
    while True:  # the first DATA record of superblock 1: a continued piece of chunk 0
        rtype, _f, _r, length = RECORD_HEADER.unpack_from(payload, pos)
        if rtype == RecordType.DATA:
            break
        pos += RECORD_HEADER_LEN + length
    block[header.header_len + pos + RECORD_HEADER_LEN + TAG_LEN + 5] ^= 4
    scanner = Scanner(key=KEY, views=True)
    events = [e for b in [blocks[0], block, *blocks[2:]] for e in scanner.feed(b)]
    chunks = [e for e in events if isinstance(e, ChunkRead)]
    assert [e.kind for e in events if isinstance(e, Damage)] == ["integrity"]
    assert [c.header.chunk_seq for c in chunks] == [1]
    assert b"".join(chunks[0].pieces) == data[150_000:]


def test_views_with_duplicates_and_unwanted_objects() -> None:
    data = loglike(120_000, 11)
    _w, blocks = write_session([(b"/a", data), (b"/b", data), (b"/c", data)], size=1 << 16, chunk_size=100_000,
                               selector=fixed(Compression.NONE), discard_duplicates=True)
    events = list(scan(blocks, views=True, want=lambda _sid, index: index != 2))
    chunks = {(c.header.object_index, c.header.chunk_seq): c for c in events if isinstance(c, ChunkRead)}
    assert not [e for e in events if isinstance(e, Damage)]
    for seq in (0, 1):
        first, dup, unwanted = chunks[(0, seq)], chunks[(1, seq)], chunks[(2, seq)]
        assert b"".join(first.pieces) == data[seq * 100_000:(seq + 1) * 100_000]
        assert dup.header.ref == (0, seq) and dup.pieces == () and dup.data is None
        assert unwanted.pieces == () and unwanted.data is None
