"""The daemon on loopback: pushes and pulls over N connections, refusals, failures on either
side, STOP_PIPE, status, and a dropped connection resumed from its checkpoint."""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import (
    FailingReader,
    SlowReader,
    pipe_segments,
    pull,
    push,
    random_file,
    running_daemon,
    wait_for,
)

from pipevault.pipe import Pipe, StageContext, StageSpec
from pipevault.pipe.errors import ModuleFailed
from pipevault.pipe.modules import FileReader
from pipevault.pipe.net import ControlClient, Credentials, RemotePipe
from pipevault.pipe.net.checkpoint import Checkpoint
from pipevault.pipe.net.errors import AuthRefused, ConnectionLost, RemoteFailed
from pipevault.server import halves
from pipevault.server.bench import push_zeros
from pipevault.server.daemon import Daemon
from pipevault.server.errors import AccessDenied, NoSuchPipe, ServerError, UnknownModule
from pipevault.server.relay import Relay


@pytest.fixture
def daemon(tmp_path: Path):  # type: ignore[no-untyped-def]
    with running_daemon(tmp_path / "server", attach_timeout=5.0) as d:
        yield d


@pytest.fixture
def creds(daemon: Daemon) -> Credentials:
    return Credentials("n1", daemon.nodes.add("n1"))


@pytest.mark.parametrize("connections", [1, 4, 8])
def test_push_then_pull_moves_identical_data(daemon: Daemon, creds: Credentials, tmp_path: Path,
                                             connections: int) -> None:
    src = random_file(tmp_path / "src.bin", 3 * (1 << 20) + 12345)
    before = pipe_segments()
    remote, result = push(daemon.address, creds, src, "dir/a.bin", connections=connections)
    stored = daemon.home / "nodes" / "n1" / "dir" / "a.bin"
    assert stored.read_bytes() == src.read_bytes()
    assert remote.remote_result["durable"] == src.stat().st_size == result.bytes_moved
    assert not list(stored.parent.glob("*.partial")) and not list(stored.parent.glob("*.ckpt"))
    assert sum(c.bytes for c in remote.link.connections) == src.stat().st_size
    out = tmp_path / "back.bin"
    pull(daemon.address, creds, "dir/a.bin", out, connections=connections)
    assert out.read_bytes() == src.read_bytes()
    assert wait_for(lambda: pipe_segments() <= before)


def test_resequencing_with_a_pool_smaller_than_the_reorder_need(daemon: Daemon, creds: Credentials,
                                                                 tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 2 << 20)
    push(daemon.address, creds, src, "small.bin", connections=8, max_buffers=16)
    assert (daemon.home / "nodes/n1/small.bin").read_bytes() == src.read_bytes()


@pytest.mark.parametrize(("connections", "max_buffers"), [(8, 16), (4, 8), (3, 64)])
def test_many_frames_over_many_connections_never_deadlock(daemon: Daemon, creds: Credentials,
                                                          connections: int, max_buffers: int) -> None:
    # Out-of-order frames plus frames half received on other connections must never take
    # the buffer the next in-order frame needs.
    total = 48 << 20
    done: list[float] = []
    t = threading.Thread(target=lambda: done.append(push_zeros(
        daemon.address, creds, total, connections, buffer_size=64 << 10, max_buffers=max_buffers)))
    t.start()
    t.join(60)
    assert not t.is_alive() and done, "the transfer stalled"
    with ControlClient(f"unix:{daemon.socket_path}") as control:
        assert wait_for(lambda: any(p["node"] == "n1" and p["state"] == "finished"
                                    and p["result"]["bytes"] == total
                                    for p in control.request("status")["pipes"]))


def test_unknown_node_and_wrong_secret_are_refused_and_logged(
        daemon: Daemon, creds: Credentials, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "pipevault.server")
    src = random_file(tmp_path / "src.bin", 1000)
    with pytest.raises(AuthRefused):
        push(daemon.address, Credentials("ghost", creds.secret), src, "x.bin")
    with pytest.raises(AuthRefused):
        push(daemon.address, Credentials("n1", b"not the secret" * 3), src, "x.bin")
    assert wait_for(lambda: sum("refused" in r.message for r in caplog.records) >= 2)
    assert "unknown node" in caplog.text and "wrong secret" in caplog.text
    assert not (daemon.home / "nodes" / "n1" / "x.bin").exists()


def test_a_node_reaches_only_its_own_area(daemon: Daemon, creds: Credentials, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 5000)
    push(daemon.address, creds, src, "mine.bin")
    other = Credentials("n2", daemon.nodes.add("n2"))
    for path in ("../n1/mine.bin", "/etc/passwd", "a/../../n1/mine.bin"):
        with pytest.raises(AccessDenied):
            pull(daemon.address, other, path, tmp_path / "stolen.bin")
    with pytest.raises(AccessDenied):
        pull(daemon.address, other, "mine.bin", tmp_path / "stolen.bin")  # n2 has no such file
    (daemon.home / "nodes" / "n2").mkdir(parents=True)
    (daemon.home / "nodes" / "n2" / "link").symlink_to(daemon.home / "nodes" / "n1")
    with pytest.raises(AccessDenied):
        pull(daemon.address, other, "link/mine.bin", tmp_path / "stolen.bin")


def test_data_connection_of_another_node_is_refused(daemon: Daemon, creds: Credentials) -> None:
    remote = RemotePipe.extend(daemon.address, creds, direction="push", module="discard", connections=1)
    other = Credentials("n2", daemon.nodes.add("n2"))
    from pipevault.pipe.net.auth import client_handshake
    from pipevault.pipe.net.client import connect, request
    sock = connect(daemon.address)
    with sock:
        client_handshake(sock, other.node, other.secret, "data")
        with pytest.raises(AccessDenied):
            request(sock, "attach", transfer=remote.transfer, index=0)
    remote.link.close()


def test_unknown_module_is_refused(daemon: Daemon, creds: Credentials) -> None:
    with pytest.raises(UnknownModule, match="offered: discard, (fails, )?file"):
        RemotePipe.extend(daemon.address, creds, direction="push", module="tape9")


class _FailingTail:
    """Server-side tail that fails after ``after`` bytes (a full volume, a dying drive)."""

    def __init__(self, after: int) -> None:
        self.after = after

    def run(self, ctx: StageContext) -> None:
        seen = 0
        while (buf := ctx.receive_buf()) is not None:
            seen += buf.length
            ctx.free_buf(buf)
            if seen >= self.after:
                raise ServerError(f"volume full after {seen} bytes (injected)")


halves.register("push", "fails", lambda req: halves.Half([StageSpec("store", partial(
    _FailingTail, int(req.params["after"])))]))


def test_server_side_failure_stops_the_client_with_its_error(daemon: Daemon, creds: Credentials,
                                                              tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 4 << 20)
    remote = RemotePipe.extend(daemon.address, creds, direction="push", module="fails",
                               params={"after": 1 << 20}, connections=3, max_buffers=16)
    pipe = Pipe([StageSpec("read", partial(FileReader, str(src))), remote.agent_stage()],
                max_buffers=16, name=remote.pipe_name)
    with pytest.raises(RemoteFailed, match=r"server.error.*volume full after"):
        remote.run(pipe)


def test_setup_failure_is_reported_at_extend(daemon: Daemon, creds: Credentials, tmp_path: Path) -> None:
    area = daemon.home / "nodes" / "n1"
    area.mkdir(parents=True)
    (area / "file").write_text("a file, not a directory")
    with pytest.raises(ServerError, match="cannot prepare push module file"):
        push(daemon.address, creds, random_file(tmp_path / "s", 10), "file/inside.bin")


def test_client_side_failure_stops_the_server_half(daemon: Daemon, creds: Credentials,
                                                   tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 4 << 20)
    with pytest.raises(ModuleFailed, match="injected"):
        push(daemon.address, creds, src, "cut.bin",
             source=lambda offset: FailingReader(str(src), 1 << 20, offset))
    with ControlClient(f"unix:{daemon.socket_path}") as control:
        assert wait_for(lambda: control.request("status")["pipes"][0]["state"] == "failed")
        state = control.request("status")["pipes"][0]
        assert state["node"] == "n1"
    assert state["error"]["code"] in ("net.remote_failed", "net.connection_lost")
    assert not (daemon.home / "nodes/n1/cut.bin").exists()
    assert (daemon.home / "nodes/n1/cut.bin.partial").exists()


def test_stop_pipe_and_status_while_running(daemon: Daemon, creds: Credentials, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 4 << 20)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            push(daemon.address, creds, src, "slow.bin", connections=2,
                 source=lambda offset: SlowReader(str(src), 0.05, offset))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    with ControlClient(f"unix:{daemon.socket_path}") as control:
        assert wait_for(lambda: any(p["state"] == "running" and p["links"] and p["links"][0]["bytes"]
                                    for p in control.request("status")["pipes"]))
        pipe = next(p for p in control.request("status")["pipes"] if p.get("node") == "n1")
        assert pipe["peer"].startswith("127.0.0.1:") and len(pipe["links"]) == 2
        assert [s["name"] for s in pipe["stages"]] == ["net", "write"]
        with pytest.raises(NoSuchPipe):
            control.request("stop_pipe", pipe="no-such-pipe")
        assert control.request("stop_pipe", pipe=pipe["pipe"])["stopping"]
    t.join(15)
    assert not t.is_alive()
    assert isinstance(errors[0], RemoteFailed) and "pipe.stopped" in errors[0].message


def test_node_status_shows_only_its_own_pipes(daemon: Daemon, creds: Credentials, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 1000)
    push(daemon.address, creds, src, "one.bin")
    other = Credentials("n2", daemon.nodes.add("n2"))
    with ControlClient(daemon.address, other) as control:
        assert control.request("status")["pipes"] == []
    with ControlClient(daemon.address, creds) as control:
        pipes = control.request("status")["pipes"]
        assert [p["state"] for p in pipes] == ["finished"]
        with ControlClient(daemon.address, other) as intruder, pytest.raises(AccessDenied):
            intruder.request("stop_pipe", pipe=pipes[0]["pipe"])


def test_dropped_connection_resumes_from_the_checkpoint(daemon: Daemon, creds: Credentials,
                                                        tmp_path: Path) -> None:
    size = 6 << 20
    src = random_file(tmp_path / "src.bin", size)
    # The only connection that carries 3 MiB is the data connection.
    relay = Relay("127.0.0.1:0", daemon.address, delay_s=0.0, cut_after=3 << 20)
    relay.start()
    try:
        with pytest.raises((ConnectionLost, RemoteFailed)):
            push(relay.address, creds, src, "big.bin", connections=1)
    finally:
        relay.stop()
    area = daemon.home / "nodes" / "n1"
    assert wait_for(lambda: (area / "big.bin.ckpt").exists())
    with ControlClient(f"unix:{daemon.socket_path}") as control:
        assert wait_for(lambda: all(p["state"] != "running" for p in control.request("status")["pipes"]
                                    if p["node"] == "n1"))
    record = Checkpoint.load(area / "big.bin.ckpt")
    assert record is not None and 0 < record["durable"] < size
    remote, result = push(daemon.address, creds, src, "big.bin", connections=2, resume=True)
    assert remote.resume_from == record["durable"]
    assert result.bytes_moved == size - record["durable"]  # not restarted from the start
    assert (area / "big.bin").read_bytes() == src.read_bytes()
    assert not (area / "big.bin.ckpt").exists()


def test_missing_data_connections_time_out(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "server", attach_timeout=0.3) as d:
        creds = Credentials("n1", d.nodes.add("n1"))
        with ControlClient(d.address, creds) as control:
            control.request("extend_pipe", pipe="pv-lonely", direction="push", module="discard",
                            params={}, connections=2)
            assert wait_for(lambda: control.request("status")["pipes"][0]["state"] == "failed")
            assert "0 of 2 data connections" in control.request("status")["pipes"][0]["error"]["message"]


def test_pipe_list_is_empty_after_stop(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "server", "127.0.0.1:0")
    d.start()
    d.stop()
    d.stop()
    assert not d.socket_path.exists()
    with pytest.raises(ConnectionLost):
        ControlClient(d.address, Credentials("n1", b"x" * 32))


def test_pipe_of_unbounded_size_through_local_pipe_spec(daemon: Daemon, creds: Credentials) -> None:
    # A pull from the "zeros" head into a local discard: the memory-to-memory path of bench net.
    from pipevault.pipe.modules import Discard
    remote = RemotePipe.extend(daemon.address, creds, direction="pull", module="zeros",
                               params={"bytes": 5 << 20}, connections=4)
    pipe = Pipe([remote.agent_stage(), StageSpec("discard", Discard)], name=remote.pipe_name)
    result = remote.run(pipe)
    assert result.bytes_moved == 5 << 20 and result.results["discard"] == [5 << 20]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from([0, 1, 65535, 65536, 200_001, 1_500_000]), connections=st.integers(1, 6),
       max_buffers=st.integers(12, 24))
def test_any_size_over_any_connection_count_arrives_identical(
        daemon: Daemon, creds: Credentials, tmp_path: Path, size: int, connections: int,
        max_buffers: int) -> None:
    src = tmp_path / f"src-{size}-{connections}.bin"
    src.write_bytes(os.urandom(size))
    remote, result = push(daemon.address, creds, src, f"h/{src.name}", connections=connections,
                          max_buffers=max_buffers)
    assert result.bytes_moved == size == remote.remote_result["size"]
    assert (daemon.home / "nodes/n1/h" / src.name).read_bytes() == src.read_bytes()
    back = tmp_path / f"back-{src.name}"
    pull(daemon.address, creds, f"h/{src.name}", back, connections=connections)
    assert back.read_bytes() == src.read_bytes()


def test_one_target_is_written_by_one_pipe_at_a_time(daemon: Daemon, creds: Credentials) -> None:
    first = RemotePipe.extend(daemon.address, creds, direction="push", module="file",
                              params={"path": "same.bin"}, connections=1)
    try:
        with pytest.raises(ServerError, match="being written by pipe"):
            RemotePipe.extend(daemon.address, creds, direction="push", module="file",
                              params={"path": "same.bin"}, connections=1)
    finally:
        first.link.close()


def test_credentials_from_arguments_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipevault.pipe.net.client import load_credentials
    from pipevault.pipe.net.errors import NetError
    secret_file = tmp_path / "secret"
    secret_file.write_text("ab" * 32 + "\n")
    assert load_credentials("n1", str(secret_file)) == Credentials("n1", bytes.fromhex("ab" * 32))
    monkeypatch.setenv("PIPEVAULT_NODE", "n2")
    monkeypatch.setenv("PIPEVAULT_SECRET_FILE", str(secret_file))
    assert load_credentials().node == "n2"
    secret_file.write_text("not hex")
    with pytest.raises(NetError, match="hex secret"):
        load_credentials()
    secret_file.write_text("abcd")
    with pytest.raises(NetError, match="shorter"):
        load_credentials()
    monkeypatch.delenv("PIPEVAULT_NODE")
    with pytest.raises(NetError, match="node name and its secret file"):
        load_credentials()
