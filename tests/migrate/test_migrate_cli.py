"""``pipevault pool define|migrate`` and ``pipevault volume reclaim``, in-process and killed mid-way."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipevault import config
from pipevault.catalog import volumes as volume_rows
from pipevault.cli import main
from pipevault.mover import BackupOptions, RestoreOptions, Site, run_backup, run_restore


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, object]]]:
    with pytest.raises(SystemExit) as done:
        main(["--json", *args])
    out = capsys.readouterr().out
    return int(done.value.code or 0), [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def files(root: Path, n: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    made = {}
    for i in range(n):
        data = rng.randbytes(rng.choice([2_000, 90_000, 600_000]))
        (root / f"g{i:02d}").write_bytes(data)
        made[f"g{i:02d}"] = data
    return made


def restored(site: Site, src: Path, out: Path) -> dict[str, bytes]:
    result = run_restore(site, RestoreOptions([str(src)], to=str(out)))
    assert result.failed == []
    return {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_define_migrate_and_reclaim_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPEVAULT_VOLUME_SIZE", "2M")
    src = tmp_path / "src"
    made = files(src, 12, seed=1)
    with Site.open(config.load()) as site:
        run_backup(site, BackupOptions([str(src)]))
    code, out = run(capsys, "pool", "migrate", "disk", "--age-days", "0")
    assert code == 58 and out[0]["code"] == "mover.migrate.refused"
    assert run(capsys, "pool", "define", "tape", "--media-type", "tape")[0] == 0
    code, out = run(capsys, "pool", "define", "disk", "--next", "tape")
    assert code == 0 and out[0]["next_pool"] == "tape"
    code, out = run(capsys, "pool", "migrate", "disk", "--age-days", "0")
    assert code == 0
    summary = out[-1]
    assert summary["event"] == "migrate" and summary["freed"] and summary["bytes"]
    with Site.open(config.load()) as site:
        with site.catalog.read() as conn:
            disk = volume_rows.list_volumes(conn, pool="disk")
        assert all(v.state == "scratch" for v in disk)
        assert restored(site, src, tmp_path / "out") == made
    code, out = run(capsys, "volume", "reclaim", "tape", "--threshold", "50")
    assert code == 0 and out[-1]["event"] == "reclaim"
    assert run(capsys, "pool", "define", "worm", "--media-type", "optical")[0] == 0
    code, out = run(capsys, "volume", "reclaim", "worm", "--threshold", "50")
    assert code == 58 and out[0]["code"] == "mover.migrate.write_once"


def test_migration_killed_at_any_moment_leaves_every_object_restorable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "PIPEVAULT_HOME": str(home), "PIPEVAULT_VOLUME_SIZE": "2M"}
    src = tmp_path / "src"
    made = files(src, 30, seed=2)
    with Site.open(config.load(env=env)) as site:
        run_backup(site, BackupOptions([str(src)]))
    command = [sys.executable, "-m", "pipevault", "--json"]
    subprocess.run([*command, "pool", "define", "tape", "--media-type", "tape"], env=env, check=True,
                   capture_output=True)
    subprocess.run([*command, "pool", "define", "disk", "--next", "tape"], env=env, check=True,
                   capture_output=True)
    # How long a whole run takes here (on a copy), so the kills land inside the work.
    shutil.copytree(home, tmp_path / "copy")
    t0 = time.monotonic()
    subprocess.run([*command, "pool", "migrate", "disk", "--age-days", "0"], check=True, capture_output=True,
                   env={**env, "PIPEVAULT_HOME": str(tmp_path / "copy")})
    whole = time.monotonic() - t0
    rng = random.Random(3)
    finished = False
    for attempt in range(4):
        proc = subprocess.Popen([*command, "pool", "migrate", "disk", "--age-days", "0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(whole * rng.uniform(0.7, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        finished = proc.returncode == 0
        with Site.open(config.load(env=env)) as site:
            assert restored(site, src, tmp_path / f"out{attempt}") == made
        if finished:
            break
    if not finished:
        subprocess.run([*command, "pool", "migrate", "disk", "--age-days", "0"], env=env, check=True,
                       capture_output=True)
    with Site.open(config.load(env=env)) as site:
        with site.catalog.read() as conn:
            assert all(v.state == "scratch" for v in volume_rows.list_volumes(conn, pool="disk"))
        assert restored(site, src, tmp_path / "final") == made
