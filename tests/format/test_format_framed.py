"""Objects framed ahead of the writer read back exactly as objects written record by record."""

from __future__ import annotations

import uuid

import blake3
import pytest
from format_helpers import KEY, collect, loglike
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.format import (
    ArchiveHeader,
    ChunkEncoder,
    ChunkFlags,
    Compression,
    EncodedChunk,
    Event,
    ObjectEnded,
    Options,
    RecordType,
    Scanner,
    SessionHeader,
    SessionKeys,
    SessionWriter,
    _chunk,
    _fields,
    _framed,
    _reader,
    _records,
    _superblock,
    _writer,
    fixed,
    frame_object,
)
from pipevault.format._records import RECORD_HEADER, TAG
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


def _framed_spec(index: int, header_body: bytes, chunk: EncodedChunk | None, options_body: bytes | None) -> bytes:
    """docs/format.md §4-5 spelled out record by record: what ``frame_object`` must write."""
    def record(rtype: RecordType, body: bytes) -> bytes:
        return RECORD_HEADER.pack(rtype, 0, 0, len(body)) + body
    out = record(RecordType.ARCHIVE_HEADER, header_body)
    if options_body is not None:
        out += record(RecordType.OPTIONS, options_body)
    if chunk is None:
        return out
    out += record(RecordType.CHUNK_HEADER, chunk.header.pack())
    if len(chunk.stored):
        out += record(RecordType.DATA, TAG.pack(index, 0, 0, 0) + bytes(chunk.stored))
    return out + record(RecordType.CHUNK_FOOTER, chunk.footer.pack())


@settings(max_examples=150, deadline=None)
@given(size=st.sampled_from([None, 0, 1, 500, 3000]), encrypt=st.booleans(), dedup=st.booleans(),
       stored_hash=st.booleans(), algo=st.sampled_from(Compression), duplicate=st.booleans(),
       options=st.none() | st.binary(max_size=20), index=st.integers(0, 2**32 - 1))
def test_frame_object_writes_the_records_of_the_specification(
        size: int | None, encrypt: bool, dedup: bool, stored_hash: bool, algo: Compression, duplicate: bool,
        options: bytes | None, index: int) -> None:
    keys = SessionKeys.derive(KEY, SID) if encrypt else None
    enc = ChunkEncoder(SID, keys=keys, selector=fixed(algo, 1 if algo is Compression.ZSTD else 0), dedup=dedup,
                       stored_hash=stored_hash)
    chunk = enc(loglike(size, seed=size), index, 0, 0) if size is not None else None
    if chunk is not None and duplicate:
        chunk = enc.duplicate(index, 0, 0, chunk.header, (max(index - 1, 0), 0))
    header = ArchiveHeader(object_index=index, name=b"/f", size=size or 0).pack()
    body = Options(((f"k{index}", options),), index).pack() if options is not None else None
    framed = frame_object(index, header, chunk, body)
    assert bytes(framed.records) == _framed_spec(index, header, chunk, body)
    h = chunk.header if chunk is not None else None
    assert (framed.chunks, framed.plain_len, framed.stored_len) == (
        (1, h.plain_len, h.stored_len) if h is not None else (0, 0, 0))
    assert h is None or type(h.flags) is ChunkFlags  # computed as ints, handed out as the flag type
    hashed = h is not None and dedup and not duplicate
    assert framed.dedup_hash == (h.dedup_hash if hashed and h is not None else None)


def test_the_python_code_writes_and_reads_what_the_compiled_code_does(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = [(700, True, 0), (None, False, 0), (0, False, 1), (9000, False, 0), (1300, False, 0)] * 60
    items = _encoded(objects, None, False, Compression.ZSTD)
    compiled = [bytes(b) for b in _session(items, True, None, False)]
    events = _scan([memoryview(b) for b in compiled])
    monkeypatch.setattr(_superblock, "_compiled", None)
    monkeypatch.setattr(_writer, "COMPILED", False)
    monkeypatch.setattr(_writer, "pack_plain", None)
    monkeypatch.setattr(_fields, "_encode_fields", None)
    monkeypatch.setattr(_fields, "_decode_fields", None)
    monkeypatch.setattr(_reader, "_spans", None)
    monkeypatch.setattr(_records, "_chunk_header", None)
    monkeypatch.setattr(_records, "_chunk_footer", None)
    for module in (_reader, _framed, _chunk):
        monkeypatch.setattr(module, "new_frozen", _records._new_python)
    python = [bytes(b) for b in _session(items, True, None, False)]
    assert python == compiled and len(python) > 2
    assert repr(_scan([memoryview(b) for b in python])) == repr(events)


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(min_size=1, max_size=4096), st.builds(lambda n: loglike(n), st.integers(1, 70_000))),
       selector=st.sampled_from(["none", "lz4", "zstd", "sampling"]), dedup=st.booleans(),
       index=st.integers(0, 2**32 - 1))
def test_frame_whole_is_frame_object_of_the_encoded_chunk(data: bytes, selector: str, dedup: bool, index: int) -> None:
    """The one-chunk fast path packs exactly what encoding then framing packs."""
    from pipevault.format._codecs import SamplingSelector, Selector
    selectors: dict[str, Selector] = {"none": fixed(Compression.NONE), "lz4": fixed(Compression.LZ4),
                                      "zstd": fixed(Compression.ZSTD, 1), "sampling": SamplingSelector()}
    chosen = selectors[selector]
    encoder = ChunkEncoder(SID, selector=chosen, dedup=dedup)
    header = ArchiveHeader(object_index=index, name=b"/d/f", size=len(data)).pack()
    fast = _framed.frame_whole(index, header, data, encoder)
    slow = frame_object(index, header, encoder(data, index, 0, 0))
    assert bytes(fast.records) == bytes(slow.records)
    assert (fast.object_index, fast.chunks, fast.plain_len, fast.stored_len, fast.required, fast.dedup_hash) == (
        slow.object_index, slow.chunks, slow.plain_len, slow.stored_len, slow.required, slow.dedup_hash)


def test_frame_whole_takes_the_long_way_with_keys_or_format_1_0() -> None:
    data = loglike(5000)
    header = ArchiveHeader(object_index=3, name=b"/f", size=len(data)).pack()
    keyed = ChunkEncoder(SID, keys=SessionKeys.derive(KEY, SID), dedup=True)
    framed = _framed.frame_whole(3, header, data, keyed)  # encrypted: a fresh nonce each time
    assert framed.required & int(_superblock.Required.AES_GCM)
    old = ChunkEncoder(SID, dedup=True, stored_hash=False)
    assert bytes(_framed.frame_whole(3, header, data, old).records) == bytes(
        frame_object(3, header, old(data, 3, 0, 0)).records)


@settings(max_examples=120, deadline=None)
@given(items=st.lists(st.one_of(st.binary(max_size=3000), st.builds(lambda n: loglike(n), st.integers(0, 40_000))),
                      min_size=1, max_size=6),
       selector=st.sampled_from(["none", "lz4", "lz4-9", "zstd", "zstd-3", "sampling"]), dedup=st.booleans(),
       repeats=st.booleans())
def test_compiled_frame_whole_packs_what_the_python_path_packs(items: list[bytes], selector: str, dedup: bool,
                                                               repeats: bool) -> None:
    """``_accel.frame_whole`` against its specification, object after object through one
    encoder each (so repeats of earlier data take the raw path), repeated data included."""
    from pipevault.format._codecs import SamplingSelector, Selector
    if _framed._frame_whole is None:
        pytest.fail("pipevault.format._accel is not built (run `make`)")
    selectors: dict[str, Selector] = {
        "none": fixed(Compression.NONE), "lz4": fixed(Compression.LZ4), "lz4-9": fixed(Compression.LZ4, 9),
        "zstd": fixed(Compression.ZSTD, 1), "zstd-3": fixed(Compression.ZSTD, 3), "sampling": SamplingSelector()}
    items = items + items[:2]  # repeats of earlier objects

    def framed_all() -> list[tuple[object, ...]]:
        encoder = ChunkEncoder(SID, selector=selectors[selector], dedup=dedup, raw_repeats=repeats)
        out = []
        for i, data in enumerate(items):
            header = ArchiveHeader(object_index=i, name=b"/d/f%d" % i, size=len(data)).pack()
            f = _framed.frame_whole(i, header, data, encoder)
            out.append((bytes(f.records), f.object_index, f.chunks, f.plain_len, f.stored_len, f.required,
                        f.dedup_hash))
        return out

    compiled = framed_all()
    saved, _framed._frame_whole = _framed._frame_whole, None
    try:
        python = framed_all()
    finally:
        _framed._frame_whole = saved
    assert compiled == python


def test_compiled_frame_whole_declines_what_it_does_not_pack() -> None:
    accel = pytest.importorskip("pipevault.format._accel")
    header = ArchiveHeader(object_index=1, name=b"/f").pack()
    assert accel.frame_whole(2**32, header, b"x", 0, 0, None, None, 3, None, 0) is None  # index past the tag's u32
    assert accel.frame_whole(-1, header, b"x", 0, 0, None, None, 3, None, 0) is None
    assert accel.frame_whole(1, header, b"x", 2, 1, None, None, 3, None, 0) is None  # compression without a packer
    with pytest.raises(TypeError):
        accel.frame_whole(1, header, b"x", 2, 1, lambda b: bytearray(1), None, 3, None, 0)  # a packer must give bytes
    given_out: set[bytes] = set()
    made = accel.frame_whole(1, header, b"abc" * 100, 2, 1, lambda b: b"z", blake3.blake3, 3,
                             given_out, 1)
    assert made is not None and made[1] == 1 and given_out == {made[3]}
    again = accel.frame_whole(1, header, b"abc" * 100, 2, 1, lambda b: b"z", blake3.blake3, 3,
                              given_out, 1)
    assert again is not None and again[1] == 300 and again[2] == 8  # a repeat: stored raw, needs STORED_HASH only


def test_frame_whole_refuses_a_level_outside_the_range_on_both_paths() -> None:
    from pipevault.format.errors import LimitError
    header = ArchiveHeader(object_index=1, name=b"/f").pack()
    bad = ChunkEncoder(SID, selector=fixed(Compression.ZSTD, 99))
    saved = _framed._frame_whole
    try:
        for compiled in (saved, None):
            _framed._frame_whole = compiled
            with pytest.raises(LimitError):
                _framed.frame_whole(1, header, loglike(2000), bad)
    finally:
        _framed._frame_whole = saved
