"""What the superblock checksum covers, and the writer's and reader's fast paths for chunk bytes.

The checksum covers everything but the stored bytes of DATA records (docs/format.md §2); those
are checked per chunk. The writer packs an untransformed chunk by copying first and hashing
after, sealing the superblocks it filled late; the reader gathers chunk pieces with
:class:`ChunkAssembly` (decrypting straight out of superblocks). Each fast path must give
exactly what the plain path gives.
"""

from __future__ import annotations

import random
import uuid

from format_helpers import KEY, loglike
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.format import (
    ArchiveHeader,
    ChunkRead,
    Compression,
    Damage,
    Scanner,
    SessionHeader,
    SessionWriter,
    fixed,
    peek_header,
    verify,
)
from pipevault.format._superblock import data_spans
from pipevault.format.errors import FormatError

SID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")


def _writer(**kw: object) -> SessionWriter:
    return SessionWriter(SessionHeader(job="j", created_ns=1), session_id=SID, size=1 << 16,
                         clock=ManualClock(5.0), **kw)  # type: ignore[arg-type]


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(0, 150_000), min_size=1, max_size=4), chunk=st.integers(1, 120_000))
def test_copy_then_hash_path_writes_the_same_bytes_as_encode_then_add(sizes: list[int], chunk: int) -> None:
    fast, slow = _writer(selector=fixed(Compression.NONE), chunk_size=chunk), _writer()
    for i, size in enumerate(sizes):
        data = memoryview(loglike(size, i))
        fast.begin_object(ArchiveHeader(name=b"/o"))
        slow.begin_object(ArchiveHeader(name=b"/o"))
        fast.write(data)
        for start in range(0, size, chunk):
            slow.add_chunk(slow.encoder.encode(data[start:start + chunk], *slow.next_chunk(), (Compression.NONE, 0)))
        fast.end_object()
        slow.end_object()
    fast.close()
    slow.close()
    assert [bytes(b) for b in fast.take()] == [bytes(b) for b in slow.take()]


def _blocks(key: bytes | None = None, algo: Compression = Compression.NONE) -> tuple[bytes, list[memoryview]]:
    w = _writer(selector=fixed(algo), key=key, chunk_size=100_000)
    data = loglike(300_000, 9)
    w.begin_object(ArchiveHeader(name=b"/big"))
    w.write(data)
    w.end_object()
    w.close()
    return data, [memoryview(bytearray(b)) for b in w.take()]


def test_checksum_covers_every_byte_but_stored_bytes() -> None:
    _, blocks = _blocks()
    block = blocks[1]
    header = peek_header(block)
    end = 64 + header.payload_len
    spans = data_spans(block, 64, end)
    assert spans and sum(b - a for a, b in spans) > header.payload_len * 0.9
    stored = {i for a, b in spans for i in range(a, b)}
    rng = random.Random(3)
    for at in rng.sample(range(end), 400) + list(range(64 + 40)):
        copy = memoryview(bytearray(block))
        copy[at] ^= 0x04
        if at in stored:
            verify(copy)  # left to the chunk's own check
        else:
            try:
                verify(copy)
            except FormatError:
                continue
            raise AssertionError(f"a flip at byte {at} outside the stored bytes went unnoticed")


def _read(blocks: list[memoryview], key: bytes | None = None) -> tuple[bytes, list[Damage]]:
    scanner = Scanner(key=key)
    shared = bytearray(1 << 16)  # one buffer reused for every superblock, as a pool does
    out = bytearray()
    damages: list[Damage] = []
    for block in blocks:
        shared[:] = block
        for ev in scanner.feed(memoryview(shared)):
            if isinstance(ev, ChunkRead) and ev.data is not None:
                out += ev.data
            elif isinstance(ev, Damage):
                damages.append(ev)
        shared[:] = b"\xee" * len(shared)
    return bytes(out), damages + [e for e in scanner.finish() if isinstance(e, Damage)]


def test_pieces_are_decrypted_or_hashed_out_of_reused_buffers() -> None:
    for key in (None, KEY):
        for algo in (Compression.NONE, Compression.LZ4, Compression.ZSTD):
            data, blocks = _blocks(key, algo)
            got, damages = _read(blocks, key)
            assert not damages and got == data, (key is not None, algo)


def test_flipped_stored_byte_of_an_encrypted_chunk_is_integrity_damage_of_that_chunk() -> None:
    data, blocks = _blocks(KEY, Compression.ZSTD)
    block = blocks[0]
    a, b = data_spans(block, 64, 64 + peek_header(block).payload_len)[0]
    block[(a + b) // 2] ^= 0x80
    got, damages = _read(blocks, KEY)
    (d,) = damages
    assert d.kind == "integrity" and "authentication" in d.message
    (hit,) = d.affected
    assert hit.end is not None and hit.end - hit.start == 100_000
    assert got == data[:hit.start] + data[hit.end:]
