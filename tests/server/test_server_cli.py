"""`pipevault serve` node registration and `pipevault status` against a running daemon."""

from __future__ import annotations

import json
import threading
from functools import partial
from pathlib import Path

from click.testing import CliRunner
from server_helpers import SlowReader, random_file, running_daemon, wait_for

from pipevault.cli import cli
from pipevault.pipe import Pipe, StageSpec
from pipevault.pipe.errors import PipeStopped
from pipevault.pipe.net import Credentials, RemotePipe
from pipevault.server.nodes import NodeRegistry


def test_add_list_remove_nodes(tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "srv")
    out = runner.invoke(cli, ["serve", "--dir", d, "--add-node", "laptop"])
    assert out.exit_code == 0, out.output
    secret = bytes.fromhex(out.output.strip())
    assert len(secret) == 32 and NodeRegistry(tmp_path / "srv/nodes.json").secret_of("laptop") == secret
    assert (tmp_path / "srv/nodes.json").stat().st_mode & 0o777 == 0o600
    (tmp_path / "s.hex").write_text("ab" * 20)
    runner.invoke(cli, ["serve", "--dir", d, "--add-node", "db1", "--secret-file", str(tmp_path / "s.hex")])
    listed = runner.invoke(cli, ["--json", "serve", "--dir", d, "--list-nodes"])
    assert json.loads(listed.output) == {"nodes": ["db1", "laptop"]}
    assert runner.invoke(cli, ["serve", "--dir", d, "--remove-node", "db1"]).exit_code == 0
    assert runner.invoke(cli, ["serve", "--dir", d, "--remove-node", "db1"]).exit_code != 0
    assert runner.invoke(cli, ["serve", "--dir", d, "--add-node", "../x"]).exit_code != 0


def test_status_shows_pipe_stages_and_connections(tmp_path: Path) -> None:
    home = tmp_path / "srv"
    src = random_file(tmp_path / "src.bin", 2 << 20)
    with running_daemon(home) as daemon:
        creds = Credentials("n1", daemon.nodes.add("n1"))
        remote = RemotePipe.extend(daemon.address, creds, direction="push", module="discard",
                                   connections=3, buffer_size=64 << 10, max_buffers=16)
        pipe = Pipe([StageSpec("read", partial(SlowReader, str(src), 0.05)), remote.agent_stage()],
                    buffer_size=64 << 10, max_buffers=16, name=remote.pipe_name)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                remote.run(pipe)
            except PipeStopped as exc:
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        runner = CliRunner()

        def lines() -> list[dict[str, object]]:
            out = runner.invoke(cli, ["--json", "status", "--dir", str(home)])
            return [json.loads(line) for line in out.output.splitlines()]

        try:
            assert wait_for(lambda: any(p["node"] == "n1" and p["state"] == "running" and p["stages"]
                                        for p in lines()))
            mine = next(p for p in lines() if p["node"] == "n1")
            assert mine["pipe"] == remote.pipe_name and len(mine["links"]) == 3
            # The client half (a pipe of this machine the daemon does not own) shows its
            # server and its own connections too.
            assert wait_for(lambda: any(p["node"] is None and p["pipe"] == remote.pipe_name
                                        and p["peer"] == daemon.address and len(p["links"]) == 3
                                        and p["stages"][0]["name"] == "read" for p in lines()))
            text = runner.invoke(cli, ["status", "--dir", str(home)]).output
            assert remote.pipe_name in text and "connections" in text and "push discard: running (node n1" in text
            secret_file = tmp_path / "n1.secret"
            secret_file.write_text(creds.secret.hex())
            remote_view = runner.invoke(cli, ["--json", "status", "--server", daemon.address, "--node", "n1",
                                              "--secret-file", str(secret_file)])
            assert [json.loads(x)["pipe"] for x in remote_view.output.splitlines()] == [remote.pipe_name]
        finally:
            pipe.stop()
            t.join(10)
        assert errors and not t.is_alive()
    out = CliRunner().invoke(cli, ["status", "--dir", str(home)])
    assert out.exit_code == 0 and "no daemon running" in out.output


def test_serve_process_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    home = tmp_path / "srv"
    proc = subprocess.Popen([sys.executable, "-m", "pipevault", "--json", "serve", "--dir", str(home),
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        event = json.loads(proc.stdout.readline())
        assert event["event"] == "listening" and event["address"].startswith("127.0.0.1:")
        assert (home / "pipevault.sock").exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopping on signal" in err and not (home / "pipevault.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
