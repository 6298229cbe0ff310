"""Initiate_Pipe on the local socket with unbound head and tail modules attaching by
SEND_IDENT: data through, the module's error stops the pipe, a killed module stops it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from server_helpers import random_file, running_daemon, wait_for

from pipevault.pipe import StageContext
from pipevault.pipe.errors import ModuleFailed
from pipevault.pipe.net import ControlClient
from pipevault.pipe.net.ident import run_unbound
from pipevault.server.daemon import Daemon
from pipevault.server.errors import NoSuchPipe


class Source:
    """Unbound head: ``data`` in buffers filled to the fill limit."""

    def __init__(self, data: bytes, fail_at: int | None = None) -> None:
        self.data, self.fail_at = data, fail_at

    def run(self, ctx: StageContext) -> int:
        step = ctx.fill_limit  # room for the compressor's worst case
        for i, off in enumerate(range(0, len(self.data), step)):
            if i == self.fail_at:
                raise ValueError("application error (injected)")
            buf = ctx.alloc_buf()
            buf.set(self.data[off: off + step])
            ctx.send_buf(buf)
        return len(self.data)


class Collect:
    """Unbound tail: gathers every payload."""

    def __init__(self) -> None:
        self.out = bytearray()

    def run(self, ctx: StageContext) -> int:
        while (buf := ctx.receive_buf()) is not None:
            self.out += buf.view
            ctx.free_buf(buf)
        return len(self.out)


@pytest.fixture
def daemon(tmp_path: Path):  # type: ignore[no-untyped-def]
    with running_daemon(tmp_path / "server") as d:
        yield d


def _local_status(d: Daemon, name: str) -> dict[str, object]:
    with ControlClient(f"unix:{d.socket_path}") as c:
        return next(p for p in c.request("status")["pipes"] if p["pipe"] == name)


def test_unbound_head_and_tail_move_data_through_a_daemon_pipe(daemon: Daemon, tmp_path: Path) -> None:
    data = random_file(tmp_path / "d", 1_000_000).read_bytes()
    with ControlClient(f"unix:{daemon.socket_path}") as c:
        reply = c.request("initiate_pipe", buffer_size=65536, max_buffers=16, stages=[
            {"name": "app", "module": "unbound", "allocates": True},
            {"name": "zstd", "module": "zstd", "instances": 2, "allocates": True},
            {"name": "unzstd", "module": "unzstd", "allocates": True},
            {"name": "sink", "module": "unbound"}])
    name = reply["pipe"]
    assert reply["unbound"] == ["app#0", "sink#0"]
    sink = Collect()
    results: dict[str, object] = {}
    tail = threading.Thread(target=lambda: results.update(
        sink=run_unbound(str(daemon.socket_path), name, "sink", sink)))
    tail.start()
    results["app"] = run_unbound(str(daemon.socket_path), name, "app", Source(data))
    tail.join(20)
    assert results == {"app": len(data), "sink": len(data)}
    assert bytes(sink.out) == data
    assert wait_for(lambda: _local_status(daemon, name)["state"] == "finished")
    with pytest.raises(NoSuchPipe):
        run_unbound(str(daemon.socket_path), name, "app", Source(b""))


def test_unbound_module_error_stops_the_pipe(daemon: Daemon) -> None:
    with ControlClient(f"unix:{daemon.socket_path}") as c:
        name = c.request("initiate_pipe", buffer_size=65536, max_buffers=8, stages=[
            {"name": "app", "module": "unbound", "allocates": True},
            {"name": "discard", "module": "discard"}])["pipe"]
    with pytest.raises(ModuleFailed, match="injected"):
        run_unbound(str(daemon.socket_path), name, "app", Source(b"x" * 500_000, fail_at=3))
    assert wait_for(lambda: _local_status(daemon, name)["state"] == "failed")
    assert "injected" in str(_local_status(daemon, name)["error"])


def test_killed_unbound_process_stops_the_pipe(daemon: Daemon) -> None:
    with ControlClient(f"unix:{daemon.socket_path}") as c:
        name = c.request("initiate_pipe", buffer_size=65536, max_buffers=8, stages=[
            {"name": "app", "module": "unbound", "allocates": True},
            {"name": "discard", "module": "discard"}])["pipe"]
    script = (
        "import sys, time\n"
        "from pipevault.pipe.net.ident import run_unbound\n"
        "class Forever:\n"
        "    def run(self, ctx):\n"
        "        while True:\n"
        "            buf = ctx.alloc_buf(); buf.length = 100; ctx.send_buf(buf); time.sleep(0.01)\n"
        "run_unbound(sys.argv[1], sys.argv[2], 'app', Forever())\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(daemon.socket_path), name])
    try:
        assert wait_for(lambda: any(u["pid"] == proc.pid for u in _local_status(daemon, name)["unbound"]),
                        timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert wait_for(lambda: _local_status(daemon, name)["state"] == "failed", timeout=10)
        error = _local_status(daemon, name)["error"]
        assert isinstance(error, dict) and error["code"] == "pipe.module_died"
        assert "went away" in error["message"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_initiate_pipe_is_local_only_and_checks_modules(daemon: Daemon) -> None:
    from pipevault.pipe.net import Credentials
    from pipevault.server.errors import AccessDenied, UnknownModule
    creds = Credentials("n1", daemon.nodes.add("n1"))
    with ControlClient(daemon.address, creds) as c, pytest.raises(AccessDenied):
        c.request("initiate_pipe", stages=[{"name": "a", "module": "discard"}])
    with ControlClient(f"unix:{daemon.socket_path}") as c, pytest.raises(UnknownModule):
        c.request("initiate_pipe", stages=[{"name": "a", "module": "rm-rf"}])
