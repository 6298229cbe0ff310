"""The backup bench's cache warm-up reads every regular file once, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

from pipevault.mover.bench import warm


def test_warm_reads_each_regular_file_whole_and_skips_links(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"x" * 3_000_000)  # more than one read buffer
    (tmp_path / "b").write_bytes(b"yz")
    (tmp_path / "empty").write_bytes(b"")
    os.symlink(tmp_path / "d" / "a", tmp_path / "link")  # would count a's bytes twice if followed
    os.mkfifo(tmp_path / "fifo")  # opening it would block
    assert warm(tmp_path) == 3_000_002
