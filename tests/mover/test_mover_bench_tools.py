"""The backup bench's rounds with real tools: ours and tar|zstd each back up and restore a
small generated tree, report what they measured, and leave nothing in the work directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipevault.mover import bench_tools
from pipevault.mover.bench import make_tree, results, run_rounds
from pipevault.mover.bench_tools import ours, tar_zstd


def test_two_rounds_of_ours_and_tar_measure_and_clean_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warm_memory = bench_tools.warm_memory
    # 64 MiB instead of 3 GiB before each timed run: the same code, seconds less of faulting.
    monkeypatch.setattr(bench_tools, "warm_memory", lambda limit=0: warm_memory(64 << 20))
    tree = make_tree(tmp_path / "tree", scale=0.005)
    work = tmp_path / "work"
    work.mkdir()
    runs = run_rounds({"pipevault": ours, "tar|zstd": tar_zstd}, tree, work, 2)
    assert sorted(p.name for p in work.iterdir()) == []  # repositories and restored trees removed
    for name, rounds in runs.items():
        assert len(rounds) == 2, name
        for r in rounds:
            assert r.backup_s > 0 and r.restore_s > 0 and r.backup_cpu_s > 0, name
            assert r.output > 0, name
    for r in runs["pipevault"]:
        assert set(r.notes) == {"backup", "restore"}
        assert {"read", "encode", "store", "catalog"} <= set(r.notes["backup"]["stages"])
        assert r.notes["backup"]["phases"]["pipe_s"] > 0
    # The same tree compresses to the same size each round. Output is what the volumes
    # occupy on disk (as du counts it, like the other tools' repositories), so the file
    # system's allocation may differ by a few blocks from one round to the next.
    first, second = (r.output for r in runs["pipevault"])
    assert abs(first - second) <= first // 100
    cases = {c.case: c for c in results(runs, 10_000_000, "tmp", None)}
    assert cases["backup"].notes["rounds"] == 2 and cases["backup"].ours > 0 and cases["backup"].baseline > 0
