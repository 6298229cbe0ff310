"""Whole sessions: written, interleaved on one medium, scanned back byte-exact."""

from __future__ import annotations

import random
import uuid

import pytest
from format_helpers import KEY, collect, loglike, write_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.format import (
    ArchiveHeader,
    ChunkEncoder,
    Compression,
    ObjectStatus,
    OptionsRead,
    Scanner,
    SessionFooter,
    SessionHeader,
    SessionStarted,
    SessionStatus,
    SessionWriter,
    fixed,
    scan,
    verify,
)
from pipevault.format.errors import LimitError, WriterStateError

SIZE = 1 << 16

objects_st = st.lists(st.tuples(st.binary(min_size=1, max_size=30), st.integers(0, 300_000),
                                st.integers(0, 99)),
                      min_size=0, max_size=4)


def _objects(spec: list[tuple[bytes, int, int]]) -> list[tuple[bytes, bytes]]:
    return [(name, loglike(n, seed)) for name, n, seed in spec]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions=st.lists(st.tuples(objects_st, st.sampled_from(["none", "lz4", "zstd", "zstd+aes"]),
                                   st.integers(1, 3), st.integers(1000, 200_000)), min_size=1, max_size=3),
       seed=st.integers(0, 1000))
def test_interleaved_sessions_round_trip(sessions: list[tuple[list[tuple[bytes, int, int]], str, int, int]],
                                         seed: int) -> None:
    written = {}
    streams = []
    for spec, transform, writes, chunk in sessions:
        objs = _objects(spec)
        algo = {"none": Compression.NONE, "lz4": Compression.LZ4}.get(transform, Compression.ZSTD)
        w, blocks = write_session(objs, writes=writes, size=SIZE, chunk_size=chunk, selector=fixed(algo, 1),
                                  key=KEY if "aes" in transform else None)
        written[w.session_id] = objs
        streams.append(blocks)
        assert all(len(b) == SIZE for b in blocks)
    # Interleave like a multiplexed stream: each session's order kept, sessions mixed at random.
    rnd = random.Random(seed)
    medium = []
    while any(streams):
        s = rnd.choice([s for s in streams if s])
        medium.append(s.pop(0))
    views, loose = collect(scan(medium, key=KEY))
    assert not loose
    assert set(views) == set(written)
    for sid, objs in written.items():
        v = views[sid]
        assert v.complete and not v.damage
        assert [v.names[i] for i in range(len(objs))] == [n for n, _ in objs]
        assert [bytes(v.data[i]) for i in range(len(objs))] == [d for _, d in objs]
        assert v.ended == set(range(len(objs)))


def test_footers_carry_totals_and_positions() -> None:
    data = loglike(700_000)
    w = SessionWriter(SessionHeader(job="j"), size=SIZE, chunk_size=1 << 18, selector=fixed(Compression.NONE),
                      clock=ManualClock(1000.0))
    w.begin_object(ArchiveHeader(name=b"/a", size=len(data)))
    w.write(data)
    af = w.end_object()
    w.begin_object(ArchiveHeader(name=b"/b"))
    af2 = w.end_object(ObjectStatus.CHANGED)
    sf = w.close()
    blocks = w.take()
    assert (af.plain_bytes, af.stored_bytes, af.chunks, af.first_seq) == (700_000, 700_000, 3, 0)
    assert af.last_seq == af2.first_seq == len(blocks) - 1
    assert sf == SessionFooter(SessionStatus.COMPLETED, 2, 700_000, 700_000, 0, len(blocks) - 1,
                               1000 * 10**9, 1, 0)
    assert [verify(b)[0].seq for b in blocks] == list(range(len(blocks)))
    events = list(scan(blocks, decode=False))
    started = [e for e in events if isinstance(e, SessionStarted)]
    assert started[0].header.job == "j" and started[0].header.created_ns == 1000 * 10**9


def test_header_larger_than_a_superblock_is_continued() -> None:
    xattrs = tuple((f"user.{i}".encode(), bytes([i]) * 20_000) for i in range(8))
    w = SessionWriter(size=SIZE)
    w.begin_object(ArchiveHeader(name=b"/big", xattrs=xattrs))
    w.write(b"tail data")
    w.end_object()
    w.close()
    blocks = w.take()
    assert len(blocks) >= 3
    views, _ = collect(scan(blocks))
    (v,) = views.values()
    assert v.complete and bytes(v.data[0]) == b"tail data"
    header = next(e for e in scan(blocks) if hasattr(e, "header") and isinstance(e.header, ArchiveHeader))
    assert header.header.xattrs == xattrs  # type: ignore[union-attr]


def test_session_filter_skips_foreign_superblocks_unread() -> None:
    w1, b1 = write_session([(b"/a", loglike(300_000, 1))], size=SIZE, selector=fixed(Compression.NONE))
    _, b2 = write_session([(b"/b", loglike(300_000, 2))], size=SIZE, selector=fixed(Compression.NONE))
    medium = [b for pair in zip(b1, b2, strict=False) for b in pair]
    # Foreign superblocks are trashed after the header: the filter must not read their payload.
    for b in b2:
        b[64:] = bytes(len(b) - 64)
    scanner = Scanner(sessions={w1.session_id})
    events = [e for blk in medium for e in scanner.feed(blk)] + scanner.finish()
    views, loose = collect(events)
    assert set(views) == {w1.session_id} and not loose and not views[w1.session_id].damage
    assert scanner.skipped == len(b2)


def test_options_are_delivered_in_place() -> None:
    w = SessionWriter(size=SIZE)
    w.options({"retention": b"7y"})
    w.begin_object(ArchiveHeader(name=b"/a"))
    w.options({"store-on": b"optical"})
    w.options({"verify": b"yes"}, chunk=True)
    w.write(b"abc")
    w.end_object()
    w.close()
    opts = [e.options for e in scan(w.take()) if isinstance(e, OptionsRead)]
    assert [(o.object_index, o.chunk_seq, o.items) for o in opts] == [
        (0xFFFFFFFF, 0xFFFFFFFF, (("retention", b"7y"),)), (0, 0xFFFFFFFF, (("store-on", b"optical"),)),
        (0, 0, (("verify", b"yes"),))]


def test_duplicate_chunks_are_discarded_and_resolved() -> None:
    block = loglike(100_000, 5)
    data = block * 3 + loglike(100_000, 6) + block
    w, blocks = write_session([(b"/dup", data), (b"/again", block)], size=SIZE, chunk_size=100_000,
                              discard_duplicates=True, key=KEY)
    views, _ = collect(scan(blocks, key=KEY))
    v = views[w.session_id]
    assert bytes(v.data[0]) == data and bytes(v.data[1]) == block
    assert w.duplicates == 4
    stored = sum(len(b) for b in blocks)
    assert stored < len(data) // 2


def test_writer_misuse_is_refused() -> None:
    w = SessionWriter(size=SIZE)
    with pytest.raises(WriterStateError):
        w.write(b"x")
    w.begin_object(ArchiveHeader(name=b"/a"))
    with pytest.raises(WriterStateError):
        w.begin_object(ArchiveHeader(name=b"/b"))
    enc = w.encoder(memoryview(b"x"), 0, 5, 0)
    with pytest.raises(WriterStateError):
        w.add_chunk(enc)
    footer = w.close()
    assert footer.status == SessionStatus.FAILED and footer.errors == 1
    with pytest.raises(WriterStateError):
        w.close()
    with pytest.raises(LimitError):
        SessionWriter(size=100_000)
    with pytest.raises(LimitError):
        SessionWriter(chunk_size=0)


def test_encoding_elsewhere_then_packing_in_order() -> None:
    w = SessionWriter(size=SIZE, key=KEY)
    w.begin_object(ArchiveHeader(name=b"/p"))
    data = loglike(400_000, 9)
    for off in range(0, len(data), 100_000):
        oi, cs, at = w.next_chunk()
        w.add_chunk(w.encoder(memoryview(data)[off:off + 100_000], oi, cs, at))
    w.end_object()
    w.close()
    views, _ = collect(scan(w.take(), key=KEY))
    assert bytes(views[w.session_id].data[0]) == data


def test_pool_buffers_with_old_contents_are_padded_clean() -> None:
    def dirty(n: int) -> memoryview:
        return memoryview(bytearray(b"\xee" * n))
    _, blocks = write_session([(b"/a", b"hello")], size=SIZE, allocate=dirty)
    for b in blocks:
        header, _ = verify(b)
        assert bytes(b[64 + header.payload_len:]) == bytes(SIZE - 64 - header.payload_len)


def test_session_ids_are_unique_uuids() -> None:
    ids = {SessionWriter().session_id for _ in range(50)}
    assert len(ids) == 50 and all(isinstance(i, uuid.UUID) for i in ids)


def test_restore_decodes_only_the_objects_wanted() -> None:
    objs = [(f"/o{i}".encode(), loglike(150_000, i)) for i in range(4)]
    _, blocks = write_session(objs, size=SIZE, key=KEY)
    events = list(scan(blocks, key=KEY, want=lambda sid, index: index == 2))
    from pipevault.format import ChunkRead
    reads = [e for e in events if isinstance(e, ChunkRead)]
    assert {e.header.object_index for e in reads} == {0, 1, 2, 3}
    assert all((e.data is not None) == (e.header.object_index == 2) for e in reads)
    got = b"".join(bytes(e.data) for e in reads if e.data is not None)
    assert got == objs[2][1]
    # Catalog rebuild: structure only, no key needed, every object and its position.
    from pipevault.format import ObjectEnded
    ends = [e.footer for e in scan(blocks, decode=False) if isinstance(e, ObjectEnded)]
    assert [f.plain_bytes for f in ends] == [len(d) for _, d in objs]
    assert all(f.first_seq <= f.last_seq for f in ends)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk=st.integers(1000, 70_000), sizes=st.lists(st.integers(0, 200_000), min_size=1, max_size=4),
       seed=st.integers(0, 99))
def test_reader_copies_what_it_keeps_from_a_reused_buffer(chunk: int, sizes: list[int], seed: int) -> None:
    """A caller feeding every superblock through one pool buffer still gets exact data."""
    from pipevault.format import ChunkRead
    objs = [(f"/r{i}".encode(), loglike(n, seed + i)) for i, n in enumerate(sizes)]
    _, blocks = write_session(objs, size=SIZE, chunk_size=chunk, selector=fixed(Compression.NONE))
    shared = memoryview(bytearray(SIZE))
    scanner = Scanner()
    got: dict[int, bytearray] = {}
    for block in blocks:
        shared[:] = block
        for e in scanner.feed(shared):
            if isinstance(e, ChunkRead):
                got.setdefault(e.header.object_index, bytearray()).extend(e.data or b"")
        shared[:] = bytes(SIZE)  # the pool hands the buffer to someone else
    assert [bytes(got.get(i, b"")) for i in range(len(objs))] == [d for _, d in objs]


@pytest.mark.parametrize("log2", [16, 17, 20, 24])
def test_every_superblock_size_round_trips_and_is_self_describing(log2: int) -> None:
    data = loglike(300_000, log2)
    w, blocks = write_session([(b"/s", data)], size=1 << log2, selector=fixed(Compression.LZ4))
    assert all(len(b) == 1 << log2 for b in blocks)
    # The reader needs no size: each header says it, and split() finds the steps by itself.
    stream = b"".join(bytes(b) for b in blocks)
    from pipevault.format import split
    views, loose = collect(scan(split(stream)))
    assert not loose and bytes(views[w.session_id].data[0]) == data


def test_a_repeat_encoded_raw_elsewhere_is_discarded_or_stored_whole() -> None:
    """Encoders that skip compressing repeats (``raw_repeats``) hand the writer uncompressed
    chunks: one whose hash the writer holds becomes a duplicate, one it does not hold (here
    a writer that never saw the first) is stored as it is and reads back."""
    data = loglike(300_000, 11)
    enc = ChunkEncoder(uuid.UUID(int=1), selector=fixed(Compression.ZSTD, 1), dedup=True, raw_repeats=True)
    w, stranger = (SessionWriter(size=SIZE, session_id=uuid.UUID(int=1), discard_duplicates=True) for _ in "ab")
    # The first chunk goes to ``w`` compressed; its repeats are raw: one to ``w``, one to a
    # writer that never saw the first.
    for n, writer in enumerate((w, w, stranger)):
        writer.begin_object(ArchiveHeader(name=b"/c%d" % n, size=len(data)))
        oi, cs, at = writer.next_chunk()
        writer.add_chunk(enc(data, oi, cs, at))
        writer.end_object()
    for writer, duplicates in ((w, 1), (stranger, 0)):
        writer.close()
        views, _ = collect(scan(writer.take()))
        assert [bytes(d) for d in views[writer.session_id].data.values()] == [data] * (1 + duplicates)
        assert writer.duplicates == duplicates
    assert stranger.stored_bytes == len(data) and w.stored_bytes < len(data) // 2
