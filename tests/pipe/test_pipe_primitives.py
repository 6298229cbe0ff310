"""The four primitives and their rules, driven by hand on a real shared-memory pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pipevault.clock import SYSTEM
from pipevault.pipe import StageContext
from pipevault.pipe import _pool as P
from pipevault.pipe._names import new_pipe_name
from pipevault.pipe._topology import StageShape, Topology
from pipevault.pipe.errors import (
    BufferMisuse,
    DoubleFree,
    ForeignBuffer,
    PipeSpecError,
    PipeStopped,
    RoleViolation,
    UseAfterRelease,
)

KB64 = 64 << 10


def make_pool(*shapes: StageShape, max_buffers: int = 8, shared: bool = True) -> P.BufferPool:
    return P.BufferPool.create(new_pipe_name(), Topology(shapes, KB64, max_buffers), SYSTEM.monotonic, shared)


@pytest.fixture(params=[True, False], ids=["shared-queues", "local-queues"])
def pool(request: pytest.FixtureRequest) -> Iterator[P.BufferPool]:
    # head (allocates) -> compress-like middle (allocates) -> tail: two allocators, quota 4.
    p = make_pool(StageShape("head"), StageShape("mid", allocates=True), StageShape("tail"),
                  shared=request.param)
    yield p
    p.destroy()


def blocked(fn: object, seconds: float = 0.3) -> tuple[threading.Thread, list[object]]:
    """Start ``fn`` in a thread; return it and a list that gets its result or exception."""
    out: list[object] = []

    def target() -> None:
        try:
            out.append(fn())  # type: ignore[operator]
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    return t, out


def test_buffers_flow_through_and_return(pool: P.BufferPool) -> None:
    head, mid, tail = (StageContext(pool, i, 0) for i in range(3))
    buf = head.alloc_buf()
    buf.set(b"hello")
    head.send_buf(buf)
    got = mid.receive_buf()
    assert got is not None and bytes(got.view) == b"hello"
    assert got.index == buf.index  # the same pool buffer: nothing was copied
    mid.send_buf(got)
    last = tail.receive_buf()
    assert last is not None and bytes(last.view) == b"hello"
    tail.free_buf(last)
    assert pool.queues.depth(0) == 8  # every buffer back on the free list


def test_first_stage_may_not_receive_and_tail_may_not_send(pool: P.BufferPool) -> None:
    head, tail = StageContext(pool, 0, 0), StageContext(pool, 2, 0)
    with pytest.raises(RoleViolation):
        head.receive_buf()
    buf = head.alloc_buf()
    head.send_buf(buf)
    mid = StageContext(pool, 1, 0)
    got = mid.receive_buf()
    assert got is not None
    mid.send_buf(got)
    last = tail.receive_buf()
    assert last is not None
    with pytest.raises(RoleViolation):
        tail.send_buf(last)


def test_non_allocating_stage_may_not_allocate(pool: P.BufferPool) -> None:
    with pytest.raises(RoleViolation, match="not declared"):
        StageContext(pool, 2, 0).alloc_buf()


def test_double_free_and_use_after_free_are_caught(pool: P.BufferPool) -> None:
    head = StageContext(pool, 0, 0)
    buf = head.alloc_buf()
    head.free_buf(buf)
    with pytest.raises(DoubleFree):
        head.free_buf(buf)
    with pytest.raises(UseAfterRelease):
        _ = buf.data
    with pytest.raises(UseAfterRelease):
        head.send_buf(buf)


def test_view_taken_before_free_is_revoked(pool: P.BufferPool) -> None:
    head = StageContext(pool, 0, 0)
    buf = head.alloc_buf()
    data = buf.data
    head.free_buf(buf)
    with pytest.raises(ValueError, match="released"):
        data[0] = 1


def test_buffer_of_another_pipe_or_another_module_is_refused(pool: P.BufferPool) -> None:
    other = make_pool(StageShape("a"), StageShape("b"))
    try:
        alien = StageContext(other, 0, 0).alloc_buf()
        with pytest.raises(ForeignBuffer, match="another pipe"):
            StageContext(pool, 0, 0).free_buf(alien)
    finally:
        other.destroy()
    head, mid = StageContext(pool, 0, 0), StageContext(pool, 1, 0)
    mine = head.alloc_buf()
    with pytest.raises(ForeignBuffer, match="does not hold"):
        mid.free_buf(mine)


def test_payload_larger_than_buffer_is_refused(pool: P.BufferPool) -> None:
    buf = StageContext(pool, 0, 0).alloc_buf()
    with pytest.raises(BufferMisuse, match="do not fit"):
        buf.set(b"x" * (KB64 + 1))


def test_allocator_blocks_at_its_quota_and_a_foreign_free_credits_it(pool: P.BufferPool) -> None:
    head, mid = StageContext(pool, 0, 0), StageContext(pool, 1, 0)
    held = [head.alloc_buf() for _ in range(4)]  # quota = 8 // 2 allocators
    t, out = blocked(head.alloc_buf)
    assert t.is_alive() and not out, "a fifth allocation must wait: the pool still has 4 free"
    assert pool.queues.depth(0) == 4
    # The middle stage frees a buffer the head allocated: the head's quota is credited.
    head.send_buf(held[0])
    got = mid.receive_buf()
    assert got is not None
    mid.free_buf(got)
    t.join(2)
    assert not t.is_alive() and out and not isinstance(out[0], Exception)


@pytest.mark.parametrize("shared", [True, False])
def test_allocation_blocks_while_the_pool_is_empty(shared: bool) -> None:
    p = make_pool(StageShape("head"), StageShape("tail"), max_buffers=4, shared=shared)  # quota 4
    try:
        head, tail = StageContext(p, 0, 0), StageContext(p, 1, 0)
        for _ in range(4):
            head.send_buf(head.alloc_buf())
        t, out = blocked(head.alloc_buf)
        assert t.is_alive() and not out
        got = tail.receive_buf()
        assert got is not None
        tail.free_buf(got)
        t.join(2)
        assert out and not isinstance(out[0], Exception)
    finally:
        p.destroy()


def test_receive_blocks_until_a_buffer_arrives_and_ends_with_none(pool: P.BufferPool) -> None:
    head, mid = StageContext(pool, 0, 0), StageContext(pool, 1, 0)
    t, out = blocked(mid.receive_buf)
    assert t.is_alive() and not out
    buf = head.alloc_buf()
    buf.set(b"x")
    head.send_buf(buf)
    t.join(2)
    assert out and bytes(out[0].view) == b"x"  # type: ignore[attr-defined]
    head.finish()  # the only producer of the middle stage's queue is done
    assert mid.receive_buf() is None


def test_stop_wakes_blocked_waiters(pool: P.BufferPool) -> None:
    mid = StageContext(pool, 1, 0)
    t, out = blocked(mid.receive_buf, 0.1)
    assert t.is_alive()
    t0 = time.monotonic()
    pool.set_state(P.STOPPING)
    t.join(2)
    assert isinstance(out[0], PipeStopped)
    assert time.monotonic() - t0 < 1.0


def test_topology_rules() -> None:
    with pytest.raises(PipeSpecError, match="one instance"):
        Topology((StageShape("h", instances=2), StageShape("t")), KB64, 8)
    with pytest.raises(PipeSpecError, match="multiple of 4 KiB"):
        Topology((StageShape("h"), StageShape("t")), 1000, 8)
    with pytest.raises(PipeSpecError, match="unique"):
        Topology((StageShape("h"), StageShape("h")), KB64, 8)
    topo = Topology((StageShape("h"), StageShape("z", 2, True), StageShape("w")), KB64, 32)
    assert topo.n_allocators == 2 and topo.quota == 16
    assert topo.stamps(1) and topo.windowed(1) and topo.reorders(2) and not topo.stamps(2)
    tail2 = Topology((StageShape("h"), StageShape("net", 3)), KB64, 32)
    assert tail2.stamps(1) and not tail2.windowed(1)  # a parallel tail is numbered, no window
    assert topo.window(1) == 14  # quota minus instances: outputs held cannot starve the quota
