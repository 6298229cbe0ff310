"""Compression codecs and selectors: plain callables on buffers.

Every codec takes a bytes-like object (``bytes``, ``bytearray``, ``memoryview``; not kept after
the call returns) and returns a new ``bytes``. They release the GIL inside C code, so the
DataPipe can run them as multi-instance thread stages. Compression contexts are per thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lz4.block
import zstandard

from pipevault.format._records import MAX_CHUNK, Compression
from pipevault.format.errors import IntegrityError, LimitError

Buffer = bytes | bytearray | memoryview
Selector = Callable[[memoryview], tuple[Compression, int]]
"""Chooses ``(compression, level)`` for one chunk from its plaintext."""

_local = threading.local()
# Enum members as module constants: looking a member up on its class costs ~0.2 us (Python
# 3.11), once or twice per chunk here.
_NO_COMPRESSION, _LZ4, _ZSTD = Compression.NONE, Compression.LZ4, Compression.ZSTD


# zstd parameters pipevault uses instead of the level's own (docs/format.md §5.4). Level 1,
# the default of every class that compresses: a 4 Ki-entry hash table (half the level's) and
# matches of 7 bytes at least (not 6) take 13 % less CPU on text and log chunks for 4 % more
# output (1 MiB chunks of the backup benchmark's log and text files: 1.38 -> 1.20 CPU s).
ZSTD_TUNING: dict[int, dict[str, int]] = {1: {"hash_log": 12, "min_match": 7}}


def _zstd_compressor(level: int) -> Any:
    """A new compressor for ``level`` (:func:`packer` keeps one per thread and level)."""
    tuning = ZSTD_TUNING.get(level)
    if tuning is None:
        return zstandard.ZstdCompressor(level=level, write_content_size=True)
    params = zstandard.ZstdCompressionParameters.from_level(level, write_content_size=1, **tuning)
    return zstandard.ZstdCompressor(compression_params=params)


def _zstd_decompressor() -> Any:
    dec = getattr(_local, "zd", None)
    if dec is None:
        dec = _local.zd = zstandard.ZstdDecompressor()
    return dec


def packer(algo: Compression, level: int) -> Callable[[Buffer], bytes] | None:
    """The callable that compresses with ``algo`` at ``level`` in this thread (its own
    compressor; None for NONE): what :func:`compress` calls, and what compiled code that
    compresses through it is given.

    Raises:
        LimitError: a level outside the algorithm's range.
    """
    if algo is _NO_COMPRESSION:
        return None
    cache: dict[tuple[Compression, int], Callable[[Buffer], bytes]] = _local.__dict__.setdefault("packers", {})
    found = cache.get((algo, level))
    if found is None:
        if algo is _LZ4:
            if not 0 <= level <= 16:
                raise LimitError(f"lz4 level {level} is outside 0..16")
            found = functools.partial(lz4.block.compress, mode="high_compression" if level > 0 else "default",
                                      compression=level, store_size=False)
        else:
            if not -7 <= level <= 22:
                raise LimitError(f"zstd level {level} is outside -7..22")
            found = _zstd_compressor(level).compress
        cache[(algo, level)] = found
    return found


def compress(algo: Compression, level: int, data: Buffer) -> bytes:
    """Compress ``data`` with ``algo`` at ``level``; NONE returns a copy (callers avoid it).

    Raises:
        LimitError: a level outside the algorithm's range.
    """
    pack = packer(algo, level)
    return bytes(data) if pack is None else bytes(pack(data))


def decompress(algo: Compression, data: Buffer, plain_len: int) -> bytes:
    """Decompress ``data`` to exactly ``plain_len`` bytes.

    Raises:
        IntegrityError: the data is not a valid stream of ``algo`` or its size differs.
    """
    if plain_len > MAX_CHUNK:
        raise IntegrityError(f"chunk claims {plain_len} bytes, more than the 64 MiB limit")
    try:
        if algo is _LZ4:
            out = lz4.block.decompress(data, uncompressed_size=plain_len)
        elif algo is _ZSTD:
            # The frame header states the size; checking it first stops a crafted frame from
            # making the decompressor allocate gigabytes.
            if zstandard.frame_content_size(data) != plain_len:
                raise IntegrityError(f"zstd frame size differs from the chunk's {plain_len} bytes")
            out = _zstd_decompressor().decompress(data, max_output_size=plain_len)
        else:
            out = bytes(data)
    except (lz4.block.LZ4BlockError, zstandard.ZstdError, ValueError) as exc:
        raise IntegrityError(f"{algo.name.lower()} data does not decompress: {exc}") from exc
    if len(out) != plain_len:
        raise IntegrityError(f"{algo.name.lower()} chunk decompressed to {len(out)} bytes, "
                             f"expected {plain_len}")
    return bytes(out)


def fixed(algo: Compression, level: int = 0) -> Selector:
    """A selector that always picks ``(algo, level)``."""
    choice = (algo, level)

    def select(_plain: memoryview) -> tuple[Compression, int]:
        return choice
    return select


@dataclass(frozen=True)
class SamplingSelector:
    """Picks ``(algo, level)`` unless a sample of the chunk does not compress.

    Compresses ``sample`` bytes from the middle of the chunk with lz4 (fast); when they shrink
    by less than ``min_saving``, the chunk is stored without compression, saving the full
    compression attempt on already-compressed data (media, archives, encrypted files).
    """

    algo: Compression = Compression.ZSTD
    level: int = 1
    sample: int = 16384
    min_saving: float = 0.03

    def __call__(self, plain: memoryview) -> tuple[Compression, int]:
        if self.algo is _NO_COMPRESSION or len(plain) <= self.sample:
            return self.algo, self.level
        start = (len(plain) - self.sample) // 2
        probe = lz4.block.compress(plain[start:start + self.sample], store_size=False)
        if len(probe) > self.sample * (1 - self.min_saving):
            return _NO_COMPRESSION, 0
        return self.algo, self.level
