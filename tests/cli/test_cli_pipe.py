"""The command line as a user runs it: a real `pipevault` process, exit codes, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PIPEVAULT = [sys.executable, "-m", "pipevault"]


def pv(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIPEVAULT, *args], capture_output=True, text=True, check=check,
                          timeout=120, env=os.environ.copy())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "in.dat"
    path.write_bytes(b"pipevault line\n" * 200_000 + os.urandom(300_000))
    return path


def test_version() -> None:
    out = pv("--version", check=True)
    assert "pipevault, version" in out.stdout


def test_compress_encrypt_and_back_through_the_cli(data: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(os.urandom(32).hex())
    sealed, back = tmp_path / "s", tmp_path / "b"
    first = pv("--json", "pipe", "run", "--input", str(data), "--stage", "hash", "--stage", "zstd-3:2",
               "--stage", "encrypt:2", "--key-file", str(key), "--output", str(sealed),
               "--buffer-size", "256K")
    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout.strip().splitlines()[-1])
    assert done["event"] == "finished" and done["bytes_done"] == data.stat().st_size
    assert [s["name"] for s in done["stages"]] == ["read", "hash", "zstd-3:2", "encrypt:2", "write"]
    second = pv("--json", "pipe", "run", "--input", str(sealed), "--stage", "decrypt", "--stage", "unzstd",
                "--stage", "hash", "--key-file", str(key), "--output", str(back), "--buffer-size", "256K")
    assert second.returncode == 0, second.stderr
    assert back.read_bytes() == data.read_bytes()
    digest = json.loads(second.stdout.strip().splitlines()[-1])["extra"]["results"]["hash"]
    assert digest == done["extra"]["results"]["hash"]


def test_wrong_key_exits_with_the_integrity_code(data: Path, tmp_path: Path) -> None:
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    k1.write_bytes(os.urandom(32))
    k2.write_bytes(os.urandom(32))
    sealed = tmp_path / "s"
    pv("pipe", "run", "--input", str(data), "--stage", "encrypt", "--key-file", str(k1),
       "--output", str(sealed), check=True)
    bad = pv("--json", "pipe", "run", "--input", str(sealed), "--stage", "decrypt", "--key-file", str(k2))
    assert bad.returncode == 19
    err = json.loads(bad.stdout.strip().splitlines()[-1])
    assert err["code"] == "pipe.integrity" and "wrong key" in err["message"]
    human = pv("pipe", "run", "--input", str(sealed), "--stage", "decrypt", "--key-file", str(k2))
    assert human.returncode == 19 and "what to do:" in human.stderr


def test_bad_stage_and_missing_key_are_usage_errors(data: Path) -> None:
    bad = pv("pipe", "run", "--input", str(data), "--stage", "gzip")
    assert bad.returncode == 2 and "unknown stage" in bad.stderr
    parallel_hash = pv("pipe", "run", "--input", str(data), "--stage", "hash:2")
    assert parallel_hash.returncode == 2 and "one instance" in parallel_hash.stderr
    nokey = pv("pipe", "run", "--input", str(data), "--stage", "encrypt")
    assert nokey.returncode == 2 and "--key-file" in nokey.stderr


def test_bad_configuration_names_its_source(data: Path) -> None:
    env_bad = subprocess.run([*PIPEVAULT, "pipe", "run", "--input", str(data)], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PIPEVAULT_BUFFER_SIZE": "3"})
    assert env_bad.returncode == 3
    assert "PIPEVAULT_BUFFER_SIZE" in env_bad.stderr


def test_demo_runs_and_verifies(tmp_path: Path) -> None:
    out = pv("--json", "demo", "--scale", "0.01")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["verified"] is True and summary["entries_compared"] > 200
    assert 0 < summary["stored_bytes"] < summary["bytes"]
