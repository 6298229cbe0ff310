"""The backup bench's rounds: the order rotates so every tool leads once, each figure comes
from the median round (a measured one), and every round's figure is kept in the notes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipevault.mover.bench import figures_of, median_round, results, rotation, run_rounds
from pipevault.mover.bench_tools import Round


def test_rotation_starts_each_round_one_tool_further_on() -> None:
    names = ["pipevault", "tar|zstd", "restic", "borg"]
    orders = [rotation(names, i) for i in range(5)]
    assert [o[0] for o in orders] == ["pipevault", "tar|zstd", "restic", "borg", "pipevault"]
    assert all(sorted(o) == sorted(names) for o in orders)
    assert rotation([], 3) == []


def test_run_rounds_runs_every_tool_once_per_round_in_the_rotated_order(tmp_path: Path) -> None:
    calls: list[str] = []

    def tool(name: str, seconds: float) -> Callable[[Path, Path], Round]:
        def run(tree: Path, workdir: Path) -> Round:
            assert (tree, workdir) == (tmp_path / "tree", tmp_path)
            calls.append(name)
            return Round(seconds + len(calls), 1.0, seconds, 1.0, 100)
        return run

    runs = run_rounds({"a": tool("a", 1.0), "b": tool("b", 2.0), "c": tool("c", 3.0)},
                      tmp_path / "tree", tmp_path, 3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [len(v) for v in runs.values()] == [3, 3, 3]
    assert [r.backup_s for r in runs["a"]] == [2.0, 7.0, 9.0]  # 1 s + its place in the calls


def test_median_round_is_a_measured_round_chosen_per_operation() -> None:
    slow_backup = Round(9.0, 9.0, 1.0, 1.0, 10)
    mid_backup = Round(5.0, 5.0, 8.0, 8.0, 30)
    fast_backup = Round(2.0, 2.0, 4.0, 4.0, 20)
    rounds = [slow_backup, mid_backup, fast_backup]
    assert median_round(rounds, "backup") is mid_backup
    assert median_round(rounds, "restore") is fast_backup
    assert median_round(rounds[:2], "backup") is mid_backup  # the lower middle of two


def test_figures_come_from_the_median_rounds_and_list_every_round() -> None:
    data = 1_000_000_000
    rounds = [Round(2.0, 3.0, 4.0, 5.0, 600_000_000), Round(1.0, 2.5, 5.0, 6.0, 700_000_000),
              Round(4.0, 4.0, 2.0, 3.0, 500_000_000)]
    f = figures_of(rounds, data)
    assert f["backup_mb_s"] == 500.0 and f["backup_cpu_s"] == 3.0  # the 2 s round
    assert f["restore_mb_s"] == 250.0 and f["restore_cpu_s"] == 5.0  # the 4 s round
    assert f["output_mb"] == 600.0
    assert f["rounds_backup_mb_s"] == [500.0, 1000.0, 250.0]
    assert f["rounds_restore_mb_s"] == [250.0, 200.0, 500.0]


def test_results_compare_our_median_with_tar_and_carry_our_median_rounds_notes() -> None:
    def ours(seconds: float) -> Round:
        notes = {op: {"stages": {"read": seconds}, "phases": {"pipe_s": seconds}, "bottleneck": "encode"}
                 for op in ("backup", "restore")}
        return Round(seconds, 1.0, seconds, 1.0, 10, notes)

    runs = {"pipevault": [ours(1.0), ours(3.0), ours(2.0)], "tar|zstd": [Round(4.0, 1.0, 8.0, 1.0, 20)] * 3}
    out = {r.case: r for r in results(runs, 1_000_000_000, "here", None)}
    assert out["backup"].ours == 500.0 and out["backup"].baseline == 250.0 and out["backup"].ratio == 2.0
    assert out["restore"].ratio == 4.0
    assert out["backup"].notes["pipevault_stages"] == {"read": 2.0}
    assert out["backup"].notes["rounds"] == 3
    assert [r.case for r in results(runs, 1_000_000_000, "here", ("restore",))] == ["restore"]
