"""Restart from point of failure: a session resumed after its last durable superblock reads whole."""

from __future__ import annotations

import pytest
from format_helpers import KEY, collect, loglike
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipevault.format import (
    Affected,
    ArchiveHeader,
    Compression,
    Damage,
    Resumed,
    SessionEnded,
    SessionHeader,
    SessionWriter,
    fixed,
    resume_point,
    scan,
)
from pipevault.format.errors import FormatError, WriterStateError

SIZE = 1 << 16
OBJECTS = [(f"/f{i}".encode(), loglike(n, i)) for i, n in enumerate([90_000, 350_000, 5_000, 0, 260_000])]


def _first_run(key: bytes | None, stop_after: int) -> tuple[SessionWriter, list[memoryview]]:
    """Write until ``stop_after`` superblocks are out, then 'crash' (the writer is dropped)."""
    w = SessionWriter(SessionHeader(job="nightly"), size=SIZE, chunk_size=60_000, key=key,
                      selector=fixed(Compression.LZ4 if key else Compression.NONE))
    out: list[memoryview] = []
    for name, data in OBJECTS:
        w.begin_object(ArchiveHeader(name=name, size=len(data)))
        for i in range(0, len(data), 60_000):
            w.write(data[i:i + 60_000])
            out += w.take()
            if len(out) >= stop_after:
                return w, out
        w.end_object()
        out += w.take()
    w.close()
    return w, out + w.take()


def _finish(point_blocks: list[memoryview], sid: object, key: bytes | None) -> list[memoryview]:
    point = resume_point(point_blocks, sid)  # type: ignore[arg-type]
    w = SessionWriter(resume=point, key=key, selector=fixed(Compression.ZSTD, 1), chunk_size=60_000)
    assert w.seq == point.next_seq
    first = point.next_object_index
    if point.open_object is not None:
        first = point.open_object.object_index + 1
        assert point.open_object.name == OBJECTS[point.open_object.object_index][0]
        w.write(OBJECTS[point.open_object.object_index][1][point.object_offset:])
        w.end_object()
    for name, data in OBJECTS[first:]:
        w.begin_object(ArchiveHeader(name=name, size=len(data)))
        w.write(data)
        w.end_object()
    footer = w.close()
    assert footer.objects == len(OBJECTS)
    assert footer.plain_bytes == sum(len(d) for _, d in OBJECTS)
    return w.take()


def _check_whole(events: list[object]) -> None:
    views, loose = collect(events)  # type: ignore[arg-type]
    (v,) = views.values()
    assert not loose and not v.damage, [d.describe() for d in v.damage]
    assert v.complete
    assert [v.names[i] for i in range(len(OBJECTS))] == [n for n, _ in OBJECTS]
    assert [bytes(v.data.get(i, b"")) for i in range(len(OBJECTS))] == [d for _, d in OBJECTS]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stop=st.integers(1, 12), encrypt=st.booleans())
def test_resume_after_last_durable_superblock(stop: int, encrypt: bool) -> None:
    key = KEY if encrypt else None
    w, blocks = _first_run(key, stop)
    ended = any(isinstance(e, SessionEnded) for e in scan(blocks[:stop], decode=False))
    assume(len(blocks) >= stop and not ended)
    durable = blocks[:stop]
    rest = _finish(durable, w.session_id, key)
    events = list(scan(durable + rest, key=KEY))
    assert sum(isinstance(e, Resumed) for e in events) == 1
    _check_whole(events)


def test_superblocks_written_after_the_durable_point_are_superseded() -> None:
    w, blocks = _first_run(None, 9)
    # The medium confirmed only 6, but 7..9 also reached it before the crash (append-only disk).
    rest = _finish(blocks[:6], w.session_id, None)
    events = list(scan(blocks + rest))
    _check_whole(events)


def test_durable_seq_argument_limits_the_point() -> None:
    w, blocks = _first_run(None, 9)
    a = resume_point(blocks, w.session_id, durable_seq=5)
    b = resume_point(blocks[:6], w.session_id)
    assert a == b and a.next_seq == 6


def test_resume_refusals() -> None:
    w, blocks = _first_run(None, 100)
    with pytest.raises(WriterStateError, match="complete"):
        resume_point(blocks, w.session_id)
    w, blocks = _first_run(KEY, 3)
    point = resume_point(blocks, w.session_id)
    with pytest.raises(WriterStateError, match="key"):
        SessionWriter(resume=point)
    w, blocks = _first_run(None, 9)
    with pytest.raises(FormatError, match="not seen"):
        resume_point(blocks[2:], w.session_id)
    with pytest.raises(WriterStateError):
        resume_point(blocks, SessionWriter().session_id)
    damaged = blocks[:3] + blocks[4:]
    with pytest.raises(FormatError):
        resume_point(damaged, w.session_id)


def test_a_resumed_session_without_its_start_reports_what_is_missing() -> None:
    w, blocks = _first_run(None, 7)
    rest = _finish(blocks[:7], w.session_id, None)
    events = list(scan(rest))
    damages = [e for e in events if isinstance(e, Damage)]
    (d,) = damages
    resumed = next(e for e in events if isinstance(e, Resumed)).resume
    assert d.kind == "lost" and (d.first_seq, d.last_seq) == (0, 6) and resumed.after_seq == 6
    whole = [a.object_index for a in d.affected if a.start == 0 and a.end is None]
    assert whole == list(range(resumed.object_index))
    if resumed.object_offset:
        assert d.affected[-1] == Affected(resumed.object_index, None, 0, resumed.object_offset)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encrypt=st.booleans(), dedup=st.booleans())
def test_writer_knows_every_resume_point_the_media_would_give(encrypt: bool, dedup: bool) -> None:
    big_xattrs = ((b"user.big", b"x" * 150_000),)
    w = SessionWriter(SessionHeader(job="j"), size=SIZE, chunk_size=60_000, key=KEY if encrypt else None,
                      selector=fixed(Compression.NONE), discard_duplicates=dedup)
    for i, (name, data) in enumerate(OBJECTS):
        w.begin_object(ArchiveHeader(name=name, size=len(data), xattrs=big_xattrs if i == 2 else ()))
        w.write(data)
        w.write(data[:60_000])  # a repeat: a duplicate when dedup is on
        w.end_object()
    w.close()
    blocks = w.take()
    for seq in range(len(blocks) - 1):
        assert w.resume_point(seq) == resume_point(blocks[:seq + 1], w.session_id), seq
    with pytest.raises(WriterStateError):
        w.resume_point(len(blocks) + 5)


def test_a_resumed_object_keeps_the_objects_its_duplicates_repeat() -> None:
    """Object 1 repeats a chunk of object 0 before the cut: resumed, it still names object 0."""
    a, b, c = loglike(60_000, 1), loglike(60_000, 2), loglike(200_000, 3)
    w = SessionWriter(SessionHeader(job="j"), size=SIZE, chunk_size=60_000, selector=fixed(Compression.NONE),
                      discard_duplicates=True)
    w.begin_object(ArchiveHeader(name=b"/a", size=len(a)))
    w.write(a)
    w.end_object()
    w.begin_object(ArchiveHeader(name=b"/b", size=len(b) * 2 + len(c)))
    w.write(b + a)  # its second chunk repeats object 0's
    w.write(c)
    w.end_object()
    assert w.object_refs == (0,)
    w.close()
    blocks = w.take()
    points = [resume_point(blocks[:seq + 1], w.session_id) for seq in range(len(blocks) - 1)]
    inside = [(seq, p) for seq, p in enumerate(points) if p.open_object is not None and p.chunk_seq >= 2]
    assert inside, "a resume point inside object 1, after its repeated chunk"
    for seq, point in inside:
        assert point.object_refs == (0,) and w.resume_point(seq) == point
        resumed = SessionWriter(resume=point, selector=fixed(Compression.NONE), chunk_size=60_000,
                                discard_duplicates=True)
        data = b + a + c
        resumed.write(data[point.object_offset:])
        resumed.end_object()
        assert resumed.object_refs == (0,)
