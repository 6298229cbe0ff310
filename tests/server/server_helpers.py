"""Shared pieces of the server tests: an in-process daemon, push and pull helpers, polling."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from pipevault.clock import SYSTEM
from pipevault.pipe import Pipe, PipeResult, StageContext, StageSpec
from pipevault.pipe.modules import FileReader, FileWriter
from pipevault.pipe.net import Credentials, RemotePipe
from pipevault.server.daemon import Daemon


@contextmanager
def running_daemon(home: Path, **kwargs: Any) -> Iterator[Daemon]:
    """A daemon on a free loopback port, stopped at the end."""
    daemon = Daemon(home, "127.0.0.1:0", **kwargs)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def push(address: str, creds: Credentials, src: Path, dest: str, *, connections: int = 4,
         resume: bool = False, max_buffers: int = 32, buffer_size: int = 64 << 10,
         params: dict[str, Any] | None = None, source: Callable[[int], Any] | None = None,
         ) -> tuple[RemotePipe, PipeResult]:
    """Push ``src`` to the server's file ``dest`` (from the resume point if ``resume``)."""
    remote = RemotePipe.extend(address, creds, direction="push", module="file",
                               params={"path": dest, "sync_bytes": 256 << 10, **(params or {})},
                               connections=connections, resume=resume, buffer_size=buffer_size,
                               max_buffers=max_buffers)
    factory = (partial(source, remote.resume_from) if source is not None
               else partial(FileReader, str(src), remote.resume_from))
    pipe = Pipe([StageSpec("read", factory), remote.agent_stage()], buffer_size=buffer_size,
                max_buffers=max_buffers, name=remote.pipe_name)
    return remote, remote.run(pipe)


def pull(address: str, creds: Credentials, path: str, out: Path, connections: int = 3) -> PipeResult:
    """Pull the server's file ``path`` into ``out``."""
    remote = RemotePipe.extend(address, creds, direction="pull", module="file",
                               params={"path": path}, connections=connections,
                               buffer_size=64 << 10, max_buffers=32)
    pipe = Pipe([remote.agent_stage(), StageSpec("write", partial(FileWriter, str(out)))],
                buffer_size=64 << 10, max_buffers=32, name=remote.pipe_name)
    return remote.run(pipe)


class FailingReader:
    """First stage: reads ``path`` from ``offset`` but raises after ``fail_after`` bytes."""

    def __init__(self, path: str, fail_after: int, offset: int = 0) -> None:
        self.inner = FileReader(path, offset)
        self.fail_after = fail_after

    def run(self, ctx: StageContext) -> int:
        sent = 0
        with open(self.inner.path, "rb") as f:
            f.seek(self.inner.offset)
            while True:
                buf = ctx.alloc_buf()
                n = f.readinto(buf.data[: 32 << 10])
                if not n:
                    ctx.free_buf(buf)
                    return sent
                buf.length = n
                ctx.send_buf(buf)
                sent += n
                if sent >= self.fail_after:
                    raise ValueError("disk read error (injected)")


class SlowReader:
    """First stage: 16 KiB buffers of ``path``, one every ``pause`` seconds (to watch a run)."""

    def __init__(self, path: str, pause: float, offset: int = 0) -> None:
        self.path, self.pause, self.offset = path, pause, offset

    def run(self, ctx: StageContext) -> int:
        total = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while not ctx.stopping:
                buf = ctx.alloc_buf()
                n = f.readinto(buf.data[: 16 << 10])
                if not n:
                    ctx.free_buf(buf)
                    break
                buf.length = n
                ctx.send_buf(buf)
                total += n
                SYSTEM.sleep(self.pause)
        return total


def terminate(proc: subprocess.Popen[str]) -> None:
    """SIGTERM ``proc`` (a daemon: it stops its pipes), SIGKILL if it lingers; close its stdout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (bounded; for daemons in other threads)."""
    deadline = SYSTEM.monotonic() + timeout
    while SYSTEM.monotonic() < deadline:
        if predicate():
            return True
        SYSTEM.sleep(0.02)
    return predicate()


def random_file(path: Path, size: int) -> Path:
    """``size`` random bytes at ``path``."""
    path.write_bytes(os.urandom(size))
    return path


def pipe_segments(pid: int | None = None) -> set[str]:
    """Pipe segments of process ``pid`` (default: this one) currently in /dev/shm."""
    prefix = f"pv-{pid or os.getpid()}-"
    return {e for e in os.listdir("/dev/shm") if e.startswith(prefix)}
