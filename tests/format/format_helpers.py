"""Helpers shared by the format tests: write sessions, read them back into objects."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from pipevault.format import (
    ArchiveFooter,
    ArchiveHeader,
    ChunkRead,
    Damage,
    Event,
    ObjectEnded,
    ObjectStarted,
    SessionEnded,
    SessionFooter,
    SessionHeader,
    SessionWriter,
)

KEY = bytes(range(32))

# Field values of each kind, for property tests of the records.
u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=40)
blob = st.binary(max_size=60)

session_headers = st.builds(SessionHeader, created_ns=i64, node=text, job=text, kind=text, stream=text,
                            host=text, software=text, size_log2=st.integers(16, 24), key_check=blob,
                            options=text)
session_footers = st.builds(SessionFooter, status=u8, objects=u64, plain_bytes=u64, stored_bytes=u64,
                            first_seq=u64, last_seq=u64, ended_ns=i64, errors=u64, duplicates=u64)
archive_headers = st.builds(
    ArchiveHeader, object_index=u32, name=blob, type=u8, size=u64, mode=u32, uid=u32, gid=u32, owner=text,
    group=text, mtime_ns=i64, ctime_ns=i64, atime_ns=i64,
    xattrs=st.lists(st.tuples(st.binary(max_size=20), blob), max_size=4).map(tuple), mgmt_class=text,
    object_id=st.none() | st.uuids(), version=u64, link_target=blob, stored_ns=i64, filespace=text,
    expires_ns=i64, description=text)
archive_footers = st.builds(ArchiveFooter, object_index=u32, status=u8, plain_bytes=u64, stored_bytes=u64,
                            chunks=u32, first_seq=u64, last_seq=u64, duplicates=u32)


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


def worked_example() -> str:
    """The hex example of docs/format.md §10, produced by the writer itself."""
    from pipevault.clock import ManualClock
    from pipevault.format import Compression, fixed, verify
    from pipevault.format._records import RECORD_HEADER, RecordType

    w = SessionWriter(SessionHeader(created_ns=1_795_400_000_000_000_000, node="n1", job="j1"),
                      session_id=uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"), size=1 << 16,
                      selector=fixed(Compression.NONE), clock=ManualClock(1_795_400_060.0))
    w.begin_object(ArchiveHeader(name=b"/etc/motd", size=13, mode=0o100644, mtime_ns=1_795_399_000_000_000_000))
    w.write(b"Hello, tape!\n")
    w.end_object()
    w.close()
    (block,) = w.take()
    header, payload = verify(block)
    lines = ["```", f"superblock header, 64 bytes (session {header.session_id}, seq {header.seq}, "
             f"payload_len {header.payload_len}, size_log2 {header.size_log2}, flags {int(header.flags)})"]
    lines += _hex(bytes(block[:64]), 0)
    pos = 0
    while pos < len(payload):
        rtype, flags, _, length = RECORD_HEADER.unpack_from(payload, pos)
        lines.append(f"record {RecordType(rtype).name} (type {rtype:#04x}, flags {flags}, length {length})")
        lines += _hex(bytes(payload[pos:pos + 8 + length]), 64 + pos)
        pos += 8 + length
    lines.append(f"zero padding from offset {64 + len(payload):#06x} to {len(block):#06x}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def _hex(data: bytes, base: int) -> list[str]:
    return [f"  {base + i:04x}: {data[i:i + 16].hex(' ')}" for i in range(0, len(data), 16)]


if __name__ == "__main__":
    print(worked_example(), end="")
