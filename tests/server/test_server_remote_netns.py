"""`pipevault backup --server` and `restore --server` between two network namespaces: the
daemon (with its own PIPEVAULT_HOME: pools and catalog) in one, the client commands in the
other. Needs root and iproute2 (gated as kernel feature "netns")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_helpers import terminate, wait_for

from pipevault import config
from pipevault.catalog import classes as class_rows
from pipevault.catalog import objects as object_rows
from pipevault.catalog import sessions as session_rows
from pipevault.clock import SYSTEM
from pipevault.mover import Site
from pipevault.pipe.net import ControlClient
from pipevault.server.netns import NetnsPair
from pipevault.server.nodes import NodeRegistry

sys.path.insert(0, str(Path(__file__).parents[1] / "mover"))
from mover_helpers import make_tree, snapshot

pytestmark = pytest.mark.kernel


def _env(home: Path, **extra: str) -> list[str]:
    values = {"PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent", "PIPEVAULT_VOLUME_SIZE": "64M",
              **extra}
    return ["env", *(f"{k}={v}" for k, v in values.items())]


@dataclass
class Remote:
    pair: NetnsPair
    home: Path  # the server's PIPEVAULT_HOME
    tmp: Path
    proc: subprocess.Popen[str]
    address: str
    log: Path

    def start(self) -> None:
        self.log = self.tmp / "serve.log"
        self.proc = self.pair.popen_b([*_env(self.home), sys.executable, "-m", "pipevault", "--json", "serve",
                                       "--dir", str(self.home / "server"), "--listen", f"{self.pair.addr_b}:0"],
                                      stderr=self.log)
        assert self.proc.stdout is not None
        self.address = json.loads(self.proc.stdout.readline())["address"]

    def stop(self) -> None:
        terminate(self.proc)

    def secret_file(self, node: str) -> Path:
        path = self.tmp / f"{node}.secret"
        if not path.exists():
            path.write_text(NodeRegistry(self.home / "server" / "nodes.json").add(node).hex())
            path.chmod(0o600)
        return path

    def command(self, node: str, *args: str, address: str | None = None, secret: Path | None = None,
                ) -> list[str]:
        client_home = self.tmp / f"client-{node}"
        return [*_env(client_home, PIPEVAULT_PASSPHRASE=f"passphrase of {node}"), sys.executable, "-m",
                "pipevault", "--json", *args, "--server", address or self.address, "--node", node,
                "--secret-file", str(secret or self.secret_file(node))]

    def run(self, node: str, *args: str, **kw: object) -> tuple[int, dict[str, object]]:
        """A client command in namespace a: (exit status, its last JSON line)."""
        proc = self.pair.run_a(self.command(node, *args, **kw), timeout=120)  # type: ignore[arg-type]
        lines = proc.stdout.strip().splitlines()
        return proc.returncode, json.loads(lines[-1]) if lines else {}

    def site(self, node: str) -> Site:
        return Site.open(config.load(env={"PIPEVAULT_HOME": str(self.home), "PIPEVAULT_CONFIG": "/nonexistent"}),
                         node=node)

    def idle(self, node: str) -> bool:
        with ControlClient(f"unix:{self.home / 'server' / 'pipevault.sock'}") as control:
            return all(p["state"] != "running" for p in control.request("status")["pipes"] if p["node"] == node)


@pytest.fixture
def remote(pair: NetnsPair, tmp_path: Path) -> Iterator[Remote]:
    r = Remote(pair, tmp_path / "server-home", tmp_path, None, "", tmp_path / "serve.log")  # type: ignore[arg-type]
    with r.site("n1") as site, site.catalog.write() as conn:
        class_rows.define_class(conn, class_rows.ManagementClass("SECRET", encrypt=True), now=time.time())
    r.start()
    try:
        yield r
    finally:
        r.stop()


def _random_files(root: Path, count: int, size: int) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"f{i:03d}.bin").write_bytes(os.urandom(size))
    return root


def test_backup_and_restore_across_namespaces(remote: Remote, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    code, out = remote.run("n1", "backup", "--connections", "3", str(tree))
    assert code == 0, out
    assert out["sent"] == out["examined"] and out["unchanged"] == 0
    code, out = remote.run("n1", "restore", str(tree), "--to", str(tmp_path / "out"))
    assert code == 0, out
    assert snapshot(tmp_path / "out") == snapshot(tree)
    # An incremental second backup sends only what changed.
    (tree / "docs" / "note09.txt").write_text("changed\n")
    code, out = remote.run("n1", "backup", str(tree))
    assert code == 0 and out["sent"] == 1 and out["unchanged"] == out["examined"] - 1, out
    with remote.site("n1") as site, site.catalog.read() as conn:
        assert [s.status for s in session_rows.list_sessions(conn, node="n1")] == ["completed", "completed"]
    # An encrypting class: the server stores ciphertext, the client's key restores it.
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "plain.txt").write_bytes(b"readable only by n1 " * 5000)
    code, out = remote.run("n1", "backup", "--class", "SECRET", str(secret))
    assert code == 0, out
    for volume in (remote.home / "pools").rglob("*"):
        assert not volume.is_file() or b"readable only by n1" not in volume.read_bytes()
    code, out = remote.run("n1", "restore", str(secret), "--to", str(tmp_path / "out-secret"))
    assert code == 0, out
    assert (tmp_path / "out-secret" / "plain.txt").read_bytes() == (secret / "plain.txt").read_bytes()


def test_other_nodes_and_wrong_secrets_are_refused(remote: Remote, tmp_path: Path) -> None:
    src = _random_files(tmp_path / "src", 2, 1000)
    code, out = remote.run("n1", "backup", str(src))
    assert code == 0, out
    code, out = remote.run("n2", "restore", str(src), "--to", str(tmp_path / "stolen"))
    assert code == 52 and out["code"] == "mover.nothing_matched", out
    assert not (tmp_path / "stolen").exists()
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("00" * 32)
    code, out = remote.run("n1", "backup", str(src), secret=wrong)
    assert code == 62 and out["code"] == "net.auth_refused", out
    assert wait_for(lambda: "node 'n1': wrong secret" in remote.log.read_text())


def _slow_relay(remote: Remote, *extra: str) -> tuple[subprocess.Popen[str], str]:
    relay = remote.pair.popen_b([sys.executable, "-m", "pipevault.server.relay", f"{remote.pair.addr_b}:0",
                                 remote.address, "--lifetime", "120", *extra])
    assert relay.stdout is not None
    return relay, relay.stdout.readline().strip()


def _end(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def test_server_killed_mid_backup(remote: Remote, tmp_path: Path) -> None:
    files = 80  # seconds through the relay: the kill lands mid-backup on a busy machine too
    src = _random_files(tmp_path / "src", files, 512 << 10)
    relay, via = _slow_relay(remote, "--delay-ms", "10", "--window", str(128 << 10))
    try:
        client = remote.pair.popen_a(remote.command("n1", "backup", "--connections", "1", "--checkpoint", "1M",
                                                    str(src), address=via))
        with ControlClient(f"unix:{remote.home / 'server' / 'pipevault.sock'}") as control:
            assert wait_for(lambda: any(p["state"] == "running" and sum(c["bytes"] for c in p["links"]) > 4 << 20
                                        for p in control.request("status")["pipes"]), timeout=30)
            # `pipevault status` on the server shows the backup's remote half and its stages.
            half = next(p for p in control.request("status")["pipes"] if p["state"] == "running")
            assert (half["node"], half["direction"], half["module"]) == ("n1", "push", "store")
            assert [s["name"] for s in half["stages"]] == ["net", "admit", "store", "catalog"]
        t0 = SYSTEM.monotonic()
        remote.proc.kill()
        remote.proc.wait(5)
        assert remote.proc.stdout is not None
        remote.proc.stdout.close()
        out, _ = client.communicate(timeout=30)
        assert SYSTEM.monotonic() - t0 < 15, "the client took too long to notice"
    finally:
        _end(relay)
    result = json.loads(out.strip().splitlines()[-1])
    assert client.returncode in (61, 64) and result["code"] in ("net.connection_lost", "net.remote_failed"), result
    # Whatever the server catalogued before it died is whole: a new daemon restores it intact.
    with remote.site("n1") as site, site.catalog.read() as conn:
        kept = [v for v in object_rows.query_versions(conn, "n1", str(src), state="active") if v.ll]
    assert len(kept) < files
    remote.start()
    if kept:
        code, out2 = remote.run("n1", "restore", str(src), "--to", str(tmp_path / "out"))
        assert code == 0, out2
        for v in kept:
            assert (tmp_path / "out" / v.ll).read_bytes() == (src / v.ll).read_bytes()
    code, out2 = remote.run("n1", "backup", str(src))
    # The rest (and the directory, unless it was catalogued before the kill).
    assert code == 0 and out2["sent"] - (files - len(kept)) in (0, 1), out2
    with remote.site("n1") as site, site.catalog.read() as conn:
        assert [s.status for s in session_rows.list_sessions(conn, node="n1")] == ["failed", "completed"]


def test_dropped_connection_resumed(remote: Remote, tmp_path: Path) -> None:
    src = _random_files(tmp_path / "src", 24, 512 << 10)
    # Cut late (10 of ~12 MB): a server slowed by a loaded machine still reached a checkpoint.
    relay, via = _slow_relay(remote, "--delay-ms", "1", "--cut-after", str(10 << 20))
    try:
        code, out = remote.run("n1", "backup", "--connections", "1", "--checkpoint", "1M", str(src), address=via)
    finally:
        _end(relay)
    assert code in (61, 64), out
    assert wait_for(lambda: remote.idle("n1"), timeout=20)
    code, out = remote.run("n1", "backup", "--resume", str(src))
    assert code == 0, out
    assert 0 < out["sent"] < 24, out  # only the rest crossed
    code, out = remote.run("n1", "restore", str(src), "--to", str(tmp_path / "out"))
    assert code == 0, out
    assert snapshot(tmp_path / "out") == snapshot(src)
