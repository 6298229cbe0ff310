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
from pipevault.mover.scan import EventReader, ScanStage, SmallFile
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
            for ev in reader.events(buf.view):
                got += _small(ev) if isinstance(ev, SmallFile) else [_summary(ev)]
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


def _small(ev: SmallFile) -> list[tuple[Any, ...]]:
    """A SMALL record as the events it stands for (a chunk only when there is data)."""
    chunk = [("chunk", ev.object_index, 0, 0, bytes(ev.data))] if ev.size else []
    return [("start", ev.object_index, ev.name), *chunk, ("end", ev.object_index, 0), ("small",)]


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
                   buffer_size: int, small_max: int = 0) -> list[tuple[Any, ...]]:
    specs = [StageSpec("feed", functools.partial(Feed, blocks)),
             StageSpec("scan", functools.partial(ScanStage, None, {SID}, wanted, small_max), mode="process",
                       allocates=True),
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


def test_small_files_read_whole_travel_as_one_record() -> None:
    rng = random.Random(9)
    w = SessionWriter(SessionHeader(node="n"), session_id=SID)
    payloads = [rng.randbytes(rng.choice((0, 10, 3000, 90_000))) for _ in range(60)]
    for i, payload in enumerate(payloads):
        xattrs = ((b"user.k", b"v" * i),) if i % 7 == 0 else ()
        w.begin_object(ArchiveHeader(name=f"/s{i}".encode(), size=len(payload), mode=0o640, uid=i, xattrs=xattrs))
        if i == 5:
            w.options({"k": b"v"})  # something between start and chunk: sent the ordinary way
        w.write(payload)
        w.end_object()
    w.close()
    blocks = [bytes(b) for b in w.take()]
    scanner = Scanner()
    direct = [_summary(ev) for b in blocks for ev in scanner.feed(b)
              if isinstance(ev, ObjectStarted | OptionsRead | ObjectEnded)
              or (isinstance(ev, ChunkRead) and ev.data is not None)]
    got = _through_stage(blocks, None, buffer_size=(1 << 20) + (64 << 10), small_max=64 << 10)
    smalls = got.count(("small",))
    assert [e for e in got if e != ("small",)] == direct
    # Files up to 64 KiB go whole (not the one with options, nor those cut by a superblock end).
    fit = sum(1 for i, p in enumerate(payloads) if len(p) <= 64 << 10 and i != 5)
    assert fit - 6 <= smalls <= fit


def test_small_file_records_carry_attributes_and_xattrs() -> None:
    w = SessionWriter(SessionHeader(node="n"), session_id=SID)
    w.begin_object(ArchiveHeader(name=b"/x", size=3, mode=0o600, uid=7, gid=8, atime_ns=5, mtime_ns=6,
                                 xattrs=((b"user.a", b"1"), (b"user.b", b"")), filespace="/fs"))
    w.write(b"abc")
    w.end_object()
    w.close()
    specs = [StageSpec("feed", functools.partial(Feed, [bytes(b) for b in w.take()])),
             StageSpec("scan", functools.partial(ScanStage, None, {SID}, None, 1024), mode="process",
                       allocates=True),
             StageSpec("collect", CollectSmall)]
    got = Pipe(specs, buffer_size=1 << 20, max_buffers=8).run().results["collect"][0]
    assert got == [(0, b"/x", "/fs", 3, 0o600, 7, 8, 5, 6, ((b"user.a", b"1"), (b"user.b", b"")), b"abc")]


class CollectSmall:
    def run(self, ctx: StageContext) -> list[tuple[Any, ...]]:
        got: list[tuple[Any, ...]] = []
        reader = EventReader()
        while (buf := ctx.receive_buf()) is not None:
            got += [(e.object_index, e.name, e.filespace, e.size, e.mode, e.uid, e.gid, e.atime_ns, e.mtime_ns,
                     e.xattrs, bytes(e.data)) for e in reader.events(buf.view) if isinstance(e, SmallFile)]
            ctx.free_buf(buf)
        return got
