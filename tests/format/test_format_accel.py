"""The compiled superblock checksum (``_accel.c``) against its Python specification.

Every other format test (damage, fuzz, round trips) runs through the compiled path, since
``seal`` and ``verify`` use it whenever it is built; this file insists that it is built and
that it gives exactly what the Python walk gives, for any payload, well-formed or not.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from format_helpers import KEY, loglike
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.clock import ManualClock
from pipevault.format import (
    ArchiveHeader,
    Compression,
    DedupAlgo,
    Encryption,
    SessionHeader,
    SessionWriter,
    _chunk,
    _records,
    _superblock,
    _writer,
    fixed,
)
from pipevault.format._records import RECORD_HEADER, RecordType
from pipevault.format._superblock import checksum, data_spans
from pipevault.format.errors import FormatError

_SID = __import__("uuid").UUID(int=7)
accel = pytest.importorskip("pipevault.format._accel") if _superblock.COMPILED else None


def test_the_compiled_checksum_is_built_and_used() -> None:
    assert _superblock.COMPILED, ("pipevault.format._accel is not built: run `pip install -e .` "
                                  "or `python setup.py build_ext --inplace`")
    assert accel is not None


def _record(rtype: int, body: bytes, length: int | None = None) -> bytes:
    return RECORD_HEADER.pack(rtype, 0, 0, len(body) if length is None else length) + body


records = st.one_of(
    st.builds(_record, st.just(int(RecordType.DATA)), st.binary(max_size=300)),
    st.builds(_record, st.sampled_from([int(t) for t in RecordType]), st.binary(max_size=120)),
    st.builds(_record, st.integers(0, 255), st.binary(max_size=40), st.integers(0, 2**32 - 1)),  # lying lengths
    st.binary(max_size=12),  # garbage and cut headers
)


@settings(max_examples=300, deadline=None)
@given(header=st.binary(min_size=64, max_size=64), extra=st.integers(0, 40), parts=st.lists(records, max_size=12),
       tail=st.integers(0, 50))
def test_compiled_checksum_equals_the_python_walk(header: bytes, extra: int, parts: list[bytes], tail: int) -> None:
    payload = b"".join(parts)
    buf = memoryview(header + bytes(extra) + payload + bytes(tail))
    start = 64 + extra
    end = start + len(payload)
    assert accel is not None
    assert accel.checksum(buf, start, end) == checksum(buf, end, data_spans(buf, start, end), start)


@pytest.mark.parametrize(("start", "end"), [(55, 60), (70, 69), (64, 1000)])
def test_compiled_checksum_refuses_a_payload_outside_the_buffer(start: int, end: int) -> None:
    assert accel is not None
    with pytest.raises(ValueError, match="not inside"):
        accel.checksum(bytearray(200), start, end)


def test_compiled_checksum_reads_any_buffer() -> None:
    assert accel is not None
    block = bytearray(struct.pack("<56s8x", b"h" * 56)) + _record(int(RecordType.DATA), b"t" * 24 + b"stored")
    expected = checksum(memoryview(block), len(block), [(96, len(block))])
    assert {accel.checksum(b, 64, len(block)) for b in (block, bytes(block), memoryview(block))} == {expected}


def test_the_python_fallback_writes_and_reads_the_same_superblocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from format_helpers import collect, write_session

    from pipevault.format import scan

    data = loglike(150_000, 9)
    _w, compiled = write_session([(b"/f", data)], size=1 << 16, session_id=_SID,
                                selector=fixed(Compression.NONE))
    monkeypatch.setattr(_superblock, "_compiled", None)
    monkeypatch.setattr(_writer, "pack_plain", None)  # a tree without the extension has neither
    _w, python = write_session([(b"/f", data)], size=1 << 16, session_id=_SID,
                                selector=fixed(Compression.NONE))
    views, _loose = collect(scan(python))
    (view,) = views.values()
    assert view.complete and not view.damage and bytes(view.data[0]) == data
    # Same bytes but the creation and end times in the session records.
    assert [len(b) for b in compiled] == [len(b) for b in python] and len(compiled) > 2
    assert [bytes(b[64:]) for b in compiled[1:-1]] == [bytes(b[64:]) for b in python[1:-1]]
    assert [bytes(b[:64]) for b in compiled[1:-1]] == [bytes(b[:64]) for b in python[1:-1]]


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=3), chunk=st.integers(1, 250_000),
       comp=st.sampled_from([Compression.NONE, Compression.LZ4]), key=st.sampled_from([None, KEY]),
       stored_hash=st.booleans(), dedup=st.booleans())
def test_the_compiled_writer_writes_what_the_python_writer_writes(sizes: list[int], chunk: int, comp: Compression,
                                                                   key: bytes | None, stored_hash: bool,
                                                                   dedup: bool) -> None:
    # Encrypted and dedup-hashed chunks too: add_chunk packs them with _accel.pack_plain.
    def session() -> list[bytes]:
        w = SessionWriter(SessionHeader(job="j", created_ns=1), session_id=_SID, size=1 << 16, key=key,
                          selector=fixed(comp), chunk_size=chunk, clock=ManualClock(5.0), stored_hash=stored_hash,
                          dedup=dedup)
        for i, size in enumerate(sizes):
            w.begin_object(ArchiveHeader(name=b"/o"))
            w.write(loglike(size, i))
            w.end_object()
        w.close()
        return [bytes(b) for b in w.take()]

    assert _writer.pack_plain is not None
    saved, token = _writer.pack_plain, _chunk.secrets.token_bytes
    try:
        _chunk.secrets.token_bytes = bytes  # type: ignore[assignment]  # one nonce for both runs
        compiled = session()
        _writer.pack_plain = None
        python = session()
    finally:
        _writer.pack_plain, _chunk.secrets.token_bytes = saved, token  # type: ignore[assignment]
    assert compiled == python


def test_add_chunk_takes_the_compiled_packer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = _writer.pack_plain
    assert original is not None

    def counting(*args: Any) -> Any:
        calls.append(args[-1])  # hashed
        return original(*args)

    monkeypatch.setattr(_writer, "pack_plain", counting)
    # Encrypted chunks go through the encoder and add_chunk, which packs them as they are.
    w = SessionWriter(size=1 << 16, selector=fixed(Compression.NONE), key=KEY, chunk_size=200_000)
    w.begin_object(ArchiveHeader(name=b"/big"))
    w.write(loglike(500_000, 1))
    w.end_object()
    w.close()
    assert calls == [False, False, False]


def _flagged(rtype: int, flags: int, reserved: int, body: bytes) -> bytes:
    return RECORD_HEADER.pack(rtype, flags, reserved, len(body)) + body


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(records | st.builds(_flagged, st.integers(0, 255), st.sampled_from([0, 1, 2, 0x81]),
                                           st.sampled_from([0, 0, 1, 256]), st.binary(max_size=20)),
                      max_size=12))
def test_compiled_record_walk_equals_the_python_walk(parts: list[bytes]) -> None:
    payload = memoryview(b"".join(parts))
    assert accel is not None and _records.compiled_record_spans is accel.record_spans
    assert accel.record_spans(payload) == _records.record_spans(payload)


def test_compiled_make_builds_what_init_builds() -> None:
    import dataclasses

    from pipevault.format import ChunkRead, EncodedChunk, FramedObject, ObjectEnded, ObjectStarted
    from pipevault.format._records import ChunkFooter, ChunkHeader

    assert accel is not None and _records.new_frozen is accel.make
    header, footer = ChunkHeader(1, 2, 3, 4, 4), ChunkFooter(1, 2, 4)
    cases: list[tuple[type, tuple[Any, ...]]] = [
        (ChunkRead, (_SID, 1, 2, header, b"data", (b"data",), False)), (ObjectStarted, (_SID, 3, ArchiveHeader())),
        (ObjectEnded, (_SID, 4, None)), (EncodedChunk, (header, memoryview(b"abcd"), footer)),
        (FramedObject, (7, b"records", 1, 2, 3, 4, b"h" * 32))]
    for cls, values in cases:
        made = accel.make(cls, *values)
        assert type(made) is cls and made == cls(*values) and hash(made) == hash(cls(*values))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, dataclasses.fields(cls)[0].name, 9)
        with pytest.raises(TypeError, match="takes"):
            accel.make(cls, *values, None)
    with pytest.raises(TypeError):
        accel.make(ArchiveHeader, 1)  # no __slots__ tuple: not a slotted dataclass


def _python(unpack: Any, body: bytes) -> Any:
    """What ``unpack`` gives (or raises) on the Python path."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_records, "_chunk_header", None)
        m.setattr(_records, "_chunk_footer", None)
        try:
            return unpack(memoryview(body))
        except FormatError as exc:
            return exc


chunk_bodies = st.builds(
    lambda fields, tail: struct.pack("<IIQIIBbBBB3x12s4x16s32s", *fields) + tail,
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
              st.sampled_from([0, 1, 1300, 64 << 20, (64 << 20) + 1, 2**32 - 1]),
              st.sampled_from([0, 1, 1300, (64 << 20) + 64, (64 << 20) + 65, 2**32 - 1]),
              st.integers(0, 4), st.integers(-128, 127), st.integers(0, 3), st.integers(0, 31), st.integers(0, 4),
              st.binary(min_size=12, max_size=12), st.binary(min_size=16, max_size=16),
              st.binary(min_size=32, max_size=32)),
    st.binary(max_size=8)) | st.binary(max_size=100)


@settings(max_examples=400, deadline=None)
@given(body=chunk_bodies)
def test_compiled_chunk_records_equal_the_python_unpack(body: bytes) -> None:
    from pipevault.format._records import CHUNK_FLAGS, ChunkFooter, ChunkHeader

    assert accel is not None
    for cls, compiled in ((ChunkHeader, accel.chunk_header(body, ChunkHeader, list(Compression), list(Encryption),
                                                            list(DedupAlgo), CHUNK_FLAGS)),
                          (ChunkFooter, accel.chunk_footer(body, ChunkFooter))):
        python = _python(cls.unpack, body)
        if compiled is None:
            assert isinstance(python, FormatError)
        else:
            assert type(compiled) is cls and compiled == python
            assert [type(v) for v in compiled] == [type(v) for v in python]
