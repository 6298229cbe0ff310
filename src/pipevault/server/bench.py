"""``pipevault bench net``: the network agents against plain sockets, in the same run.

Cases (one :class:`BenchResult` each):

- ``loopback-Nconn`` (N = 1, 2, 4, 8): 4 GiB (1 GiB with --quick) from memory to memory
  through the pipe (zeros source, N-connection pseudo-tail, a daemon process's pseudo-head,
  discard) over loopback, against one plain Python socket: ``sendall`` of a 1 MiB
  memoryview into ``recv_into`` a 1 MiB bytearray in another process.
- ``wan-Nconn`` (N = 2, 4, 8): across two network namespaces through a relay adding 50 ms
  round-trip delay with a 256 KiB window per connection (and socket buffers clamped to
  it), against the same pipe with one connection; the ratio is the gain from parallel
  connections. Needs root and iproute2; skipped (no line) where namespaces cannot be made.
- ``backup-remote-4conn``: a full backup of the backup suite's tree (about 500 MB; 100 MB
  with --quick) through a `pipevault serve` process over loopback, 4 connections, against
  a local backup of the same tree (MB/s of source data).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from pipevault import config
from pipevault.clock import SYSTEM
from pipevault.events import BenchResult
from pipevault.mover import BackupOptions, Site, run_backup
from pipevault.mover.bench import make_tree
from pipevault.mover.remote import Server, run_remote_backup
from pipevault.pipe import Pipe, StageSpec
from pipevault.pipe.net import Credentials, RemotePipe
from pipevault.server.halves import Zeros
from pipevault.server.netns import NetnsPair, netns_probe
from pipevault.server.nodes import NodeRegistry

MB = 1e6
BUF = 1 << 20
WAN_WINDOW = 256 << 10
WAN_DELAY_MS = 25.0  # one way: 50 ms round trip
WAN_BUFFER = 256 << 10  # smaller frames spread the stream evenly over slow connections


def push_zeros(address: str, creds: Credentials, total: int, connections: int,
               window: int | None = None, buffer_size: int = BUF, max_buffers: int = 64) -> float:
    """Seconds to push ``total`` bytes from a zeros head through the pipe to the server's
    discard tail over ``connections`` connections."""
    t0 = SYSTEM.monotonic()
    remote = RemotePipe.extend(address, creds, direction="push", module="discard",
                               connections=connections, buffer_size=buffer_size, max_buffers=max_buffers,
                               window=window)
    pipe = Pipe([StageSpec("zeros", partial(Zeros, total)), remote.agent_stage()],
                buffer_size=buffer_size, max_buffers=max_buffers, name=remote.pipe_name)
    remote.run(pipe)
    return SYSTEM.monotonic() - t0


def plain_socket(total: int) -> float:
    """Seconds for one plain connection over loopback: ``sendall`` of a 1 MiB memoryview
    here into ``recv_into`` a 1 MiB bytearray in another process."""
    recv = subprocess.Popen([sys.executable, "-m", "pipevault.server.bench", "plain-recv", str(total)],
                            stdout=subprocess.PIPE, text=True)
    assert recv.stdout is not None
    try:
        port = int(recv.stdout.readline())
        t0 = SYSTEM.monotonic()
        data = memoryview(bytearray(BUF))
        with socket.create_connection(("127.0.0.1", port)) as s:
            left = total
            while left > 0:
                n = min(BUF, left)
                s.sendall(data[:n])
                left -= n
            done = recv.stdout.readline()  # the receiver has every byte
        assert done.strip() == "done", done
        return SYSTEM.monotonic() - t0
    finally:
        recv.kill()
        recv.wait(10)
        recv.stdout.close()


def _plain_receive(total: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    view = memoryview(bytearray(BUF))
    got = 0
    with conn:
        while got < total:
            n = conn.recv_into(view, BUF)
            if not n:
                break
            got += n
    print("done" if got == total else f"short {got}", flush=True)


def _serve(pair: NetnsPair | None, home: Path, listen: str, window: int | None = None,
           ) -> tuple[subprocess.Popen[str], str]:
    """A daemon process (in namespace b of ``pair`` if given) and its address."""
    cmd = [sys.executable, "-m", "pipevault", "--json", "serve", "--dir", str(home), "--listen", listen]
    if window:
        cmd += ["--window", str(window)]
    proc = pair.popen_b(cmd) if pair else subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, str(json.loads(proc.stdout.readline())["address"])


def _end(*procs: subprocess.Popen[str] | None) -> None:
    for proc in procs:
        if proc is not None:
            proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def _loopback(quick: bool, workdir: Path, wanted: set[str] | None) -> Iterator[BenchResult]:
    total = (1 if quick else 4) << 30
    home = workdir / "server"
    creds = Credentials("bench", NodeRegistry(home / "nodes.json").add("bench"))
    server, address = _serve(None, home, "127.0.0.1:0")
    try:
        for n in (1, 2, 4, 8):
            case = f"loopback-{n}conn"
            if wanted is not None and case not in wanted:
                continue
            base_s = plain_socket(total)
            ours_s = push_zeros(address, creds, total, n)
            yield BenchResult("net", case, total / ours_s / MB, total / base_s / MB,
                              "plain socket, 1 connection",
                              notes={"bytes": total, "ours_s": round(ours_s, 3),
                                     "baseline_s": round(base_s, 3)})
    finally:
        _end(server)


def _wan(quick: bool, workdir: Path, wanted: set[str] | None) -> Iterator[BenchResult]:
    cases = [n for n in (2, 4, 8) if wanted is None or f"wan-{n}conn" in wanted]
    if not cases or netns_probe() is not None:
        return
    total = (32 if quick else 96) << 20
    home = workdir / "wan-server"
    secret = NodeRegistry(home / "nodes.json").add("bench")
    with NetnsPair.create() as pair:
        server, relay = None, None
        try:
            server, address = _serve(pair, home, f"{pair.addr_b}:0", WAN_WINDOW)
            relay = pair.popen_b([sys.executable, "-m", "pipevault.server.relay", f"{pair.addr_b}:0",
                                  address, "--delay-ms", str(WAN_DELAY_MS), "--window", str(WAN_WINDOW),
                                  "--lifetime", "900"])
            assert relay.stdout is not None
            via = relay.stdout.readline().strip()

            def seconds(n: int) -> float:
                out = pair.run_a([sys.executable, "-m", "pipevault.server.bench", "push", via, "bench",
                                  secret.hex(), str(total), str(n), str(WAN_WINDOW)], timeout=600)
                return float(json.loads(out.stdout)["seconds"])

            one = seconds(1)
            for n in cases:
                s = seconds(n)
                yield BenchResult("net", f"wan-{n}conn", total / s / MB, total / one / MB,
                                  "pipe, 1 connection",
                                  notes={"bytes": total, "rtt_ms": 2 * WAN_DELAY_MS, "window": WAN_WINDOW,
                                         "buffer": WAN_BUFFER, "ours_s": round(s, 3),
                                         "baseline_s": round(one, 3)})
        finally:
            _end(relay, server)


def _site_env(home: Path) -> dict[str, str]:
    return {"PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent"}


def _remote_backup(quick: bool, workdir: Path, wanted: set[str] | None) -> Iterator[BenchResult]:
    """``backup-remote``: a full backup of the backup suite's tree through a `pipevault
    serve` process over loopback (4 connections), against a local backup of the same tree
    to the same kind of pool, in the same run (best of two each, alternating)."""
    case = "backup-remote-4conn"
    if wanted is not None and case not in wanted:
        return
    tree = make_tree(workdir / "net-backup-tree", 0.05 if quick else 0.25)
    total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    home = workdir / "net-backup-server"
    shutil.rmtree(home, ignore_errors=True)
    secret = NodeRegistry(home / "server" / "nodes.json").add("bench")
    cmd = [sys.executable, "-m", "pipevault", "--json", "serve", "--dir", str(home / "server"),
           "--listen", "127.0.0.1:0"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **_site_env(home)})
    assert server.stdout is not None
    try:
        address = str(json.loads(server.stdout.readline())["address"])
        remote = Server(address, Credentials("bench", secret), 4)
        client = config.load(env=_site_env(workdir / "net-backup-client"))
        local_home = workdir / "net-backup-local"
        shutil.rmtree(local_home, ignore_errors=True)
        ours, base = [], []
        for _ in range(2):
            with Site.open(config.load(env=_site_env(local_home))) as site:
                t0 = SYSTEM.monotonic()
                run_backup(site, BackupOptions([str(tree)], full=True))
                base.append(SYSTEM.monotonic() - t0)
            t0 = SYSTEM.monotonic()
            done = run_remote_backup(client, remote, BackupOptions([str(tree)], full=True))
            ours.append(SYSTEM.monotonic() - t0)
        yield BenchResult("net", case, total / min(ours) / MB, total / min(base) / MB,
                          "local backup of the same tree",
                          notes={"bytes": total, "objects": done.sent, "ours_s": [round(s, 3) for s in ours],
                                 "baseline_s": [round(s, 3) for s in base], "bottleneck": done.bottleneck})
    finally:
        _end(server)


def run(quick: bool, workdir: Path, cases: tuple[str, ...] | None = None) -> Iterator[BenchResult]:
    """Every case of the suite (or those named in ``cases``)."""
    wanted = set(cases) if cases else None
    yield from _loopback(quick, workdir, wanted)
    yield from _wan(quick, workdir, wanted)
    yield from _remote_backup(quick, workdir, wanted)


def _main(argv: list[str]) -> None:
    """Helper processes of the suite: ``push ADDRESS NODE SECRET_HEX BYTES CONNECTIONS
    WINDOW`` (one timed push, run inside the client namespace; prints ``{"seconds": s}``)
    and ``plain-recv BYTES`` (the baseline's receiver; prints its port, then "done")."""
    if argv[0] == "plain-recv":
        _plain_receive(int(argv[1]))
        return
    address, node, secret, total, n, window = argv[1:]
    s = push_zeros(address, Credentials(node, bytes.fromhex(secret)), int(total), int(n), int(window),
                   WAN_BUFFER)
    print(json.dumps({"seconds": s}), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
