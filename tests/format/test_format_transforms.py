"""Chunk transforms: compression selector, raw fallback, AES-256-GCM, keyed hashes, clear errors."""

from __future__ import annotations

import hashlib
import os
import uuid

import blake3
import pytest
import xxhash
from format_helpers import KEY, loglike
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import (
    ArchiveHeader,
    ChunkDecoder,
    ChunkEncoder,
    ChunkFlags,
    Compression,
    DedupAlgo,
    Encryption,
    SamplingSelector,
    SessionKeys,
    compress,
    decompress,
    fixed,
    frame_whole,
)
from pipevault.format.errors import IntegrityError, KeyRequiredError, LimitError, WrongKeyError

SID = uuid.UUID(int=7)
algos = st.sampled_from([(Compression.NONE, 0), (Compression.LZ4, 0), (Compression.LZ4, 9),
                         (Compression.ZSTD, 1), (Compression.ZSTD, 19), (Compression.ZSTD, -3)])


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000) | st.integers(0, 200_000).map(loglike), algo=algos,
       encrypt=st.booleans(), dedup=st.booleans())
def test_encode_decode_round_trip(data: bytes, algo: tuple[Compression, int], encrypt: bool,
                                  dedup: bool) -> None:
    keys = SessionKeys.derive(KEY, SID) if encrypt else None
    enc = ChunkEncoder(SID, keys=keys, selector=fixed(*algo), dedup=dedup)
    chunk = enc(data, 3, 4, 5000)
    h = chunk.header
    assert (h.object_index, h.chunk_seq, h.object_offset, h.plain_len) == (3, 4, 5000, len(data))
    assert h.stored_len == len(chunk.stored) <= len(data)
    if algo[0] is not Compression.NONE and h.compression is Compression.NONE:
        assert h.flags & ChunkFlags.RAW_FALLBACK
    assert bytes(ChunkDecoder(SID, keys)(h, chunk.stored, chunk.footer)) == data


def test_untransformed_chunk_is_not_copied_either_way() -> None:
    plain = bytearray(os.urandom(1000))
    enc = ChunkEncoder(SID, selector=fixed(Compression.NONE))
    chunk = enc(plain, 0, 0, 0)
    assert isinstance(chunk.stored, memoryview) and chunk.stored.obj is plain
    out = ChunkDecoder(SID)(chunk.header, chunk.stored, chunk.footer)
    assert out is chunk.stored


def test_incompressible_chunks_are_stored_raw() -> None:
    noise = os.urandom(300_000)
    chunk = ChunkEncoder(SID, selector=fixed(Compression.ZSTD, 3))(noise, 0, 0, 0)
    assert chunk.header.compression is Compression.NONE and chunk.header.flags & ChunkFlags.RAW_FALLBACK
    assert SamplingSelector()(memoryview(noise)) == (Compression.NONE, 0)
    assert SamplingSelector()(memoryview(loglike(300_000))) == (Compression.ZSTD, 1)
    assert SamplingSelector(Compression.LZ4, 0)(memoryview(b"tiny")) == (Compression.LZ4, 0)


def test_encrypted_chunks_reveal_no_unkeyed_hash_and_use_fresh_nonces() -> None:
    keys = SessionKeys.derive(KEY, SID)
    data = loglike(50_000)
    enc = ChunkEncoder(SID, keys=keys, dedup=True)
    chunks = [enc(data, 0, i, 0) for i in range(20)]
    plain_hashes = {xxhash.xxh3_128_digest(data), hashlib.sha256(data).digest(), blake3.blake3(data).digest()}
    for c in chunks:
        h = c.header
        assert h.encryption is Encryption.AES_256_GCM and h.dedup_algo is DedupAlgo.KEYED_BLAKE3
        assert h.content_hash == bytes(16)
        fields = h.pack() + c.footer.pack()
        assert not any(ph[:12] in fields for ph in plain_hashes)
    assert len({c.header.nonce for c in chunks}) == 20
    assert len({c.header.dedup_hash for c in chunks}) == 1  # keyed, deterministic: dedup still works
    other = SessionKeys.derive(os.urandom(32), SID)
    elsewhere = ChunkEncoder(SID, keys=other, dedup=True)(data, 0, 0, 0)
    assert elsewhere.header.dedup_hash != chunks[0].header.dedup_hash


def test_dedup_hash_is_shared_across_sessions_of_one_key() -> None:
    a = ChunkEncoder(uuid.uuid4(), keys=SessionKeys.derive(KEY, uuid.uuid4()), dedup=True)
    b = ChunkEncoder(uuid.uuid4(), keys=SessionKeys.derive(KEY, uuid.uuid4()), dedup=True)
    assert a(b"same", 0, 0, 0).header.dedup_hash == b(b"same", 0, 0, 0).header.dedup_hash


def test_dedup_hashes_are_blake3_unkeyed_without_keys_and_keyed_with_the_dedup_key() -> None:
    data = loglike(70_000)
    keys = SessionKeys.derive(KEY, SID)
    plain = ChunkEncoder(SID, dedup=True)(data, 0, 0, 0).header
    keyed = ChunkEncoder(SID, keys=keys, dedup=True)(data, 0, 0, 0).header
    assert (plain.dedup_algo, plain.dedup_hash) == (DedupAlgo.BLAKE3, blake3.blake3(data).digest())
    assert (keyed.dedup_algo, keyed.dedup_hash) == (DedupAlgo.KEYED_BLAKE3,
                                                    blake3.blake3(data, key=keys.dedup_key).digest())
    whole = frame_whole(1, ArchiveHeader(object_index=1, name=b"/f").pack(), data, ChunkEncoder(SID, dedup=True))
    assert whole.dedup_hash == plain.dedup_hash  # the compiled framing hashes alike


def test_wrong_and_missing_keys_have_their_own_errors() -> None:
    keys = SessionKeys.derive(KEY, SID)
    with pytest.raises(WrongKeyError):
        SessionKeys.for_reading(os.urandom(32), SID, keys.key_check)
    with pytest.raises(KeyRequiredError):
        SessionKeys.for_reading(None, SID, keys.key_check)
    assert SessionKeys.for_reading(None, SID, b"") is None
    assert SessionKeys.for_reading(KEY, SID, keys.key_check) == keys
    with pytest.raises(LimitError):
        SessionKeys.derive(b"short", SID)
    chunk = ChunkEncoder(SID, keys=keys)(b"secret", 0, 0, 0)
    with pytest.raises(KeyRequiredError):
        ChunkDecoder(SID)(chunk.header, chunk.stored, chunk.footer)


@pytest.mark.parametrize("encrypt", [False, True])
@pytest.mark.parametrize("algo", [Compression.NONE, Compression.LZ4, Compression.ZSTD])
def test_tampering_anywhere_is_an_integrity_error(encrypt: bool, algo: Compression) -> None:
    keys = SessionKeys.derive(KEY, SID) if encrypt else None
    data = loglike(20_000)
    chunk = ChunkEncoder(SID, keys=keys, selector=fixed(algo, 1))(data, 1, 2, 3)
    dec = ChunkDecoder(SID, keys)
    for i in range(0, len(chunk.stored), max(1, len(chunk.stored) // 40)):
        bad = bytearray(chunk.stored)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityError):
            dec(chunk.header, bytes(bad), chunk.footer)
    # Headers are bound: moving a chunk to another offset or object fails too.
    moved = chunk.header._replace(object_offset=4)
    if encrypt:
        with pytest.raises(IntegrityError):
            dec(moved, chunk.stored, chunk.footer)
        with pytest.raises(IntegrityError):
            ChunkDecoder(uuid.uuid4(), keys)(chunk.header, chunk.stored, chunk.footer)


def test_codec_refusals() -> None:
    with pytest.raises(LimitError):
        compress(Compression.ZSTD, 40, b"x")
    with pytest.raises(LimitError):
        compress(Compression.LZ4, 99, b"x")
    frame = compress(Compression.ZSTD, 1, b"a" * 1000)
    with pytest.raises(IntegrityError):
        decompress(Compression.ZSTD, frame, 999)
    with pytest.raises(IntegrityError):
        decompress(Compression.ZSTD, b"garbage", 10)
    with pytest.raises(IntegrityError):
        decompress(Compression.LZ4, b"\xff" * 20, 100)
    with pytest.raises(IntegrityError):
        decompress(Compression.LZ4, compress(Compression.LZ4, 0, b"a" * 1000), 10)
    with pytest.raises(IntegrityError):
        decompress(Compression.ZSTD, frame, 1 << 30)
    with pytest.raises(LimitError):
        ChunkEncoder(SID)(bytes(65 << 20), 0, 0, 0)


def test_tuned_zstd_levels_make_plain_zstd_frames_that_state_their_size() -> None:
    """A tuned level (docs/format.md §5.4) is applied, and what it makes is an ordinary zstd
    frame with its content size: any zstd decoder reads it, the size check holds."""
    import zstandard

    from pipevault.format._codecs import ZSTD_TUNING

    text = loglike(1 << 20)
    for level, tuning in ZSTD_TUNING.items():
        frame = compress(Compression.ZSTD, level, text)
        params = zstandard.ZstdCompressionParameters.from_level(level, write_content_size=1, **tuning)
        assert frame == zstandard.ZstdCompressor(compression_params=params).compress(text)
        assert frame != zstandard.ZstdCompressor(level=level).compress(text)
        assert zstandard.frame_content_size(frame) == len(text)
        assert zstandard.ZstdDecompressor().decompress(frame) == text
        assert decompress(Compression.ZSTD, frame, len(text)) == text


def test_one_encoder_shared_by_threads_like_a_multi_instance_stage() -> None:
    from concurrent.futures import ThreadPoolExecutor
    keys = SessionKeys.derive(KEY, SID)
    enc = ChunkEncoder(SID, keys=keys, selector=SamplingSelector(Compression.ZSTD, 3), dedup=True)
    dec = ChunkDecoder(SID, keys)
    inputs = [loglike(200_000, seed) for seed in range(16)]
    with ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(lambda i: enc(inputs[i], 0, i, i * 200_000), range(16)))
        outputs = list(pool.map(lambda c: bytes(dec(c.header, c.stored, c.footer)), chunks))
    assert outputs == inputs
    assert len({c.header.nonce for c in chunks}) == 16


def test_raw_repeats_skips_compressing_a_chunk_the_encoder_gave_out_before() -> None:
    text = loglike(200_000, 3)
    enc = ChunkEncoder(SID, selector=fixed(Compression.ZSTD, 1), dedup=True, raw_repeats=True)
    first, repeat, other = enc(text, 0, 0, 0), enc(bytearray(text), 1, 0, 0), enc(loglike(200_000, 4), 2, 0, 0)
    assert first.header.compression is Compression.ZSTD and other.header.compression is Compression.ZSTD
    h = repeat.header
    assert h.compression is Compression.NONE and h.stored_len == len(text)
    assert not h.flags & ChunkFlags.RAW_FALLBACK and h.flags & ChunkFlags.HAS_DEDUP_HASH
    assert h.dedup_hash == first.header.dedup_hash
    assert bytes(ChunkDecoder(SID)(h, repeat.stored, repeat.footer)) == text
    # Off by default, and without dedup hashes there is nothing to recognise a repeat by.
    for plain in (ChunkEncoder(SID, selector=fixed(Compression.ZSTD, 1), dedup=True),
                  ChunkEncoder(SID, selector=fixed(Compression.ZSTD, 1), raw_repeats=True)):
        plain(text, 0, 0, 0)
        assert plain(text, 1, 0, 0).header.compression is Compression.ZSTD
