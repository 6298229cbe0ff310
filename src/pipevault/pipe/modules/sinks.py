"""Small stages: discard sink, passthrough and the xxh3 stream hasher."""

from __future__ import annotations

import xxhash

from pipevault.pipe._context import StageContext


class Discard:
    """Tail: frees every buffer unread, measuring the pipe without storage. Result: bytes seen."""

    def run(self, ctx: StageContext) -> int:
        total = 0
        while (buf := ctx.receive_buf()) is not None:
            total += buf.length
            ctx.free_buf(buf)
        return total


class Passthrough:
    """Middle stage: sends each buffer on untouched (measures the cost of a handoff)."""

    def run(self, ctx: StageContext) -> None:
        while (buf := ctx.receive_buf()) is not None:
            ctx.send_buf(buf)


class Xxh3Hasher:
    """Middle stage: xxh3-128 of the whole stream, in order; buffers go on untouched.

    Run with one instance (a running hash needs the stream in order). Result: the digest as
    32 hex digits.
    """

    def run(self, ctx: StageContext) -> str:
        h = xxhash.xxh3_128()
        while (buf := ctx.receive_buf()) is not None:
            h.update(buf.view)
            if ctx.is_tail:
                ctx.free_buf(buf)
            else:
                ctx.send_buf(buf)
        return str(h.hexdigest())
