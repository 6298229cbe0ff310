"""The compiled decoder of compressed stored bytes (``_accel.unpack_stored``).

Its specification is the Python decoder (the content hash of the stored bytes, then
``_codecs.decompress``): on any input checked against the writer's hash, split into pieces
anywhere and damaged anyhow, it returns exactly what the Python code returns (None where that
raises: the Python code then decides and raises); on sound input it never declines. The
reader takes it, and reads the same with and without it.
"""

from __future__ import annotations

import itertools
from typing import Any

import lz4.block
import pytest
import xxhash
import zstandard
from format_helpers import KEY, loglike, write_session
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import ChunkRead, Compression, _chunk, fixed, scan
from pipevault.format._codecs import decompress
from pipevault.format.errors import IntegrityError

unpack_stored = _chunk._unpack_stored
pytestmark = pytest.mark.skipif(unpack_stored is None, reason="covered by test_format_accel")


def _stored(algo: Compression, plain: bytes) -> bytes:
    if algo is Compression.LZ4:
        return bytes(lz4.block.compress(plain, store_size=False))
    return bytes(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(plain))


def _python(algo: Compression, stored: bytes, plain_len: int, content_hash: bytes | None) -> bytes | None:
    """What the Python decoder delivers, None where it raises."""
    if content_hash is not None and xxhash.xxh3_128_digest(stored) != content_hash:
        return None
    try:
        return bytes(decompress(algo, stored, plain_len))
    except IntegrityError:
        return None


def _cut(data: bytes, cuts: list[int]) -> list[memoryview]:
    at = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *at, len(data)]
    return [memoryview(data)[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(algo=st.sampled_from([Compression.LZ4, Compression.ZSTD]), size=st.integers(0, 300_000),
       seed=st.integers(0, 9), cuts=st.lists(st.integers(0, 1 << 20), max_size=4),
       flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=2),
       extra=st.sampled_from([b"", b"\x00", b"junk"]), length_delta=st.sampled_from([0, 0, 0, -1, 1]),
       hashed=st.booleans())
def test_the_compiled_decoder_returns_what_the_python_decoder_returns(
        algo: Compression, size: int, seed: int, cuts: list[int], flips: list[tuple[int, int]], extra: bytes,
        length_delta: int, hashed: bool) -> None:
    assert unpack_stored is not None
    plain = loglike(size, seed)
    sound = _stored(algo, plain)
    stored = bytearray(sound + extra)
    for at, bit in flips:
        if stored:
            stored[at % len(stored)] ^= 1 << bit
    data = bytes(stored)
    plain_len = max(0, size + length_delta)
    # The hash the writer made: of the sound bytes (damage on the media changes them after).
    content_hash = xxhash.xxh3_128_digest(sound) if hashed else None
    pieces = _cut(data, cuts)
    got = unpack_stored(algo, pieces, plain_len, content_hash)
    want = _python(algo, data, plain_len, content_hash)
    split_header = algo is Compression.ZSTD and len(pieces[0]) < 18  # declined: the Python code decodes
    if hashed:
        assert got == want or (got is None and split_header)  # damage is caught by the hash on both paths
    else:
        # Without a hash the caller vouches for the bytes (a GCM tag): damaged ones, which an
        # invalid stream may decode to anything, may come out otherwise under the system's
        # zstd than under the Python package's.
        assert got is None or got == want or data != sound
    # Declined only where a zstd frame header (at most 18 bytes) is split over pieces.
    if data == sound and plain_len == size and not split_header:
        assert got == plain


def test_unusual_arguments_are_declined_or_refused() -> None:
    assert unpack_stored is not None
    data = _stored(Compression.ZSTD, b"abc" * 1000)
    assert unpack_stored(Compression.ZSTD, [data], 3000, None) == b"abc" * 1000
    assert unpack_stored(Compression.NONE, [data], 3000, None) is None
    assert unpack_stored(Compression.ZSTD, [data], 3000, b"short") is None
    assert unpack_stored(Compression.ZSTD, [data[:5], data[5:]], 3000, None) is None  # header split
    assert unpack_stored(Compression.ZSTD, [], 0, None) is None
    assert unpack_stored(Compression.ZSTD, [data], 65 << 20, None) is None
    with pytest.raises(TypeError):
        unpack_stored(Compression.ZSTD, [data], 3000, "hash")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        unpack_stored(Compression.ZSTD, [data, 5], 3000, None)


@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("algo", [Compression.LZ4, Compression.ZSTD])
def test_the_reader_takes_it_and_reads_the_same_without_it(monkeypatch: pytest.MonkeyPatch, algo: Compression,
                                                           key: bytes | None) -> None:
    objects = [(b"/a", loglike(700_000, 1)), (b"/b", loglike(3_000, 2)), (b"/c", loglike(260_000, 3))]
    _w, blocks = write_session(objects, size=1 << 16, chunk_size=300_000, selector=fixed(algo), key=key)
    calls: list[int] = []
    original = _chunk._unpack_stored
    assert original is not None

    def counting(*args: Any) -> bytes | None:
        calls.append(len(args[1]))
        return original(*args)

    def read(views: bool) -> list[bytes]:
        return [b"".join(bytes(p) for p in e.pieces) for e in scan(blocks, key=key, views=views)
                if isinstance(e, ChunkRead)]

    monkeypatch.setattr(_chunk, "_unpack_stored", counting)
    compiled = read(True), read(False)
    assert max(calls) > 1 if key is None else calls  # several pieces, no join first
    monkeypatch.setattr(_chunk, "_unpack_stored", None)
    python = read(True), read(False)
    whole = [data[at:at + 300_000] for _name, data in objects for at in range(0, len(data), 300_000)]
    assert compiled == python == (whole, whole)


@pytest.mark.parametrize("size", [100, 5_000, 70_000])
def test_pieces_joined_and_hashed_in_one_pass_at_every_cut(size: int) -> None:
    # lz4's pieces are joined a kilobyte block at a time as they are hashed (_accel_xxh.c):
    # cuts anywhere (inside stripes and blocks, one-byte pieces), lengths around the blocks.
    assert unpack_stored is not None
    plain = loglike(size, 7)
    stored = _stored(Compression.LZ4, plain)
    digest = xxhash.xxh3_128_digest(stored)
    for first in range(0, min(len(stored), 2100), 3):
        second = first + (first * 7919) % (len(stored) - first + 1)
        pieces = _cut(stored, [first, second, second + 1])
        assert unpack_stored(Compression.LZ4, pieces, size, digest) == plain
        assert unpack_stored(Compression.LZ4, pieces, size, bytes(16)) is None
