"""Every structure of the format round-trips, and readers refuse what they cannot know."""

from __future__ import annotations

import struct
import uuid

import pytest
from format_helpers import (
    archive_footers,
    archive_headers,
    blob,
    i64,
    session_footers,
    session_headers,
    text,
    u32,
    u64,
)
from hypothesis import given
from hypothesis import strategies as st

from pipevault.format import (
    ArchiveFooter,
    ArchiveHeader,
    ChunkFlags,
    ChunkFooter,
    ChunkHeader,
    Compression,
    DedupAlgo,
    Encryption,
    Options,
    Resume,
    SessionFooter,
    SessionHeader,
    SuperblockHeader,
    peek_header,
    verify,
)
from pipevault.format._records import Tag, read_record_header
from pipevault.format._superblock import (
    MAGIC,
    Optional,
    Required,
    SuperblockFlags,
    size_log2_of,
    write_header,
)
from pipevault.format.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    TruncatedError,
    UnknownVersionError,
    UnsupportedFeatureError,
)


@given(sid=st.uuids(), seq=u64, log2=st.integers(16, 24), flags=st.integers(0, 7), req=st.integers(0, 7),
       opt=st.integers(0, 3), payload=st.binary(max_size=2000))
def test_superblock_header_round_trip(sid: uuid.UUID, seq: int, log2: int, flags: int, req: int, opt: int,
                                      payload: bytes) -> None:
    buf = memoryview(bytearray(64 + len(payload)))
    buf[64:] = payload
    write_header(buf, SuperblockHeader(sid, seq, len(payload), log2, SuperblockFlags(flags), Required(req),
                                       Optional(opt)))
    header, body = verify(buf)
    got = (header.session_id, header.seq, header.payload_len, header.size_log2)
    assert got == (sid, seq, len(payload), log2)
    assert (header.flags, header.required, header.optional) == (flags, req, opt)
    assert bytes(body) == payload
    assert peek_header(buf) == header


def _sealed(payload: bytes = b"x" * 10, **changes: int) -> memoryview:
    buf = memoryview(bytearray(64 + len(payload)))
    buf[64:] = payload
    write_header(buf, SuperblockHeader(uuid.uuid4(), 3, len(payload)))
    return buf


def test_superblock_flip_anywhere_is_a_checksum_error_or_format_error() -> None:
    good = bytes(_sealed(b"payload bytes"))
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x10
        with pytest.raises(FormatError):
            verify(memoryview(bad))


def test_superblock_refusals() -> None:
    buf = _sealed()
    with pytest.raises(TruncatedError):
        verify(buf[:40])
    with pytest.raises(TruncatedError):
        verify(buf[:70])
    with pytest.raises(FormatError, match="magic"):
        verify(memoryview(b"\0" * 80))
    bad = bytearray(buf)
    bad[72] ^= 1
    with pytest.raises(ChecksumError):
        verify(memoryview(bad))


def _resealed(buf: memoryview, offset: int, value: bytes) -> memoryview:
    """Change header bytes and recompute the checksum as a newer writer would."""
    import xxhash
    out = bytearray(buf)
    out[offset:offset + len(value)] = value
    (plen,) = struct.unpack_from("<I", out, 48)
    h = xxhash.xxh3_64(bytes(out[:56]) + bytes(out[64:64 + plen])).intdigest()
    struct.pack_into("<Q", out, 56, h)
    return memoryview(out)


def test_intact_newer_major_version_is_refused_by_name() -> None:
    with pytest.raises(UnknownVersionError):
        verify(_resealed(_sealed(), 8, b"\x02"))


def test_unknown_required_feature_refused_unknown_optional_ignored() -> None:
    with pytest.raises(UnsupportedFeatureError):
        verify(_resealed(_sealed(), 16, struct.pack("<I", 1 << 20)))
    header, _ = verify(_resealed(_sealed(), 20, struct.pack("<I", 1 << 20)))
    assert header.optional == Optional.NONE


def test_newer_minor_version_is_read() -> None:
    header, _ = verify(_resealed(_sealed(), 9, b"\x07"))
    assert header.version_minor == 7


def test_size_limits() -> None:
    assert size_log2_of(256 * 1024) == 18
    for bad in (0, 1000, 32 * 1024, 32 << 20, 3 << 16):
        with pytest.raises(LimitError):
            size_log2_of(bad)


@given(oi=u32, cs=u32, off=u64, plain=st.integers(0, 64 << 20), stored=st.integers(0, 64 << 20),
       comp=st.sampled_from(Compression), level=st.integers(-7, 22), enc=st.sampled_from(Encryption),
       flags=st.sampled_from([0, 1, 4, 5]), dedup=st.sampled_from(DedupAlgo),
       nonce=st.binary(min_size=12, max_size=12),
       chash=st.binary(min_size=16, max_size=16), dhash=st.binary(min_size=32, max_size=32))
def test_chunk_header_round_trip(oi: int, cs: int, off: int, plain: int, stored: int, comp: Compression,
                                 level: int, enc: Encryption, flags: int, dedup: DedupAlgo, nonce: bytes,
                                 chash: bytes, dhash: bytes) -> None:
    h = ChunkHeader(oi, cs, off, plain, stored, comp, level, enc, ChunkFlags(flags), dedup, nonce, chash,
                    dhash)
    assert len(h.pack()) == 96
    assert ChunkHeader.unpack(memoryview(h.pack() + b"future")) == h


@given(oi=u32, cs=u32, ref=st.tuples(u32, u32))
def test_duplicate_chunk_header_carries_its_reference(oi: int, cs: int, ref: tuple[int, int]) -> None:
    h = ChunkHeader(oi, cs, 0, 100, 0, flags=ChunkFlags.DUPLICATE | ChunkFlags.HAS_DEDUP_HASH, ref=ref)
    assert ChunkHeader.unpack(memoryview(h.pack())).ref == ref


def test_chunk_header_refusals() -> None:
    good = ChunkHeader(1, 2, 3, 4, 4).pack()
    with pytest.raises(TruncatedError):
        ChunkHeader.unpack(memoryview(good[:95]))
    with pytest.raises(UnsupportedFeatureError):
        ChunkHeader.unpack(memoryview(good[:24] + b"\x09" + good[25:]))
    with pytest.raises(FormatError):
        ChunkHeader.unpack(memoryview(good[:27] + b"\x80" + good[28:]))


@given(oi=u32, cs=u32, stored=u32, sealed=st.binary(min_size=16, max_size=16),
       tag=st.binary(min_size=16, max_size=16))
def test_chunk_footer_round_trip(oi: int, cs: int, stored: int, sealed: bytes, tag: bytes) -> None:
    f = ChunkFooter(oi, cs, stored, sealed, tag)
    assert ChunkFooter.unpack(memoryview(f.pack())) == f


@given(st.tuples(u64, u32, u32, u64, i64))
def test_resume_round_trip(values: tuple[int, int, int, int, int]) -> None:
    r = Resume(*values)
    assert Resume.unpack(memoryview(r.pack())) == r


def test_tag_and_record_header() -> None:
    from pipevault.format._records import TAG
    assert Tag.unpack(memoryview(TAG.pack(1, 2, 3, 4))) == Tag(1, 2, 3, 4)
    with pytest.raises(TruncatedError):
        Tag.unpack(memoryview(b"short"))
    payload = memoryview(struct.pack("<BBHI", 6, 0, 0, 3) + b"abc")
    assert read_record_header(payload, 0).length == 3
    with pytest.raises(TruncatedError):
        read_record_header(payload[:9], 0)
    with pytest.raises(UnsupportedFeatureError):
        read_record_header(memoryview(struct.pack("<BBHI", 0x33, 0, 0, 0)), 0)
    assert read_record_header(memoryview(struct.pack("<BBHI", 0xB3, 0, 0, 0)), 0).type == 0xB3
    with pytest.raises(FormatError):
        read_record_header(memoryview(struct.pack("<BBHI", 6, 2, 0, 0)), 0)


@given(st.one_of(session_headers, session_footers, archive_headers, archive_footers))
def test_field_records_round_trip(
        record: SessionHeader | SessionFooter | ArchiveHeader | ArchiveFooter) -> None:
    assert type(record).unpack(memoryview(record.pack())) == record


@given(st.one_of(session_headers, session_footers, archive_headers, archive_footers), st.data())
def test_pack_fields_packs_what_the_record_would(
        record: SessionHeader | SessionFooter | ArchiveHeader | ArchiveFooter, data: st.DataObject) -> None:
    fields = dict(vars(record))
    # Any subset given (the rest take their defaults) packs as the record made from it.
    given_names = data.draw(st.sets(st.sampled_from(sorted(fields))))
    subset = {k: v for k, v in fields.items() if k in given_names}
    assert type(record).pack_fields(**subset) == type(record)(**subset).pack()


def test_pack_fields_refuses_unknown_names() -> None:
    with pytest.raises(FormatError, match="no field colour"):
        ArchiveHeader.pack_fields(name=b"/x", colour="red")


@given(items=st.lists(st.tuples(text, blob), max_size=5), oi=u32, cs=u32)
def test_options_round_trip(items: list[tuple[str, bytes]], oi: int, cs: int) -> None:
    o = Options(tuple(items), oi, cs)
    assert Options.unpack(memoryview(o.pack())) == o
    for k, _ in items:
        assert o.get(k) == [v for kk, v in items if kk == k][-1]
    assert o.get("\0absent") is None or any(k == "\0absent" for k, _ in items)


def test_unknown_fields_optional_skipped_critical_refused() -> None:
    body = ArchiveHeader(object_index=4, name=b"/a").pack()
    extra = struct.pack("<HI", 300, 3) + b"new"
    assert ArchiveHeader.unpack(memoryview(body + extra)) == ArchiveHeader(object_index=4, name=b"/a")
    critical = struct.pack("<HI", 0x8000 | 300, 3) + b"new"
    with pytest.raises(UnsupportedFeatureError):
        ArchiveHeader.unpack(memoryview(body + critical))


@pytest.mark.parametrize("tail", [
    struct.pack("<HI", 1, 8) + b"\0" * 8,          # object_index (u32) with 8 bytes
    struct.pack("<HI", 2, 50) + b"short",          # runs past the record
    struct.pack("<HI", 8, 2) + b"\xff\xfe",        # owner not UTF-8
    struct.pack("<H", 2),                          # entry header cut
])
def test_bad_field_lists_are_format_errors(tail: bytes) -> None:
    with pytest.raises(FormatError):
        ArchiveHeader.unpack(memoryview(ArchiveHeader(name=b"/a").pack() + tail))


def test_magic_is_the_documented_bytes() -> None:
    assert MAGIC.hex(" ") == "89 50 56 53 42 0d 0a 1a"
