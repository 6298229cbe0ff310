"""zstd and lz4 compressor and decompressor stages.

Compressors turn each buffer into one standard frame in a new pool buffer, so they can run
as several instances (the resequencer keeps frame order) and their output, written
end to end, is a valid ``.zst`` or ``.lz4`` file. Compressed frames fit one buffer because
first stages leave ``fill_limit`` headroom. Decompressors accept any chunking of such a
stream (one instance: frames may straddle buffers) and may emit several buffers per input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lz4.frame
import zstandard

from pipevault.pipe._context import StageContext
from pipevault.pipe.errors import CorruptInput


def _compress_loop(ctx: StageContext, compress: Callable[[memoryview], bytes]) -> int:
    total = 0
    while (buf := ctx.receive_buf()) is not None:
        frame = compress(buf.view)
        ctx.free_buf(buf)
        out = ctx.alloc_buf()
        out.set(frame)
        total += len(frame)
        ctx.send_buf(out)
    return total


class ZstdCompress:
    """zstd at ``level`` (default 1); one frame per buffer. Declare the stage allocating."""

    def __init__(self, level: int = 1) -> None:
        self.level = level

    def run(self, ctx: StageContext) -> int:
        c = zstandard.ZstdCompressor(level=self.level)
        return _compress_loop(ctx, c.compress)


class Lz4Compress:
    """lz4 frame per buffer. Declare the stage allocating."""

    def run(self, ctx: StageContext) -> int:
        return _compress_loop(ctx, lambda v: lz4.frame.compress(v, store_size=True))


def _emit(ctx: StageContext, data: bytes) -> None:
    """Send ``data`` in as many new buffers as it needs."""
    view = memoryview(data)
    cap = ctx.fill_limit
    for off in range(0, len(view), cap):
        out = ctx.alloc_buf()
        out.set(view[off: off + cap])
        ctx.send_buf(out)


class ZstdDecompress:
    """Decompresses a stream of zstd frames cut anywhere. One instance; allocating.

    Raises:
        CorruptInput: the data is not zstd, or the stream ends inside a frame.
    """

    def run(self, ctx: StageContext) -> int:
        d: Any = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
        total = 0
        seen = False
        while (buf := ctx.receive_buf()) is not None:
            try:
                data = d.decompress(buf.view)
            except zstandard.ZstdError as exc:
                raise CorruptInput(f"stage {ctx.stage_name}: not a valid zstd stream: {exc}") from exc
            finally:
                ctx.free_buf(buf)
            seen = True
            total += len(data)
            _emit(ctx, data)
        # A complete stream leaves the object waiting for a new frame; inside a frame it
        # still owes output, which flush cannot produce.
        if seen and not _zstd_at_frame_boundary(d):
            raise CorruptInput(f"stage {ctx.stage_name}: the zstd stream is truncated inside a frame")
        return total


def _zstd_at_frame_boundary(d: Any) -> bool:
    # With read_across_frames the object never sets eof; a fresh frame header would be
    # needed to continue, so feeding an empty input must produce nothing and no error, and
    # the decompressor's internal "expected input" is checked through an explicit probe.
    probe = zstandard.ZstdCompressor(level=1).compress(b"")
    try:
        return bool(d.decompress(probe) == b"")
    except zstandard.ZstdError:
        return False


class Lz4Decompress:
    """Decompresses a stream of lz4 frames cut anywhere. One instance; allocating.

    Raises:
        CorruptInput: the data is not lz4, or the stream ends inside a frame.
    """

    def run(self, ctx: StageContext) -> int:
        d = lz4.frame.LZ4FrameDecompressor()
        total = 0
        mid_frame = False
        while (buf := ctx.receive_buf()) is not None:
            chunk: Any = buf.view
            try:
                while True:
                    data = d.decompress(chunk)
                    mid_frame = not d.eof
                    total += len(data)
                    _emit(ctx, data)
                    if not d.eof:
                        break
                    rest = d.unused_data
                    d = lz4.frame.LZ4FrameDecompressor()
                    mid_frame = False
                    if not rest:
                        break
                    chunk = rest
            except RuntimeError as exc:
                raise CorruptInput(f"stage {ctx.stage_name}: not a valid lz4 stream: {exc}") from exc
            finally:
                ctx.free_buf(buf)
        if mid_frame:
            raise CorruptInput(f"stage {ctx.stage_name}: the lz4 stream is truncated inside a frame")
        return total
