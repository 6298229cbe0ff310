"""Objects framed ahead of the writer read back exactly as objects written record by record."""

from __future__ import annotations

import uuid

import pytest
from format_helpers import KEY, collect, loglike
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.format import (
    ArchiveHeader,
    ChunkEncoder,
    Compression,
    EncodedChunk,
    Event,
    ObjectEnded,
    Options,
    Scanner,
    SessionHeader,
    SessionKeys,
    SessionWriter,
    fixed,
    frame_object,
)
from pipevault.format.errors import FormatError, WriterStateError

SID = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")

# (size of the object's data or None for no chunk, options or not, status)
objects_st = st.lists(st.tuples(st.one_of(st.none(), st.sampled_from([0, 1, 700, 9000, 70_000, 300_000])),
                                st.booleans(), st.sampled_from([0, 1])), min_size=1, max_size=12)


def _encoded(objects: list[tuple[int | None, bool, int]], key: bytes | None, dedup: bool,
             algo: Compression) -> list[tuple[ArchiveHeader, Options | None, EncodedChunk | None, int]]:
    """Each object encoded once, so both writers get the same chunks (nonces are random)."""
    keys = SessionKeys.derive(key, SID) if key is not None else None
    enc = ChunkEncoder(SID, keys=keys, selector=fixed(algo, 1 if algo is Compression.ZSTD else 0), dedup=dedup)
    out = []
    for i, (size, with_options, status) in enumerate(objects):
        # Repeated contents (seed by size) give duplicates to discard.
        data = loglike(size, seed=size) if size is not None else None
        header = ArchiveHeader(object_index=i, name=f"/dir/f{i}".encode(), size=size or 0, mode=0o100644)
        options = Options(((f"k{i}", b"v" * i),), i) if with_options else None
        out.append((header, options, enc(data, i, 0, 0) if data is not None else None, status))
    return out


def _session(items: list[tuple[ArchiveHeader, Options | None, EncodedChunk | None, int]], framed: bool,
             key: bytes | None, dedup: bool) -> list[memoryview]:
    w = SessionWriter(SessionHeader(node="n", job="j", created_ns=1), session_id=SID, key=key, dedup=dedup,
                      discard_duplicates=dedup, size=1 << 16, clock=ManualClock(100.0))
    for header, options, chunk, status in items:
        if framed:
            f = frame_object(header.object_index, header.pack(), chunk,
                             options.pack() if options is not None else None)
            footer = w.put_object(f, status)
        else:
            w.begin_object(header)
            if options is not None:
                w.options(dict(options.items))
            if chunk is not None:
                w.add_chunk(chunk)
            footer = w.end_object(status)
        assert footer.object_index == header.object_index and footer.status == status
    w.close()
    return w.take()


def _scan(blocks: list[memoryview], key: bytes | None = None) -> list[Event]:
    scanner = Scanner(key=key)
    return [e for block in blocks for e in scanner.feed(block)]


@settings(max_examples=40, deadline=None)
@given(objects_st, st.booleans(), st.booleans(), st.sampled_from([Compression.NONE, Compression.ZSTD]))
def test_framed_objects_read_back_as_written_record_by_record(objects: list[tuple[int | None, bool, int]],
                                                              encrypt: bool, dedup: bool,
                                                              algo: Compression) -> None:
    key = KEY if encrypt else None
    items = _encoded(objects, key, dedup, algo)
    plain = _session(items, False, key, dedup)
    fast = _session(items, True, key, dedup)
    views = [collect(_scan(blocks, key)) for blocks in (plain, fast)]
    (a, damage_a), (b, damage_b) = views
    assert damage_a == damage_b == []
    va, vb = a[SID], b[SID]
    assert va.complete and vb.complete
    assert va.names == vb.names and va.ended == vb.ended == set(range(len(objects)))
    assert va.data == vb.data
    for i, (size, _, _) in enumerate(objects):
        assert bytes(vb.data.get(i, b"")) == (loglike(size, seed=size) if size else b"")


def test_small_objects_are_byte_identical_to_the_record_path() -> None:
    items = _encoded([(700, True, 0), (None, False, 0), (0, False, 1), (9000, False, 0)], None, False,
                     Compression.ZSTD)
    assert [bytes(b) for b in _session(items, True, None, False)] == \
        [bytes(b) for b in _session(items, False, None, False)]


def test_framed_objects_are_never_continued() -> None:
    items = _encoded([(30_000, False, 0)] * 3, None, False, Compression.NONE)
    blocks = _session(items, True, None, False)
    footers = [e.footer for e in _scan(blocks) if isinstance(e, ObjectEnded)]
    # Two raw 30,000-byte objects fill most of a 64 KiB superblock: the third starts the next
    # one instead of running over its end.
    assert [(f.plain_bytes, f.stored_bytes, f.chunks) for f in footers] == [(30_000, 30_000, 1)] * 3
    assert [(f.first_seq, f.last_seq) for f in footers] == [(0, 0), (0, 0), (1, 1)]


def test_out_of_order_and_foreign_chunks_are_refused() -> None:
    items = _encoded([(700, False, 0), (700, False, 0)], None, False, Compression.NONE)
    w = SessionWriter(SessionHeader(), session_id=SID)
    header, _, chunk, _ = items[1]
    with pytest.raises(WriterStateError):
        w.put_object(frame_object(1, header.pack(), chunk))
    with pytest.raises(FormatError):
        frame_object(0, items[0][0].pack(), chunk)
    w.begin_object(items[0][0])
    with pytest.raises(WriterStateError):
        w.put_object(frame_object(0, items[0][0].pack(), items[0][2]))
