"""Damaged media: every problem ends in a precise damage report or a clear error, never wrong data."""

from __future__ import annotations

import random

import pytest
from format_helpers import KEY, loglike, write_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipevault.format import (
    ChunkRead,
    Compression,
    Damage,
    Event,
    ObjectStarted,
    SessionEnded,
    fixed,
    scan,
    split,
)
from pipevault.format._superblock import write_header
from pipevault.format.errors import KeyRequiredError, WrongKeyError

SIZE = 1 << 16
OBJECTS = [(b"/small-0", loglike(3_000, 1)), (b"/big", loglike(400_000, 2)), (b"/small-1", loglike(2_000, 3)),
           (b"/small-2", loglike(1_000, 4)), (b"/mid", loglike(150_000, 5))]


def _session(**kw: object) -> list[memoryview]:
    _, blocks = write_session(OBJECTS, size=SIZE, chunk_size=100_000, selector=fixed(Compression.NONE), **kw)
    return [memoryview(bytearray(b)) for b in blocks]


def check_no_wrong_data(events: list[Event], objects: list[tuple[bytes, bytes]]
                        ) -> tuple[list[Damage], set[int]]:
    """Every byte delivered is right; every byte not delivered is named in a damage report."""
    delivered: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(objects))}
    damages = [e for e in events if isinstance(e, Damage)]
    for e in events:
        if isinstance(e, ObjectStarted):
            assert objects[e.header.object_index][0] == e.header.name
        if isinstance(e, ChunkRead):
            h = e.header
            original = objects[h.object_index][1][h.object_offset:h.object_offset + h.plain_len]
            assert e.data is not None and bytes(e.data) == original
            delivered[h.object_index].append((h.object_offset, h.object_offset + h.plain_len))
    wildcard = any(a.object_index is None for d in damages for a in d.affected)
    named = {a.object_index for d in damages for a in d.affected if a.object_index is not None}
    incomplete = set()
    for index, (_, data) in enumerate(objects):
        reported = [(a.start, len(data) if a.end is None else a.end)
                    for d in damages for a in d.affected if a.object_index == index]
        if _reach(delivered[index]) < len(data):
            incomplete.add(index)
        at = _reach(delivered[index] + reported)
        if at < len(data):
            assert wildcard and index > max(named | {i for i, r in delivered.items() if r}, default=-1), (
                f"object {index} bytes {at}.. neither delivered nor reported: "
                f"{[d.describe() for d in damages]}")
    return damages, incomplete


def _reach(ranges: list[tuple[int, int]]) -> int:
    """How far from 0 the ranges cover without a hole."""
    at = 0
    for start, end in sorted(ranges):
        if start > at:
            break
        at = max(at, end)
    return at


def test_clean_session_has_no_damage() -> None:
    damages, incomplete = check_no_wrong_data(list(scan(_session())), OBJECTS)
    assert not damages and not incomplete


def test_lost_superblock_reports_object_and_byte_range() -> None:
    blocks = _session()
    del blocks[3]
    events = list(scan(blocks))
    damages, incomplete = check_no_wrong_data(events, OBJECTS)
    (d,) = damages
    assert d.kind == "lost" and (d.first_seq, d.last_seq) == (3, 3)
    (a,) = d.affected
    assert a.object_index == 1 and a.name == b"/big"
    # 100 kB chunks over 64 KiB superblocks: the lost one cuts one or two chunks, no more.
    assert a.start % 100_000 == 0 and a.end is not None and a.end - a.start in (100_000, 200_000)
    assert incomplete == {1}
    assert any(isinstance(e, SessionEnded) for e in events)


def test_bit_flip_in_framing_is_reported_where_it_is() -> None:
    blocks = _session()
    blocks[2][64 + 12] ^= 0x40  # the record or tag header opening the superblock's payload
    damages, incomplete = check_no_wrong_data(list(scan(blocks)), OBJECTS)
    assert [d.kind for d in damages] == ["unreadable", "lost"]
    assert "checksum" in damages[0].message and damages[1].affected[0].object_index == 1
    assert incomplete == {1}


def test_bit_flip_in_stored_bytes_spoils_only_its_chunk() -> None:
    blocks = _session()
    blocks[2][5000] ^= 0x40  # inside a DATA record's stored bytes: the chunk's content hash catches it
    damages, incomplete = check_no_wrong_data(list(scan(blocks)), OBJECTS)
    (d,) = damages
    assert d.kind == "integrity" and "content hash" in d.message
    (a,) = d.affected
    assert a.object_index == 1 and a.end is not None and a.end - a.start == 100_000
    assert incomplete == {1}


def test_lost_headers_of_small_objects_are_named_by_index() -> None:
    blocks = _session()
    # The superblock holding the end of /big and the headers of /small-1 and /small-2.
    target = next(i for i, b in enumerate(blocks) if b"/small-1" in bytes(b))
    del blocks[target]
    damages, incomplete = check_no_wrong_data(list(scan(blocks)), OBJECTS)
    (d,) = damages
    indexes = [a.object_index for a in d.affected]
    assert 2 in indexes and 3 in indexes
    assert {2, 3} <= incomplete


def test_duplicated_superblocks_are_dropped_silently() -> None:
    blocks = _session()
    doubled = [b for blk in blocks for b in (blk, blk)]
    damages, incomplete = check_no_wrong_data(list(scan(doubled)), OBJECTS)
    assert not damages and not incomplete


def test_conflicting_superblock_is_reported_and_ignored() -> None:
    from pipevault.format import peek_header
    blocks = _session()
    # Same session id and seq, different framing: a changed copy of block 2, sealed anew.
    # (A copy differing in stored bytes only has the same checksum: it is dropped as a
    # duplicate, and the first copy's chunks were checked by their content hashes.)
    forged = memoryview(bytearray(blocks[2]))
    forged[64 + 12] ^= 0xFF
    write_header(forged, peek_header(forged))
    events = list(scan([*blocks[:3], forged, *blocks[3:]]))
    damages, incomplete = check_no_wrong_data(events, OBJECTS)
    assert [d.kind for d in damages] == ["conflict"] and not incomplete


def test_media_ending_early_is_truncation() -> None:
    blocks = _session()
    damages, incomplete = check_no_wrong_data(list(scan(blocks[:4])), OBJECTS)
    (d,) = damages
    assert d.kind == "truncated"
    assert any(a.object_index is None for a in d.affected)
    assert incomplete


def test_session_start_not_seen() -> None:
    blocks = _session()
    damages, _ = check_no_wrong_data(list(scan(blocks[2:])), OBJECTS)
    first = damages[0]
    assert first.kind == "lost" and first.first_seq == 0 and first.affected[0].object_index == 0


def test_byte_stream_resync_after_garbage_and_cut() -> None:
    blocks = _session()
    head, tail = b"".join(bytes(b) for b in blocks[:2]), b"".join(bytes(b) for b in blocks[2:])
    stream = head + b"\x00junk" * 333 + tail
    events = list(scan(split(stream[:-SIZE // 2], SIZE)))
    damages, _ = check_no_wrong_data(events, OBJECTS)
    kinds = [d.kind for d in damages]
    assert kinds[0] == "unreadable" and "junk" not in damages[0].message
    assert "truncated" in kinds or "unreadable" in kinds[1:]


def test_split_without_known_size_and_with_shift() -> None:
    blocks = _session()
    stream = bytes(blocks[0])[:1000] + b"".join(bytes(b) for b in blocks[1:])
    events = list(scan(split(stream)))
    damages, _ = check_no_wrong_data(events, OBJECTS)
    assert damages and damages[0].kind == "unreadable"
    assert any(isinstance(e, SessionEnded) for e in events)


def test_wrong_key_and_missing_key_are_clear_errors() -> None:
    blocks = _session(key=KEY)
    with pytest.raises(WrongKeyError):
        list(scan(blocks, key=bytes(32)))
    with pytest.raises(KeyRequiredError):
        list(scan(blocks))
    events = list(scan(blocks, decode=False))  # catalog rebuild needs no key
    assert sum(isinstance(e, ObjectStarted) for e in events) == len(OBJECTS)
    assert not any(isinstance(e, Damage) for e in events)


def test_tampered_encrypted_chunk_with_forged_checksum_is_integrity_damage() -> None:
    from pipevault.format._superblock import peek_header
    blocks = _session(key=KEY)
    target = blocks[2]
    target[3000] ^= 0x01
    write_header(target, peek_header(target))  # an attacker re-seals the superblock
    damages, _ = check_no_wrong_data(list(scan(blocks, key=KEY)), OBJECTS)
    assert [d.kind for d in damages] == ["integrity"]
    (a,) = damages[0].affected
    assert a.object_index == 1 and a.end is not None and a.end - a.start == 100_000


mutations = st.lists(st.tuples(st.sampled_from(["lose", "flip", "dup", "cut", "swap", "zero"]),
                               st.integers(0, 1000), st.integers(0, SIZE - 1)), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(muts=mutations, encrypt=st.booleans(), as_stream=st.booleans())
def test_mutated_streams_never_yield_wrong_data(muts: list[tuple[str, int, int]], encrypt: bool,
                                                as_stream: bool) -> None:
    blocks = _session(key=KEY if encrypt else None)
    for op, which, at in muts:
        if not blocks:
            break
        i = which % len(blocks)
        if op == "lose":
            del blocks[i]
        elif op == "flip" and at < len(blocks[i]):
            blocks[i][at] ^= 1 << (which % 8)
        elif op == "dup":
            blocks.insert(i, blocks[i])
        elif op == "cut":
            blocks[i] = blocks[i][:at]
        elif op == "swap" and i + 1 < len(blocks):
            blocks[i], blocks[i + 1] = blocks[i + 1], blocks[i]
        elif op == "zero":
            blocks[i][at:at + 512] = bytes(len(blocks[i][at:at + 512]))
    source = split(b"".join(bytes(b) for b in blocks), SIZE) if as_stream else blocks
    events = list(scan(source, key=KEY))
    check_no_wrong_data(events, OBJECTS)


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=4000), seed=st.integers(0, 10**6))
def test_fuzz_random_bytes_never_crash(data: bytes, seed: int) -> None:
    rnd = random.Random(seed)
    # Random bytes, sometimes with a magic planted so the parser goes deeper.
    blob = bytearray(data)
    if blob and rnd.random() < 0.7:
        at = rnd.randrange(len(blob))
        blob[at:at] = b"\x89PVSB\r\n\x1a\x01\x00\x40\x00\x10"
    events = list(scan(split(bytes(blob)), key=KEY))
    assert all(isinstance(e, Damage) for e in events)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(muts=st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 255)), min_size=1, max_size=6),
       encrypt=st.booleans())
def test_fuzz_resealed_mutations(muts: list[tuple[int, int]], encrypt: bool) -> None:
    """Records changed under a valid checksum: only the reader's structure checks stand guard.

    The checksum guards against accidents, not against someone who re-seals a superblock, so
    here only chunk data must stay right (its content hash or GCM tag protects it) and the
    reader may only fail with a documented error.
    """
    from pipevault.format import peek_header
    from pipevault.format.errors import UnsupportedFeatureError
    blocks = _session(key=KEY if encrypt else None)
    for pos, value in muts:
        block = blocks[pos % len(blocks)]
        header = peek_header(block)
        block[64 + pos % max(1, header.payload_len)] = value
        write_header(block, header)
    try:
        events = list(scan(blocks, key=KEY))
    except (UnsupportedFeatureError, WrongKeyError, KeyRequiredError):
        return  # a changed key check value or transform id: a clear error, no data
    for e in events:
        if isinstance(e, ChunkRead):
            h = e.header
            assert e.data is not None
            assert bytes(e.data) == OBJECTS[h.object_index][1][h.object_offset:h.object_offset + h.plain_len]


def test_crafted_streams_full_of_fake_headers_end_in_damage_reports() -> None:
    """Fake magics and well-formed headers everywhere: the scan ends, reporting only damage."""
    import struct

    from pipevault.format._superblock import MAGIC
    fake = bytearray(64)
    fake[:8] = MAGIC
    fake[8], fake[12] = 1, 24
    struct.pack_into("<HI", fake, 10, 64, 0)
    struct.pack_into("<I", fake, 48, (1 << 24) - 64)
    for stream in (b"junk" + bytes(fake) * 65536, MAGIC * 500_000, b"\x00" * 70_000 + MAGIC * 10_000):
        events = list(scan(split(stream)))
        assert events and all(isinstance(e, Damage) for e in events)
