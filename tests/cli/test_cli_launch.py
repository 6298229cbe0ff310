"""The ``pipevault`` launcher: which commands get their fork server before the CLI imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipevault.__main__ import server_module


@pytest.mark.parametrize(("argv", "module"), [
    (["backup", "/data"], "pipevault.mover.backup"),
    (["--json", "archive", "/data", "--description", "x"], "pipevault.mover.backup"),
    (["--home", "restore", "backup", "/data"], "pipevault.mover.backup"),  # "restore" is --home's value
    (["--config", "/etc/pv.toml", "restore", "/data", "--to", "/tmp/x"], "pipevault.mover.scan"),
    (["retrieve", "/data"], "pipevault.mover.scan"),
    (["restore", "/data", "--server", "host:9000"], None),  # the server decodes
    (["restore", "/data", "--server=host:9000"], None),
    (["backup", "/data", "--server", "host:9000"], "pipevault.mover.backup"),  # encoders run here
    (["query", "backup"], None),
    (["--json"], None),
    (["--", "backup"], None),
    ([], None),
])
def test_server_module_follows_the_command_not_option_values(argv: list[str], module: str | None) -> None:
    assert server_module(argv) == module


def test_python_dash_m_runs_the_command_line() -> None:
    out = subprocess.run([sys.executable, "-m", "pipevault", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "pipevault" in out.stdout


def test_server_modules_are_the_ones_the_jobs_preload() -> None:
    # The launcher names them as text (importing them is what it must not do first).
    from pipevault.mover.backup import run_backup
    from pipevault.mover.scan import ScanStage

    assert server_module(["backup", "/d"]) == run_backup.__module__
    assert server_module(["restore", "/d"]) == ScanStage.__module__
