"""The backup's encode stage on CHUNK buffers: a chunk stored as it is (incompressible, or a
repeat) is encoded in its own buffer with nothing copied; a compressed or encrypted one goes
to a buffer of its own; every ENCODED buffer decodes to the chunk the reader read."""

from __future__ import annotations

import os
import uuid

import pytest

from pipevault.format import ChunkDecoder, ChunkFooter, ChunkHeader, Compression, Encryption, SessionKeys
from pipevault.mover import _wire as W
from pipevault.mover.backup import BUFFER, ChunkEncode

SID = uuid.UUID(int=11)
KEY = bytes(range(32))


class Buf:
    def __init__(self) -> None:
        self.data = memoryview(bytearray(BUFFER))
        self.length = 0


class Ctx:
    """The StageContext calls ChunkEncode makes, over plain buffers."""

    def __init__(self, inputs: list[Buf]) -> None:
        self.inputs = list(inputs)
        self.sent: list[Buf] = []
        self.allocated: list[Buf] = []
        self.freed: list[Buf] = []

    def receive_buf(self) -> Buf | None:
        return self.inputs.pop(0) if self.inputs else None

    def alloc_buf(self) -> Buf:
        buf = Buf()
        self.allocated.append(buf)
        return buf

    def free_buf(self, buf: Buf) -> None:
        self.freed.append(buf)

    def send_buf(self, buf: Buf) -> None:
        self.sent.append(buf)


def _chunk(index: int, seq: int, data: bytes) -> Buf:
    """A CHUNK buffer as the reader fills it (data after the room left for a header)."""
    buf = Buf()
    start = W.PREFIX_LEN + W.CHUNK_ROOM
    buf.data[start: start + len(data)] = data
    W.put_prefix(buf.data, W.CHUNK, index, seq, seq << 20, len(data))
    buf.length = start + len(data)
    return buf


def _decode(buf: Buf, keys: SessionKeys | None) -> tuple[ChunkHeader, bytes]:
    kind, _index, _seq, _offset, a, b, c = W.get_prefix(buf.data)
    assert kind == W.ENCODED
    P = W.PREFIX_LEN
    assert buf.length == P + a + b + c
    header = ChunkHeader.unpack(buf.data[P: P + a])
    footer = ChunkFooter.unpack(buf.data[P + a + b: P + a + b + c])
    return header, bytes(ChunkDecoder(SID, keys)(header, buf.data[P + a: P + a + b], footer))


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_stored_as_is_chunks_are_encoded_in_place_and_every_chunk_decodes(encrypted: bool) -> None:
    random = os.urandom(1 << 20)
    text = b"a line of a log that repeats itself\n" * 20_000
    chunks = [_chunk(3, 0, random), _chunk(3, 1, text), _chunk(3, 2, random)]  # the last repeats the first
    ctx = Ctx(chunks)
    ChunkEncode(SID, KEY if encrypted else None, True, True).run(ctx)  # type: ignore[arg-type]
    keys = SessionKeys.derive(KEY, SID) if encrypted else None
    decoded = [_decode(buf, keys) for buf in ctx.sent]
    assert [d for _h, d in decoded] == [random, text, random]
    headers = [h for h, _d in decoded]
    assert headers[1].compression == Compression.ZSTD
    if encrypted:  # every chunk is encrypted into a buffer of its own
        assert all(h.encryption == Encryption.AES_256_GCM for h in headers)
        assert not any(sent is chunk for sent, chunk in zip(ctx.sent, chunks, strict=True))
        assert len(ctx.allocated) == 3 and ctx.freed == chunks
    else:  # the random chunk and its repeat are sent on in the reader's own buffers
        assert [h.compression for h in headers] == [Compression.NONE, Compression.ZSTD, Compression.NONE]
        assert ctx.sent[0] is chunks[0] and ctx.sent[2] is chunks[2]
        assert ctx.sent[1] is not chunks[1] and ctx.allocated == [ctx.sent[1]] and ctx.freed == [chunks[1]]
