"""The walk lists directories in its own thread while listings are quick and on a pool of
threads once they are slow, with the same entries in the same order either way."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import pipevault.mover.walk as walk_module
from pipevault.mover.walk import WalkReport, walk


def _tree(root: Path) -> Path:
    for d in range(6):
        sub = root / f"d{d}" / f"e{d % 2}"
        sub.mkdir(parents=True)
        for f in range(30):
            (sub / f"f{f:02d}").write_bytes(b"x" * f)
    os.symlink("d0", root / "link")
    (root / "locked").mkdir(mode=0)  # unreadable as a non-root user only: listed or reported
    return root


def _listing(root: Path) -> tuple[list[tuple[str, int, int]], WalkReport]:
    report = WalkReport()
    found = [(e.rel, e.kind, e.st.st_size) for e in walk([str(root)], report=report)]
    return found, report


def test_a_slow_walk_switches_to_threads_and_yields_the_same_entries(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "src")
    pools: list[Any] = []

    class CountingPool(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(walk_module, "ThreadPoolExecutor", CountingPool)
    inline, inline_report = _listing(root)
    assert pools == []  # a local tree in the page cache is listed in the walking thread

    monkeypatch.setattr(walk_module, "SLOW_ENTRY_S", 0.0)  # every listing counts as slow
    monkeypatch.setattr(walk_module, "PROBE_ENTRIES", 8)
    threaded, threaded_report = _listing(root)
    assert len(pools) == 1
    assert threaded == inline
    assert threaded_report.errors == inline_report.errors
    assert len(inline) == 1 + 6 * (2 + 30) + 2  # the root, each d/e pair and its files, link, locked
    assert [rel for rel, _k, _s in inline[:3]] == ["", "d0", "d1"]  # breadth first, sorted by name


def test_closing_the_walk_early_stops_its_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "src")
    monkeypatch.setattr(walk_module, "SLOW_ENTRY_S", 0.0)
    monkeypatch.setattr(walk_module, "PROBE_ENTRIES", 1)
    it = walk([str(root)])
    first = [next(it) for _ in range(5)]
    it.close()
    assert first[0].rel == ""
    assert not [t for t in threading.enumerate() if t.name.startswith("pv-walk")]
