"""The backup bench's warm-ups: the cache reads every regular file once, and nothing else;
the memory one faults in what it is asked, never more than a quarter of what is free."""

from __future__ import annotations

import os
from pathlib import Path

from pipevault.mover.bench_tools import warm, warm_memory


def test_warm_reads_each_regular_file_whole_and_skips_links(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"x" * 3_000_000)  # more than one read buffer
    (tmp_path / "b").write_bytes(b"yz")
    (tmp_path / "empty").write_bytes(b"")
    os.symlink(tmp_path / "d" / "a", tmp_path / "link")  # would count a's bytes twice if followed
    os.mkfifo(tmp_path / "fifo")  # opening it would block
    assert warm(tmp_path) == 3_000_002


def test_warm_memory_faults_in_at_most_a_quarter_of_what_is_available() -> None:
    available = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemAvailable:"))
    assert warm_memory(64 << 20) == 64 << 20
    assert 0 < warm_memory(1 << 50) <= available // 4
    assert warm_memory(0) == 0
