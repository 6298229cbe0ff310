"""Superblocks of the stream format stored on every medium and scanned back from it."""

from __future__ import annotations

import random

from pipevault.format import (
    DEFAULT_SIZE,
    ArchiveHeader,
    ChunkRead,
    ObjectEnded,
    SessionEnded,
    SessionHeader,
    SessionWriter,
    scan,
)
from pipevault.media import SUPERBLOCK_SIZE
from pipevault.media.testing import Implementation

SIZE = 1 << 16


def test_media_default_block_is_the_format_superblock() -> None:
    assert SUPERBLOCK_SIZE == DEFAULT_SIZE


def test_a_session_written_to_a_volume_scans_back_intact(implementation: Implementation) -> None:
    rng = random.Random(7)
    objects = [(f"/data/file{i}".encode(), rng.randbytes(rng.randint(1, 150_000))) for i in range(4)]
    writer = SessionWriter(SessionHeader(node="node1", job="media-test"), size=SIZE)
    for name, data in objects:
        writer.begin_object(ArchiveHeader(name=name, size=len(data), mode=0o100644))
        writer.write(data)
        writer.end_object()
    writer.close()
    superblocks = writer.take()
    vol = implementation.make(SIZE, len(superblocks) + 2)
    first = vol.append(superblocks[0])
    for sb in superblocks[1:]:
        vol.append(sb)
    vol.sync()
    read_back = [vol.read(first + i) for i in range(len(superblocks))]
    assert read_back == [bytes(sb) for sb in superblocks]
    events = list(scan(read_back))
    rebuilt: dict[int, bytearray] = {}
    for e in events:
        if isinstance(e, ChunkRead) and e.data is not None:
            rebuilt.setdefault(e.header.object_index, bytearray()).extend(e.data)
    assert sum(isinstance(e, ObjectEnded) for e in events) == len(objects)
    assert any(isinstance(e, SessionEnded) for e in events)
    assert [bytes(rebuilt[i]) for i in sorted(rebuilt)] == [data for _, data in objects]
    vol.close()
