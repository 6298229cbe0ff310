"""Shared pieces of the pipe tests: tiny modules, and checks that nothing was left behind."""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Any

from pipevault.pipe import StageContext


class Counter:
    """First stage: sends ``n`` buffers whose first 8 bytes carry 0..n-1."""

    def __init__(self, n: int, size: int = 4096) -> None:
        self.n, self.size = n, size

    def run(self, ctx: StageContext) -> int:
        for i in range(self.n):
            buf = ctx.alloc_buf()
            buf.data[:8] = i.to_bytes(8, "little")
            buf.length = self.size
            ctx.send_buf(buf)
        return self.n


class Jitter:
    """Middle stage: sleeps a pseudo-random time per buffer, then sends it on (or a copy)."""

    def __init__(self, delays_us: tuple[int, ...], copy: bool = False) -> None:
        self.delays, self.copy = delays_us, copy

    def run(self, ctx: StageContext) -> None:
        k = 0
        while (buf := ctx.receive_buf()) is not None:
            seq = int.from_bytes(buf.data[:8], "little")
            d = self.delays[(seq + k) % len(self.delays)] if self.delays else 0
            k += 1
            if d:
                time.sleep(d / 1e6)
            if self.copy:
                new = ctx.alloc_buf()
                new.set(buf.view)
                ctx.free_buf(buf)
                ctx.send_buf(new)
            else:
                ctx.send_buf(buf)


class Collect:
    """Tail: returns the sequence of first-8-byte numbers it saw."""

    def run(self, ctx: StageContext) -> list[int]:
        seen = []
        while (buf := ctx.receive_buf()) is not None:
            seen.append(int.from_bytes(buf.data[:8], "little"))
            ctx.free_buf(buf)
        return seen


class FailAt:
    """Middle stage that raises ValueError at buffer ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def run(self, ctx: StageContext) -> None:
        k = 0
        while (buf := ctx.receive_buf()) is not None:
            if k == self.at:
                raise ValueError(f"boom at {k}")
            k += 1
            ctx.send_buf(buf)


class KillSelfAt:
    """Middle stage that SIGKILLs its own process at buffer ``at`` (run it as a process)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def run(self, ctx: StageContext) -> None:
        import signal

        k = 0
        while (buf := ctx.receive_buf()) is not None:
            if k == self.at:
                os.kill(os.getpid(), signal.SIGKILL)
            k += 1
            ctx.send_buf(buf)


class Endless:
    """First stage that never ends on its own."""

    def run(self, ctx: StageContext) -> None:
        while True:
            buf = ctx.alloc_buf()
            buf.length = 1
            ctx.send_buf(buf)


class Hoarder:
    """Tail that keeps one buffer forever (a leak the runner must report)."""

    def run(self, ctx: StageContext) -> None:
        kept: Any = None
        while (buf := ctx.receive_buf()) is not None:
            if kept is None:
                kept = buf
            else:
                ctx.free_buf(buf)


def pipe_leftovers() -> list[str]:
    """Segments and semaphores in /dev/shm that belong to pipes of this process."""
    mine = f"pv-{os.getpid()}-"
    return [e for e in os.listdir("/dev/shm") if mine in e]


def pipe_threads() -> list[str]:
    """Live module threads (named pv:<stage>#<instance>)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("pv:")]


class Burn:
    """Middle stage: passes buffers on after spending about ``seconds`` of CPU in total."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, ctx: StageContext) -> None:
        end = time.thread_time() + self.seconds
        while (buf := ctx.receive_buf()) is not None:
            while time.thread_time() < end:
                pass
            ctx.send_buf(buf)


class Thresholds:
    """Tail: drains its input; returns the cycle collector's thresholds in its process."""

    def run(self, ctx: StageContext) -> tuple[int, int, int]:
        while (buf := ctx.receive_buf()) is not None:
            ctx.free_buf(buf)
        return gc.get_threshold()
