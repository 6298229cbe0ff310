"""The decoding half of a restore's scan: large compressed chunks checked and decompressed in parallel.

The scan stage parses the stream in one process (its order matters); most of a large
compressed file's cost is not parsing but checking its chunks' hashes and decompressing them,
which needs no order. The scanner leaves those chunks stored (STORED records, see ``scan``);
:class:`DecodeStage`, a parallel stage after it, decodes them with the interpreter lock
released, so several cores share the work, and the pipe's resequencer hands the buffers on
in the scanner's order.
"""

from __future__ import annotations

import pickle
import uuid

from pipevault.format import ChunkRead
from pipevault.mover import _wire as W
from pipevault.mover.scan import (
    CHUNK,
    CHUNK_EVENT,
    DAMAGE,
    EVENT,
    EVENTS,
    EVENTS_TO_DECODE,
    NO_REF,
    STORED,
    decode_record,
)
from pipevault.pipe import StageContext


class DecodeStage:
    """Middle stage (parallel, allocating): EVENTS buffers with STORED records in, the same
    events with each chunk decoded (a CHUNK record, or the DAMAGE record the reader would have
    made) out, in a new buffer; other buffers go on untouched. One buffer out per buffer in.
    """

    def run(self, ctx: StageContext) -> None:
        while (buf := ctx.receive_buf()) is not None:
            if W.get_prefix(buf.data)[0] != EVENTS_TO_DECODE:
                ctx.send_buf(buf)
                continue
            out = ctx.alloc_buf()
            out.length = decode_events(buf.view, out.data)
            ctx.free_buf(buf)
            ctx.send_buf(out)


def decode_events(src: memoryview, dst: memoryview) -> int:
    """Write ``src``'s events into ``dst`` with every STORED record decoded; returns the length.

    ``dst`` has the size of ``src``'s buffer: the scanner kept the room decoding needs.
    """
    count = W.get_prefix(src)[4]
    pos = wpos = W.PREFIX_LEN
    run = pos  # start of the records copied as they are, not yet written
    for _ in range(count):
        rtype, sid_raw, number, size = EVENT.unpack_from(src, pos)
        end = pos + EVENT.size + size
        if rtype == STORED:
            dst[wpos: wpos + pos - run] = src[run: pos]
            wpos += pos - run
            got = decode_record(uuid.UUID(bytes=bytes(sid_raw)), number, src[pos + EVENT.size: end])
            if type(got) is ChunkRead:
                header = got.header
                data = memoryview(got.pieces[0]).cast("B")
                head = CHUNK_EVENT.pack(header.object_index, header.chunk_seq, header.object_offset, header.plain_len,
                                        int(header.flags), NO_REF, NO_REF, 0)
                EVENT.pack_into(dst, wpos, CHUNK, sid_raw, 0, len(head) + len(data))
                parts: tuple[bytes | memoryview, ...] = (head, data)
            else:
                damage = pickle.dumps(got)
                EVENT.pack_into(dst, wpos, DAMAGE, sid_raw, 0, len(damage))
                parts = (damage,)
            wpos += EVENT.size
            for p in parts:
                dst[wpos: wpos + len(p)] = p
                wpos += len(p)
            run = end
        pos = end
    dst[wpos: wpos + pos - run] = src[run: pos]
    wpos += pos - run
    W.put_prefix(dst, EVENTS, 0, a=count)
    return wpos
