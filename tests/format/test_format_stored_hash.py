"""Format 1.1 chunks (``STORED_HASH``) next to format 1.0 ones (docs/format.md §5.1, §5.4).

A 1.1 chunk's content hash covers its stored bytes (none under encryption: the GCM tag covers
them). Both layouts must read back to the bytes written, in one session or mixed on one
medium, and in both a flipped stored bit must be caught before any byte is delivered.
"""

from __future__ import annotations

import uuid

import pytest
import xxhash
from format_helpers import KEY, collect, loglike, write_session
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import (
    ChunkDecoder,
    ChunkEncoder,
    ChunkFlags,
    ChunkRead,
    Compression,
    Scanner,
    SessionKeys,
    fixed,
    peek_header,
    scan,
    verify,
)
from pipevault.format._records import RECORD_HEADER, RECORD_HEADER_LEN, TAG_LEN, RecordType
from pipevault.format._superblock import Required
from pipevault.format.errors import IntegrityError

TRANSFORMS = [(Compression.NONE, None), (Compression.LZ4, None), (Compression.ZSTD, None),
              (Compression.ZSTD, KEY), (Compression.NONE, KEY)]


def _session(data: bytes, comp: Compression, key: bytes | None, stored_hash: bool,
             chunk_size: int = 50_000) -> list[memoryview]:
    level = 1 if comp is Compression.ZSTD else 0
    _w, blocks = write_session([(b"/a", data), (b"/b", data[::-1])], size=1 << 16, key=key,
                               selector=fixed(comp, level), chunk_size=chunk_size, stored_hash=stored_hash)
    return blocks


def _chunk_headers(blocks: list[memoryview]) -> list[tuple[int, int]]:
    """``(flags, compression)`` of every chunk header on the blocks."""
    found = []
    for block in blocks:
        _h, payload = verify(block)
        pos = 0
        while pos + RECORD_HEADER_LEN <= len(payload):
            rtype, _f, _r, length = RECORD_HEADER.unpack_from(payload, pos)
            body = payload[pos + RECORD_HEADER_LEN:pos + RECORD_HEADER_LEN + length]
            if rtype == RecordType.CHUNK_HEADER:
                found.append((body[27], body[24]))
            pos += RECORD_HEADER_LEN + length
    return found


@pytest.mark.parametrize(("comp", "key"), TRANSFORMS)
@pytest.mark.parametrize("stored_hash", [True, False])
def test_both_layouts_read_back_and_are_marked(comp: Compression, key: bytes | None, stored_hash: bool) -> None:
    data = loglike(180_000, 3)
    blocks = _session(data, comp, key, stored_hash)
    views, loose = collect(scan(blocks, key=KEY))
    (view,) = views.values()
    assert not loose and not view.damage and view.complete
    assert (bytes(view.data[0]), bytes(view.data[1])) == (data, data[::-1])
    flags = [f for f, _c in _chunk_headers(blocks)]
    assert flags and all(bool(f & ChunkFlags.STORED_HASH) == stored_hash for f in flags)
    last = peek_header(blocks[-1])
    assert bool(last.required & Required.STORED_HASH) == stored_hash


def test_sessions_of_both_layouts_read_back_from_one_medium() -> None:
    data = loglike(120_000, 5)
    old = _session(data, Compression.ZSTD, KEY, stored_hash=False)
    new = _session(data, Compression.ZSTD, KEY, stored_hash=True)
    mixed = [b for pair in zip(old, new, strict=False) for b in pair] + old[len(new):] + new[len(old):]
    views, loose = collect(scan(mixed, key=KEY))
    assert not loose and len(views) == 2
    for view in views.values():
        assert not view.damage and view.complete and bytes(view.data[0]) == data


def test_unencrypted_stored_hash_is_the_hash_of_the_stored_bytes() -> None:
    enc = ChunkEncoder(uuid.uuid4(), selector=fixed(Compression.LZ4))
    plain = memoryview(loglike(70_000, 1))
    chunk = enc(plain, 0, 0, 0)
    assert chunk.header.flags & ChunkFlags.STORED_HASH
    assert chunk.header.content_hash == xxhash.xxh3_128_digest(chunk.stored)
    assert len(chunk.stored) < len(plain)


def test_encrypted_stored_hash_chunk_writes_no_function_of_the_plaintext() -> None:
    sid = uuid.uuid4()
    keys = SessionKeys.derive(KEY, sid)
    plain = memoryview(loglike(70_000, 2))
    chunk = ChunkEncoder(sid, keys=keys, selector=fixed(Compression.ZSTD, 1))(plain, 0, 0, 0)
    assert chunk.header.content_hash == bytes(16) and chunk.footer.sealed_hash == bytes(16)
    assert chunk.footer.tag != bytes(16) and len(chunk.stored) == chunk.header.stored_len
    assert bytes(ChunkDecoder(sid, keys)(chunk.header, chunk.stored, chunk.footer)) == bytes(plain)


@pytest.mark.parametrize(("comp", "key"), TRANSFORMS)
@pytest.mark.parametrize("stored_hash", [True, False])
def test_one_shot_decoder_refuses_a_flipped_stored_bit(comp: Compression, key: bytes | None,
                                                       stored_hash: bool) -> None:
    sid = uuid.uuid4()
    keys = SessionKeys.derive(key, sid) if key else None
    level = 1 if comp is Compression.ZSTD else 0
    enc = ChunkEncoder(sid, keys=keys, selector=fixed(comp, level), stored_hash=stored_hash)
    chunk = enc(memoryview(loglike(40_000, 4)), 0, 0, 0)
    stored = bytearray(chunk.stored)
    stored[len(stored) // 3] ^= 0x10
    with pytest.raises(IntegrityError):
        ChunkDecoder(sid, keys)(chunk.header, stored, chunk.footer)


def _stored_spans(block: memoryview) -> list[tuple[int, int]]:
    """Offsets in ``block`` of the stored bytes of its DATA records."""
    header, payload = verify(block)
    spans, pos = [], 0
    while pos + RECORD_HEADER_LEN <= len(payload):
        rtype, _f, _r, length = RECORD_HEADER.unpack_from(payload, pos)
        if rtype == RecordType.DATA and length > TAG_LEN:
            start = header.header_len + pos + RECORD_HEADER_LEN + TAG_LEN
            spans.append((start, start + length - TAG_LEN))
        pos += RECORD_HEADER_LEN + length
    return spans


@settings(max_examples=40, deadline=None)
@given(which=st.integers(0, len(TRANSFORMS) - 1), stored_hash=st.booleans(), pick=st.integers(0, 10**9),
       bit=st.integers(0, 7))
def test_a_flipped_stored_bit_costs_its_chunk_and_no_wrong_byte_is_delivered(
        which: int, stored_hash: bool, pick: int, bit: int) -> None:
    comp, key = TRANSFORMS[which]
    data = loglike(150_000, 6)
    blocks = [memoryview(bytearray(b)) for b in _session(data, comp, key, stored_hash, chunk_size=30_000)]
    where = [(i, lo, hi) for i, b in enumerate(blocks) for lo, hi in _stored_spans(b)]
    i, lo, hi = where[pick % len(where)]
    at = lo + pick % (hi - lo)
    blocks[i][at] ^= 1 << bit  # the superblock checksum leaves stored bytes out: still valid
    verify(blocks[i])
    scanner = Scanner(key=KEY)
    delivered: list[ChunkRead] = []
    damage = []
    for b in blocks:
        for e in scanner.feed(b):
            (delivered if isinstance(e, ChunkRead) else damage).append(e)  # type: ignore[arg-type]
    caught = [d.kind for d in damage if getattr(d, "kind", None) == "integrity"]
    # 1.1 catches every flip; 1.0 checks the plaintext, so a flip the decompressor ignores
    # (a zstd frame header flag, say) goes unnoticed and the right bytes are delivered.
    assert caught == ["integrity"] if stored_hash or key else len(caught) <= 1
    sources = {0: data, 1: data[::-1]}
    for c in delivered:
        h = c.header
        assert bytes(c.data or b"") == sources[h.object_index][h.object_offset:h.object_offset + h.plain_len]
    assert len(delivered) == sum(-(-len(d) // 30_000) for d in sources.values()) - len(caught)

