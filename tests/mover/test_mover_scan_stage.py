"""The scan stage of a restore: what it sends equals what a scanner yields, chunks larger
than a buffer included (they travel in pieces)."""

from __future__ import annotations

import functools
import random
import uuid
from typing import Any

from pipevault.format import (
    ArchiveHeader,
    ChunkRead,
    Damage,
    ObjectEnded,
    ObjectStarted,
    OptionsRead,
    Scanner,
    SessionHeader,
    SessionWriter,
)
from pipevault.mover.scan import EventReader, ScanStage
from pipevault.pipe import Pipe, StageContext, StageSpec

SID = uuid.UUID(int=7)


class Feed:
    def __init__(self, blocks: list[bytes]) -> None:
        self.blocks = blocks

    def run(self, ctx: StageContext) -> None:
        for block in self.blocks:
            buf = ctx.alloc_buf()
            buf.set(block)
            ctx.send_buf(buf)


class Collect:
    def run(self, ctx: StageContext) -> list[tuple[Any, ...]]:
        got: list[tuple[Any, ...]] = []
        reader = EventReader()
        while (buf := ctx.receive_buf()) is not None:
            got += [_summary(ev) for ev in reader.events(buf.view)]
            ctx.free_buf(buf)
        return got


def _summary(ev: object) -> tuple[Any, ...]:
    if isinstance(ev, ObjectStarted):
        return ("start", ev.header.object_index, ev.header.name)
    if isinstance(ev, OptionsRead):
        return ("options", ev.options.object_index, ev.options.items)
    if isinstance(ev, ChunkRead):
        return ("chunk", ev.header.object_index, ev.header.chunk_seq, ev.header.object_offset,
                bytes(ev.data) if ev.data is not None else None)
    if isinstance(ev, ObjectEnded):
        return ("end", ev.footer.object_index, ev.footer.status)
    assert isinstance(ev, Damage)
    return ("damage", ev.kind)


def _session(chunk_size: int) -> tuple[list[bytes], dict[int, bytes]]:
    rng = random.Random(5)
    w = SessionWriter(SessionHeader(node="n"), session_id=SID, chunk_size=chunk_size)
    data = {0: rng.randbytes(3_000_000), 1: b"", 2: rng.randbytes(5000) * 40}
    for i, payload in data.items():
        w.begin_object(ArchiveHeader(name=f"/f{i}".encode(), size=len(payload)))
        if i == 2:
            w.options({"k": b"v"})
        w.write(payload)
        w.end_object()
    w.close()
    return [bytes(b) for b in w.take()], data


def _through_stage(blocks: list[bytes], wanted: list[tuple[uuid.UUID, int]] | None,
                   buffer_size: int) -> list[tuple[Any, ...]]:
    specs = [StageSpec("feed", functools.partial(Feed, blocks)),
             StageSpec("scan", functools.partial(ScanStage, None, {SID}, wanted), mode="process", allocates=True),
             StageSpec("collect", Collect)]
    return Pipe(specs, buffer_size=buffer_size, max_buffers=8).run().results["collect"][0]


def test_events_equal_the_scanners_and_large_chunks_come_whole() -> None:
    blocks, data = _session(chunk_size=2 << 20)  # chunks of 2 MiB: several pieces each
    scanner = Scanner()
    direct = [_summary(ev) for b in blocks for ev in scanner.feed(b)
              if isinstance(ev, ObjectStarted | OptionsRead | ObjectEnded)
              or (isinstance(ev, ChunkRead) and ev.data is not None)]
    got = _through_stage(blocks, None, buffer_size=300 << 10)
    assert got == direct
    joined = b"".join(e[4] for e in got if e[0] == "chunk" and e[1] == 0)
    assert joined == data[0]


def test_only_the_wanted_objects_travel() -> None:
    blocks, data = _session(chunk_size=1 << 20)
    got = _through_stage(blocks, [(SID, 2)], buffer_size=(1 << 20) + (64 << 10))
    assert {e[1] for e in got} == {2}
    assert b"".join(e[4] for e in got if e[0] == "chunk") == data[2]


def test_damage_is_reported_through_the_stage() -> None:
    blocks, _ = _session(chunk_size=1 << 20)
    cut = blocks[:3] + blocks[4:]  # a superblock lost in the middle of object 0
    got = _through_stage(cut, None, buffer_size=(1 << 20) + (64 << 10))
    assert any(e[0] == "damage" for e in got)
    assert ("start", 2, b"/f2") in got  # the scan resynchronises and goes on
