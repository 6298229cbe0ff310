"""The compiled packer of whole chunks (``_accel.pack_plain``), untransformed or compressed.

Its specification is the writer's Python path (``SessionWriter._put_plain_python``, and for
compressed chunks the encoder with ``add_chunk``): with any
layout (chunks starting anywhere in a superblock, headers or footers that do not fit, chunks
of every size, options and small objects in between, a session that starts with flags), the
compiled writer must write the same superblocks, keep the same resume points and put the
xxh3-128 of the stored bytes, as python-xxhash computes it, in each chunk header.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from typing import Any

import pytest
import xxhash
from format_helpers import loglike
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.format import ArchiveHeader, ChunkRead, Compression, SessionHeader, SessionWriter, _writer, fixed, scan
from pipevault.format._writer import KEEP_POINTS
from pipevault.format.errors import LimitError

_SID = uuid.UUID(int=0x5EED)
SIZE = 1 << 16


def _session(objects: list[tuple[int, int]], chunk: int, stored_hash: bool, lead: int,
             comp: Compression = Compression.NONE) -> tuple[list[bytes], list[Any]]:
    """Superblocks and resume points of a session of ``objects`` (size, seed) cut into ``chunk``;
    objects of a seed divisible by 5 are random bytes (compressed chunks of them stored raw)."""
    w = SessionWriter(SessionHeader(job="j" * lead, created_ns=1), session_id=_SID, size=SIZE,
                      selector=fixed(comp), chunk_size=chunk, clock=ManualClock(5.0), stored_hash=stored_hash)
    for i, (size, seed) in enumerate(objects):
        w.begin_object(ArchiveHeader(name=b"/o%d" % i, size=size))
        if seed % 3 == 0:
            w.options({"k": b"v" * (seed * 37 % 500)}, chunk=True)
        w.write(random.Random(seed).randbytes(size) if seed % 5 == 0 else loglike(size, seed))
        w.end_object()
    w.close()
    blocks = [bytes(b) for b in w.take()]
    points = [w.resume_point(seq) for seq in range(max(0, w.seq - KEEP_POINTS), w.seq)]
    return blocks, points


@settings(max_examples=25, deadline=None)
@given(objects=st.lists(st.tuples(st.integers(0, 150_000), st.integers(0, 50)), min_size=1, max_size=4),
       chunk=st.sampled_from([1, 100, SIZE - 200, SIZE - 96, SIZE - 32, SIZE, 3 * SIZE + 17, 70_000]),
       stored_hash=st.booleans(), lead=st.integers(0, 40_000),
       comp=st.sampled_from([Compression.NONE, Compression.NONE, Compression.LZ4, Compression.ZSTD]))
def test_the_compiled_chunk_packer_writes_what_the_python_writer_writes(
        objects: list[tuple[int, int]], chunk: int, stored_hash: bool, lead: int, comp: Compression) -> None:
    # Without the packer, compressed chunks go through the encoder and add_chunk.
    assert _writer.pack_plain is not None
    compiled = _session(objects, chunk, stored_hash, lead, comp)
    saved = _writer.pack_plain
    try:
        _writer.pack_plain = None
        python = _session(objects, chunk, stored_hash, lead, comp)
    finally:
        _writer.pack_plain = saved
    assert compiled[0] == python[0]
    assert compiled[1] == python[1]


def test_the_content_hash_is_python_xxhash_s_xxh3_128() -> None:
    data = loglike(700_000, 4)
    w = SessionWriter(size=SIZE, selector=fixed(Compression.NONE), chunk_size=300_001)
    w.begin_object(ArchiveHeader(name=b"/h"))
    w.write(data)
    w.end_object()
    w.close()
    reads = [e for e in scan(w.take()) if isinstance(e, ChunkRead)]
    assert [e.header.content_hash for e in reads] == [
        xxhash.xxh3_128_digest(data[at:at + 300_001]) for at in range(0, len(data), 300_001)]
    assert b"".join(bytes(e.data) for e in reads if e.data is not None) == data


def test_the_writer_takes_the_compiled_packer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = _writer.pack_plain
    assert original is not None

    def counting(*args: Any) -> Any:
        calls.append(len(args[11]))
        return original(*args)

    monkeypatch.setattr(_writer, "pack_plain", counting)
    w = SessionWriter(size=SIZE, selector=fixed(Compression.NONE), chunk_size=200_000)
    w.begin_object(ArchiveHeader(name=b"/big"))
    w.write(loglike(500_000, 1))
    w.end_object()
    w.close()
    assert calls == [200_000, 200_000, 100_000]


def test_a_short_buffer_from_allocate_is_refused() -> None:
    assert _writer.pack_plain is not None
    with pytest.raises(LimitError, match="superblock buffer of 100 bytes"):
        _writer.pack_plain(lambda: memoryview(bytearray(100)), None, 64, 0, bytes(16), 0, 16, 0, 0, bytes(96),
                           bytes(48), b"x", [], [None], (0,), True)
    with pytest.raises(ValueError, match="wrong size"):
        _writer.pack_plain(lambda: memoryview(bytearray(SIZE)), None, 64, 0, bytes(15), 0, 16, 0, 0, bytes(96),
                           bytes(48), b"x", [], [None], (0,), True)
    with pytest.raises(TypeError, match="lists"):
        _writer.pack_plain(lambda: memoryview(bytearray(SIZE)), None, 64, 0, bytes(16), 0, 16, 0, 0, bytes(96),
                           bytes(48), b"x", [], [], (0,), True)
    with pytest.raises(ZeroDivisionError):
        _writer.pack_plain(lambda: memoryview(bytearray(1 // 0)), None, 64, 0, bytes(16), 0, 16, 0, 0, bytes(96),
                           bytes(48), b"x", [], [None], (0,), True)


@pytest.mark.parametrize("lead", [0, 300, SIZE // 2 - 50])
def test_the_hash_computed_while_copying_is_xxh3_128_at_every_length(lead: int) -> None:
    # The packer hashes in the copy's pass a kilobyte block at a time (_accel_xxh.c): lengths
    # around the 240-byte short-input limit, the stripes and blocks, and superblock ends.
    lengths = [*range(1100), *range(1100, 4200, 13), SIZE - 300, SIZE - 100, SIZE + 13, 3 * SIZE + 1000]
    data = random.Random(lead).randbytes(max(lengths))
    w = SessionWriter(size=SIZE, selector=fixed(Compression.NONE))
    w.begin_object(ArchiveHeader(name=b"/every-length"))
    w.options({"pad": b"p" * lead})
    for n in lengths:
        w.write(data[:n])
    w.end_object()
    w.close()
    reads = [e for e in scan(w.take()) if isinstance(e, ChunkRead)]
    assert [e.header.content_hash for e in reads] == [xxhash.xxh3_128_digest(data[:n]) for n in lengths if n]
    assert [b"".join(bytes(p) for p in e.pieces) for e in reads] == [data[:n] for n in lengths if n]


@pytest.mark.parametrize("extra", [0, 1000])
def test_the_writer_s_pool_buffers_are_used_as_the_python_writer_uses_them(extra: int) -> None:
    # The compiled packer calls the pool's allocate itself: a longer buffer is sliced to a
    # superblock, a shorter one refused with LimitError, as SessionWriter._new_buffer does.
    def session(allocate: Any) -> list[bytes]:
        w = SessionWriter(SessionHeader(created_ns=1), session_id=_SID, size=SIZE, selector=fixed(Compression.NONE),
                          clock=ManualClock(5.0), allocate=allocate)
        w.begin_object(ArchiveHeader(name=b"/pool"))
        w.write(loglike(300_000, 9))
        w.end_object()
        w.close()
        blocks = w.take()
        assert all(len(b) == SIZE for b in blocks)
        return [bytes(b) for b in blocks]

    exact = session(lambda size: memoryview(bytearray(size)))
    assert session(lambda size: memoryview(bytearray(size + extra))) == exact
    with pytest.raises(LimitError, match="allocated superblock buffer"):
        session(lambda size: memoryview(bytearray(size - 1)))


_WITHOUT_AVX2 = """
import random, xxhash, lz4.block
from pipevault.format import ArchiveHeader, ChunkRead, Compression, SessionWriter, fixed, scan
from pipevault.format._accel import unpack_stored
lengths = [*range(200, 1300), 5000, 70_000, 300_001]
data = random.Random(1).randbytes(max(lengths))
w = SessionWriter(size=1 << 16, selector=fixed(Compression.NONE))
w.begin_object(ArchiveHeader(name=b"/x"))
for n in lengths:
    w.write(data[:n])
w.end_object()
w.close()
got = [e.header.content_hash for e in scan(w.take()) if isinstance(e, ChunkRead)]
assert got == [xxhash.xxh3_128_digest(data[:n]) for n in lengths]
stored = lz4.block.compress(data[:300_001], store_size=False)
pieces = [stored[:1000], stored[1000:70_000], stored[70_000:]]
assert unpack_stored(1, pieces, 300_001, xxhash.xxh3_128_digest(stored)) == data[:300_001]
print("ok")
"""


def test_the_kernel_without_avx2_hashes_alike() -> None:
    # Machines without AVX2 run the same kernel on xxhash.h's default steps; the variable
    # makes this one do so (read when the extension is loaded, hence another process).
    env = {**os.environ, "PIPEVAULT_ACCEL_NO_AVX2": "1"}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_AVX2], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
