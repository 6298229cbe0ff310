"""Helpers shared by the format tests: write sessions, read them back into objects."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipevault.format import (
    ArchiveHeader,
    ChunkRead,
    Damage,
    Event,
    ObjectEnded,
    ObjectStarted,
    SessionEnded,
    SessionHeader,
    SessionWriter,
)

KEY = bytes(range(32))


def loglike(n: int, seed: int = 0) -> bytes:
    """Compressible text mixed with random runs, deterministic per seed."""
    rnd = random.Random(seed)
    words = [rnd.randbytes(rnd.randint(2, 6)).hex() for _ in range(200)]
    out = bytearray()
    while len(out) < n:
        if rnd.random() < 0.1:
            out += rnd.randbytes(rnd.randint(16, 512))
        else:
            out += (f"2026-11-23T02:{rnd.randint(0, 59):02d} host{rnd.randint(1, 9)}: "
                    + " ".join(rnd.choice(words) for _ in range(6)) + "\n").encode()
    return bytes(out[:n])


def write_session(objects: Sequence[tuple[bytes, bytes]], *, writes: int = 1, **kwargs: Any
                  ) -> tuple[SessionWriter, list[memoryview]]:
    """One whole session of ``(name, data)`` objects; each object's data fed in ``writes`` calls."""
    w = SessionWriter(SessionHeader(node="node1", job="job1"), **kwargs)
    for name, data in objects:
        w.begin_object(ArchiveHeader(name=name, size=len(data), mode=0o100644))
        step = max(1, -(-len(data) // writes))
        for i in range(0, len(data), step):
            w.write(data[i:i + step])
        w.end_object()
    w.close()
    return w, w.take()


@dataclass
class SessionView:
    """What a scan delivered for one session."""

    names: dict[int, bytes] = field(default_factory=dict)
    data: dict[int, bytearray] = field(default_factory=dict)
    chunks: dict[tuple[int, int], bytes] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    complete: bool = False
    damage: list[Damage] = field(default_factory=list)


def collect(events: Iterable[Event]) -> tuple[dict[uuid.UUID, SessionView], list[Damage]]:
    """Group scan events by session; object data rebuilt from chunks (duplicates resolved)."""
    views: dict[uuid.UUID, SessionView] = {}
    loose: list[Damage] = []
    for e in events:
        if isinstance(e, Damage) and e.session_id is None:
            loose.append(e)
            continue
        v = views.setdefault(e.session_id, SessionView())
        if isinstance(e, Damage):
            v.damage.append(e)
        elif isinstance(e, ObjectStarted):
            v.names[e.header.object_index] = e.header.name
            v.data[e.header.object_index] = bytearray()
        elif isinstance(e, ChunkRead):
            h = e.header
            piece = v.chunks[h.ref] if h.ref is not None else bytes(e.data or b"")
            v.chunks[(h.object_index, h.chunk_seq)] = piece
            buf = v.data.setdefault(h.object_index, bytearray())
            if len(buf) < h.object_offset:
                buf.extend(bytes(h.object_offset - len(buf)))
            buf[h.object_offset:h.object_offset + len(piece)] = piece
        elif isinstance(e, ObjectEnded):
            v.ended.add(e.footer.object_index)
        elif isinstance(e, SessionEnded):
            v.complete = True
    return views, loose
