"""The compiled walk of superblocks of compressed chunks' records (``_accel.walk_chunks``).

Its specification is the Python reader (``Scanner.feed``, ``SessionReader.feed`` and the
record handlers, ``ChunkAssembly``): on any sequence of superblocks, sound or damaged
anyhow (lost, repeated, reordered, bit flips in headers, records or stored bytes), a reader
that walks delivers exactly the events of one that does not, and ends in the same state.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from format_helpers import KEY, loglike
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import (
    ArchiveHeader,
    ChunkRead,
    Compression,
    SamplingSelector,
    SessionHeader,
    SessionWriter,
    _reader,
    fixed,
)
from pipevault.format._chunk import ChunkAssembly
from pipevault.format._records import ChunkFlags, ChunkHeader
from pipevault.format._scanner import Scanner

walk_chunks = _reader.walk_chunks
pytestmark = pytest.mark.skipif(walk_chunks is None, reason="the extension is not built")
SIZE = 1 << 16


def _blocks(objects: list[tuple[int, int]], chunk: int, algo: Compression, key: bytes | None) -> list[bytes]:
    selector = SamplingSelector(algo, 1) if algo is not Compression.NONE else fixed(algo)
    w = SessionWriter(SessionHeader(job="walk", created_ns=1), session_id=uuid.UUID(int=7), size=SIZE,
                      selector=selector, chunk_size=chunk, key=key)
    for i, (size, seed) in enumerate(objects):
        w.begin_object(ArchiveHeader(name=b"/w%d" % i, size=size))
        w.write(random.Random(seed).randbytes(size) if seed % 7 == 0 else loglike(size, seed))
        w.end_object()
    w.close()
    return [bytes(b) for b in w.take()]


def _read(blocks: list[bytes], walk: bool, **kwargs: Any) -> tuple[list[Any], list[Any], int]:
    """Events, the reader's state at the end, and how many superblocks the walk read."""
    walked = [0]

    def counting(*args: Any) -> Any:
        got = walk_chunks(*args)
        walked[0] += got is not None
        return got

    # A reader decides when it is made whether it walks, from the module's walk_chunks.
    _reader.walk_chunks = counting if walk else None
    try:
        scanner = Scanner(**kwargs)
        events: list[Any] = []
        for block in blocks:
            events += scanner.feed(memoryview(block))
        events += scanner.finish()
    finally:
        _reader.walk_chunks = walk_chunks
    states = [(r.expected, r.last_seq, r.seq, r.chunk, r.obj_index, r.next_chunk, r.obj_offset, r.next_object,
               r._got, r._delivered, r._recent) for r in scanner.readers.values()]
    return events, states, walked[0]


def _damage(blocks: list[bytes], how: list[tuple[int, int, int]]) -> list[bytes]:
    out = list(blocks)
    for kind, at, bit in how:
        if not out:
            break
        i = at % len(out)
        if kind == 0:
            del out[i]
        elif kind == 1:
            out.insert(i, out[(at * 7) % len(out)])
        elif kind == 2:
            out[i], out[-1 - i] = out[-1 - i], out[i]
        else:
            block = bytearray(out[i])
            # In the header and first records mostly, where a flip changes what is walked.
            pos = (at * 131) % (len(block) if kind == 4 else 600)
            block[pos] ^= 1 << bit
            out[i] = bytes(block)
    return out


@settings(max_examples=40, deadline=None)
@given(objects=st.lists(st.tuples(st.integers(0, 400_000), st.integers(0, 50)), min_size=1, max_size=4),
       chunk=st.sampled_from([1000, 50_000, 100_000, 300_000]),
       algo=st.sampled_from([Compression.LZ4, Compression.ZSTD, Compression.NONE]),
       how=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 20), st.integers(0, 7)), max_size=3),
       defer=st.sampled_from([0, 0, 60_000]))
def test_a_walking_reader_reads_what_the_python_reader_reads(
        objects: list[tuple[int, int]], chunk: int, algo: Compression, how: list[tuple[int, int, int]],
        defer: int) -> None:
    blocks = _damage(_blocks(objects, chunk, algo, None), how)
    walking = _read(blocks, True, views=True, defer=defer)
    python = _read(blocks, False, views=True, defer=defer)
    assert walking[:2] == python[:2]


def test_it_walks_the_superblocks_between_compressed_chunks() -> None:
    objects = [(700_000, 1), (5_000, 2), (900_000, 3)]
    for algo in (Compression.LZ4, Compression.ZSTD):
        blocks = _blocks(objects, 200_000, algo, None)
        events, _state, walked = _read(blocks, True, views=True)
        assert walked >= len(blocks) // 2
        data = [bytes(e.data) for e in events if isinstance(e, ChunkRead)]
        whole = [loglike(size, seed) for size, seed in objects]
        assert data == [d[at:at + 200_000] for d in whole for at in range(0, len(d), 200_000)]


@pytest.mark.parametrize("kwargs", [{"views": False}, {"views": True, "decode": False},
                                    {"views": True, "want": lambda _sid, index: index != 1},
                                    {"views": True, "key": KEY}])
def test_readers_it_does_not_fit_never_walk(kwargs: dict[str, Any]) -> None:
    key = kwargs.get("key")
    blocks = _blocks([(500_000, 1), (300_000, 2)], 100_000, Compression.LZ4, key)
    walking = _read(blocks, True, **kwargs)
    python = _read(blocks, False, **kwargs)
    assert walking[:2] == python[:2]
    assert walking[2] == 0


def test_unusual_arguments_are_refused() -> None:
    assert walk_chunks is not None
    with pytest.raises(TypeError):
        walk_chunks(b"not a memoryview", bytes(16), 0, None, 0, None, -1, 0, 0, -1, -1, 0, 0, None, ())  # type: ignore[arg-type]
    assert walk_chunks(memoryview(bytes(SIZE)), bytes(16), 0, None, 0, None, -1, 0, 0, -1, -1, 0, 0, None,
                       tuple(_reader._WALK_TYPES)) is None


def test_the_assembly_the_walk_leaves_open_is_the_one_the_reader_makes() -> None:
    for algo in (Compression.LZ4, Compression.ZSTD):
        header = ChunkHeader(3, 4, 5, 1000, 400, algo, flags=ChunkFlags.STORED_HASH)
        pieces = [memoryview(b"abc"), memoryview(b"de")]
        made = ChunkAssembly(header, None, True)
        held = made.views_held()
        assert held is not None
        held += pieces
        holding = ChunkAssembly.holding(header, list(pieces))
        slots = ChunkAssembly.__slots__
        assert [getattr(holding, s) for s in slots] == [getattr(made, s) for s in slots]
