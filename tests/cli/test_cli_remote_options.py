"""The options of jobs run through a daemon: what goes with --server, and the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipevault import config
from pipevault.cli._remote import server_of
from pipevault.errors import UsageError
from pipevault.pipe.net.errors import NetError


def settings(tmp_path: Path) -> config.Settings:
    return config.load(env={"PIPEVAULT_HOME": str(tmp_path), "PIPEVAULT_CONFIG": "/nonexistent",
                            "PIPEVAULT_NODE": "configured"})


def test_local_jobs_take_no_remote_options(tmp_path: Path) -> None:
    assert server_of(settings(tmp_path), None, 4, None, None) is None
    for args in ((None, 4, "n1", None), (None, 4, None, "s"), (None, 8, None, None)):
        with pytest.raises(UsageError, match="go with --server"):
            server_of(settings(tmp_path), *args)


def test_the_node_and_its_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPEVAULT_NODE", raising=False)
    secret = tmp_path / "n1.secret"
    secret.write_text("ab" * 32 + "\n")
    remote = server_of(settings(tmp_path), "10.0.0.2:7070", 2, None, str(secret))
    assert remote is not None and remote.creds.node == "configured" and remote.creds.secret == b"\xab" * 32
    assert remote.connections == 2 and remote.address == "10.0.0.2:7070"
    named = server_of(settings(tmp_path), "10.0.0.2:7070", 4, "n1", str(secret))
    assert named is not None and named.creds.node == "n1"
    with pytest.raises(UsageError, match="1 to 64"):
        server_of(settings(tmp_path), "10.0.0.2:7070", 0, None, str(secret))
    secret.write_text("not hex")
    with pytest.raises(NetError):
        server_of(settings(tmp_path), "10.0.0.2:7070", 4, None, str(secret))
