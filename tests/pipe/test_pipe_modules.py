"""Built-in modules: real files through compressors and ciphers, and damaged input refused."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import xxhash
import zstandard
from pipe_helpers import pipe_leftovers

from pipevault.pipe import Pipe, StageSpec
from pipevault.pipe.errors import CorruptInput, IntegrityError
from pipevault.pipe.modules import (
    AesGcmDecrypt,
    AesGcmEncrypt,
    Discard,
    FileReader,
    FileWriter,
    Lz4Compress,
    Lz4Decompress,
    Xxh3Hasher,
    ZstdCompress,
    ZstdDecompress,
)

P = functools.partial
BUF = 256 << 10


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3.3 MB: log-like text, random bytes, zeros; not a multiple of the buffer size."""
    path = tmp_path_factory.mktemp("data") / "sample.bin"
    text = b"".join(b"2026-11-23 12:00:%02d host%03d backup ok files=%d\n" % (i % 60, i % 97, i)
                    for i in range(40000))
    path.write_bytes(text + os.urandom(1_000_000) + bytes(600_000) + b"tail")
    return path


def run(*stages: StageSpec, buffer_size: int = BUF) -> dict[str, list[object]]:
    return Pipe(list(stages), buffer_size=buffer_size, max_buffers=16).run().results


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_zstd_round_trip_is_a_standard_zstd_file(sample: Path, tmp_path: Path, mode: str) -> None:
    packed, back = tmp_path / "s.zst", tmp_path / "s.out"
    run(StageSpec("read", P(FileReader, str(sample))),
        StageSpec("zstd", P(ZstdCompress, 3), instances=2, allocates=True, mode=mode),
        StageSpec("write", P(FileWriter, str(packed), True)))
    with open(packed, "rb") as f:  # any zstd reader decodes it: concatenated standard frames
        assert zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read() \
            == sample.read_bytes()
    results = run(StageSpec("read", P(FileReader, str(packed))),
                  StageSpec("unzstd", ZstdDecompress, allocates=True),
                  StageSpec("hash", Xxh3Hasher),
                  StageSpec("write", P(FileWriter, str(back))), buffer_size=64 << 10)
    assert back.read_bytes() == sample.read_bytes()
    assert results["hash"] == [xxhash.xxh3_128_hexdigest(sample.read_bytes())]


def test_thread_and_process_compressors_write_identical_bytes(sample: Path, tmp_path: Path) -> None:
    outs = []
    for mode in ("thread", "process"):
        out = tmp_path / f"{mode}.lz4"
        run(StageSpec("read", P(FileReader, str(sample))),
            StageSpec("lz4", Lz4Compress, instances=2, allocates=True, mode=mode),
            StageSpec("write", P(FileWriter, str(out))))
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    back = tmp_path / "back"
    run(StageSpec("read", P(FileReader, str(tmp_path / "thread.lz4"))),
        StageSpec("unlz4", Lz4Decompress, allocates=True), StageSpec("write", P(FileWriter, str(back))))
    assert back.read_bytes() == sample.read_bytes()


def test_encrypt_decrypt_round_trip_and_wrong_key(sample: Path, tmp_path: Path) -> None:
    key = os.urandom(32)
    sealed, back = tmp_path / "s.aes", tmp_path / "s.out"
    run(StageSpec("read", P(FileReader, str(sample))),
        StageSpec("enc", P(AesGcmEncrypt, key), instances=2, allocates=True),
        StageSpec("write", P(FileWriter, str(sealed))))
    assert sample.read_bytes()[:4096] not in sealed.read_bytes()
    run(StageSpec("read", P(FileReader, str(sealed))),
        StageSpec("dec", P(AesGcmDecrypt, key), allocates=True),
        StageSpec("write", P(FileWriter, str(back))))
    assert back.read_bytes() == sample.read_bytes()
    with pytest.raises(IntegrityError, match="record 0 does not authenticate"):
        run(StageSpec("read", P(FileReader, str(sealed))),
            StageSpec("dec", P(AesGcmDecrypt, os.urandom(32)), allocates=True), StageSpec("sink", Discard))
    assert pipe_leftovers() == []


def test_altered_and_truncated_ciphertext_is_refused(sample: Path, tmp_path: Path) -> None:
    key = os.urandom(32)
    sealed = tmp_path / "s.aes"
    run(StageSpec("read", P(FileReader, str(sample))),
        StageSpec("enc", P(AesGcmEncrypt, key), allocates=True),
        StageSpec("write", P(FileWriter, str(sealed))))
    data = bytearray(sealed.read_bytes())
    flipped = tmp_path / "flipped"
    data[BUF + 100] ^= 1
    flipped.write_bytes(data)
    with pytest.raises(IntegrityError, match="record 1"):
        run(StageSpec("read", P(FileReader, str(flipped))),
            StageSpec("dec", P(AesGcmDecrypt, key), allocates=True), StageSpec("sink", Discard))
    cut = tmp_path / "cut"
    cut.write_bytes(sealed.read_bytes()[:-5])
    with pytest.raises(CorruptInput, match="truncated"):
        run(StageSpec("read", P(FileReader, str(cut))),
            StageSpec("dec", P(AesGcmDecrypt, key), allocates=True), StageSpec("sink", Discard))


@pytest.mark.parametrize(("comp", "decomp"), [(ZstdCompress, ZstdDecompress), (Lz4Compress, Lz4Decompress)])
def test_truncated_or_foreign_compressed_input_is_refused(sample: Path, tmp_path: Path,
                                                          comp: type, decomp: type) -> None:
    packed = tmp_path / "p"
    run(StageSpec("read", P(FileReader, str(sample))), StageSpec("c", comp, allocates=True),
        StageSpec("write", P(FileWriter, str(packed))))
    cut = tmp_path / "cut"
    cut.write_bytes(packed.read_bytes()[:-7])
    with pytest.raises(CorruptInput, match="truncated"):
        run(StageSpec("read", P(FileReader, str(cut))), StageSpec("d", decomp, allocates=True),
            StageSpec("sink", Discard))
    with pytest.raises(CorruptInput, match="not a valid"):
        run(StageSpec("read", P(FileReader, str(sample))), StageSpec("d", decomp, allocates=True),
            StageSpec("sink", Discard))


def test_reader_offset_and_length(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "part"
    results = run(StageSpec("read", P(FileReader, str(sample), 1000, 700_000)),
                  StageSpec("write", P(FileWriter, str(out))))
    assert out.read_bytes() == sample.read_bytes()[1000:701_000]
    assert results["read"] == [700_000] and results["write"] == [700_000]
