"""Two hosts on one machine: network namespaces joined by a veth pair, the daemon in one,
client processes in the other. Needs root and iproute2 (gated as kernel feature "netns")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_helpers import pipe_segments, random_file, terminate, wait_for

from pipevault.clock import SYSTEM
from pipevault.pipe.net import ControlClient
from pipevault.pipe.net.checkpoint import Checkpoint
from pipevault.server.netns import NetnsPair
from pipevault.server.nodes import NodeRegistry

pytestmark = pytest.mark.kernel
CLIENT = str(Path(__file__).with_name("netns_client.py"))


@dataclass
class Server:
    pair: NetnsPair
    home: Path
    proc: subprocess.Popen[str]
    address: str
    secret: bytes
    log: Path

    def client(self, *args: str, timeout: float = 60) -> tuple[int, dict[str, object]]:
        """Run netns_client.py in the client namespace; (exit status, its JSON line)."""
        proc = self.pair.run_a([sys.executable, CLIENT, *args], timeout=timeout)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
        return proc.returncode, json.loads(last)


def start_server(pair: NetnsPair, home: Path) -> Server:
    secret = NodeRegistry(home / "nodes.json").add("n1")
    log = home.parent / "serve.log"
    proc = pair.popen_b([sys.executable, "-m", "pipevault", "--json", "serve", "--dir", str(home),
                         "--listen", f"{pair.addr_b}:0"], stderr=log)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    address = json.loads(line)["address"]
    return Server(pair, home, proc, address, secret, log)


@pytest.fixture
def server(pair: NetnsPair, tmp_path: Path) -> Iterator[Server]:
    s = start_server(pair, tmp_path / "server")
    try:
        yield s
    finally:
        terminate(s.proc)


def test_push_and_pull_across_namespaces(server: Server, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", (5 << 20) + 777)
    code, out = server.client("push", server.address, "n1", server.secret.hex(), str(src), "a/src.bin")
    assert code == 0, out
    assert (server.home / "nodes/n1/a/src.bin").read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    code, out = server.client("pull", server.address, "n1", server.secret.hex(), str(back), "a/src.bin",
                              "--connections", "2")
    assert code == 0, out
    assert back.read_bytes() == src.read_bytes()


def test_refused_authentication_across_namespaces(server: Server, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 1000)
    code, out = server.client("push", server.address, "ghost", server.secret.hex(), str(src), "x")
    assert code == 62 and out["code"] == "net.auth_refused"
    code, out = server.client("push", server.address, "n1", "00" * 32, str(src), "x")
    assert code == 62 and out["code"] == "net.auth_refused"
    assert wait_for(lambda: server.log.read_text().count("refused connection") >= 2)
    log = server.log.read_text()
    assert "node 'ghost': unknown node" in log and "node 'n1': wrong secret" in log
    assert not (server.home / "nodes/n1/x").exists()


def test_server_killed_mid_transfer(server: Server, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 8 << 20)
    client = server.pair.popen_a([sys.executable, CLIENT, "push", server.address, "n1",
                                  server.secret.hex(), str(src), "killed.bin", "--pause", "0.05"])
    with ControlClient(f"unix:{server.home / 'pipevault.sock'}") as control:
        assert wait_for(lambda: any(p["state"] == "running" and p["links"]
                                    and sum(c["bytes"] for c in p["links"]) > 0
                                    for p in control.request("status")["pipes"]), timeout=20)
    t0 = SYSTEM.monotonic()
    server.proc.kill()
    server.proc.wait(5)
    out, _ = client.communicate(timeout=30)
    assert SYSTEM.monotonic() - t0 < 10, "the client took too long to notice"
    result = json.loads(out.strip().splitlines()[-1])
    assert client.returncode == 61 and result["code"] == "net.connection_lost", result
    assert pipe_segments(client.pid) == set()  # the client left no pipe behind


def test_dropped_connection_resumes_across_namespaces(server: Server, tmp_path: Path) -> None:
    size = 12 << 20
    src = random_file(tmp_path / "src.bin", size)
    relay = server.pair.popen_b([sys.executable, "-m", "pipevault.server.relay", f"{server.pair.addr_b}:0",
                                 server.address, "--delay-ms", "1", "--cut-after", str(5 << 20),
                                 "--lifetime", "60"])
    assert relay.stdout is not None
    relay_address = relay.stdout.readline().strip()
    try:
        code, out = server.client("push", relay_address, "n1", server.secret.hex(), str(src), "big.bin",
                                  "--connections", "1")
    finally:
        relay.kill()
        relay.wait(5)
        relay.stdout.close()
    assert code in (61, 64), out
    # The server drains what reached it before the reset, then fails its half.
    with ControlClient(f"unix:{server.home / 'pipevault.sock'}") as control:
        assert wait_for(lambda: all(p["state"] != "running" for p in control.request("status")["pipes"]
                                    if p["node"] == "n1"), timeout=20)
    record = Checkpoint.load(server.home / "nodes/n1/big.bin.ckpt")
    assert record is not None and 0 < record["durable"] < size, (out, server.log.read_text())
    code, out = server.client("push", server.address, "n1", server.secret.hex(), str(src), "big.bin",
                              "--resume", "--connections", "4")
    assert code == 0, out
    assert out["resume_from"] == record["durable"] and out["bytes_moved"] == size - record["durable"]
    assert (server.home / "nodes/n1/big.bin").read_bytes() == src.read_bytes()
