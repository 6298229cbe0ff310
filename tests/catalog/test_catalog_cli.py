"""The catalog, class, pool and volume commands, in-process and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from catalog_helpers import backup, file, make_pool

from pipevault.catalog.database import Catalog
from pipevault.catalog.schema import versions
from pipevault.cli import main
from pipevault.config import load


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return int(done.value.code or 0), capsys.readouterr().out


@pytest.fixture
def filled() -> Catalog:
    with Catalog.from_settings(load()) as catalog:
        make_pool(catalog)
        backup(catalog, "n1", [file("/d", f"f{i}", superblock=i) for i in range(5)])
        return catalog


def test_info_counts_rows(capsys: pytest.CaptureFixture[str], filled: Catalog) -> None:
    code, out = run(capsys, "--json", "catalog", "info")
    doc = json.loads(out)
    assert code == 0 and doc["event"] == "catalog_info" and doc["database"] == "sqlite"
    assert doc["rows"]["versions"] == 5 and doc["rows"]["volumes"] == 2


def test_check_exit_status_follows_findings(capsys: pytest.CaptureFixture[str], filled: Catalog) -> None:
    assert run(capsys, "catalog", "check") == (0, "catalog consistent\n")
    with Catalog.from_settings(load()) as catalog, catalog.write() as conn:
        conn.execute(sa.update(versions).values(class_name="NOSUCH"))
    code, out = run(capsys, "catalog", "check")
    assert code == 1 and "undefined class" in out
    with Catalog.from_settings(load()) as catalog, catalog.write() as conn:
        conn.execute(sa.update(versions).values(state="active", object_id=1))
    code, out = run(capsys, "--json", "catalog", "check")
    assert code == 48
    assert json.loads(out.splitlines()[-1])["code"] == "catalog.inconsistent"


def test_backup_and_restore_commands(capsys: pytest.CaptureFixture[str], filled: Catalog, tmp_path: Path) -> None:
    dest = tmp_path / "catalog.bak"
    code, out = run(capsys, "--json", "catalog", "backup", str(dest))
    assert code == 0 and json.loads(out)["rows"]["versions"] == 5
    assert run(capsys, "catalog", "backup", str(dest))[0] == 46
    target = "sqlite:///" + str(tmp_path / "restored.db")
    code, out = run(capsys, "catalog", "restore", str(dest), "--to", target)
    assert code == 0 and "restored" in out
    with Catalog.open(target) as restored:
        assert restored.counts()["versions"] == 5


def test_class_pool_and_volume_commands(capsys: pytest.CaptureFixture[str], filled: Catalog) -> None:
    assert run(capsys, "class", "define", "GOLD", "--versions-exists", "4", "--dedup")[0] == 0
    assert run(capsys, "class", "define", "GOLD", "--archive-days", "10")[0] == 0
    out = run(capsys, "--json", "class", "show", "GOLD")[1]
    doc = json.loads(out)
    assert (doc["versions_exists"], doc["dedup"], doc["archive_days"]) == (4, True, 10)
    out = run(capsys, "--json", "pool", "list")[1]
    (pool,) = [json.loads(line) for line in out.splitlines()]
    assert pool["name"] == "disk" and pool["volumes"] == {"filling": 1, "scratch": 1}
    out = run(capsys, "--json", "volume", "show", "V1", "--contents")[1]
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["state"] == "filling"
    assert [e["ll"] for e in lines[1:]] == [f"f{i}" for i in range(5)]
    assert run(capsys, "volume", "show", "NOPE")[0] == 44
    assert run(capsys, "class", "show", "NOPE")[0] == 44


def test_as_a_real_process(filled: Catalog) -> None:
    out = subprocess.run([sys.executable, "-m", "pipevault", "--json", "volume", "list", "--state", "scratch"],
                         capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=True)
    assert [json.loads(line)["name"] for line in out.stdout.splitlines()] == ["V2"]
