"""A restore of a few files reads the blocks those files lie in, not the volume after them."""

from __future__ import annotations

import os
from pathlib import Path

from mover_helpers import open_site

from pipevault.mover import BackupOptions, RestoreOptions, run_backup, run_restore


def _tree(root: Path) -> Path:
    # Incompressible files of about a superblock each (256 KiB): forty blocks in all.
    for i in range(40):
        (root / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 4}" / f"f{i:02d}.bin").write_bytes(os.urandom(250_000 + i))
    return root


def test_one_file_reads_only_its_own_blocks(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        whole = run_restore(site, RestoreOptions([str(src)], to=str(tmp_path / "all")))
        one = run_restore(site, RestoreOptions([str(src / "d1" / "f05.bin")], to=str(tmp_path / "one")))
    assert whole.blocks_read >= 40
    assert one.restored == 1 and one.failed == []
    assert one.blocks_read <= 3  # the blocks the file lies in, not the 30-odd after it
    assert (tmp_path / "one" / "d1" / "f05.bin").read_bytes() == (src / "d1" / "f05.bin").read_bytes()


def test_scattered_files_each_read_their_own_blocks(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    wanted = [src / "d0" / "f00.bin", src / "d2" / "f18.bin", src / "d3" / "f39.bin"]
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        got = run_restore(site, RestoreOptions([str(p) for p in wanted], to=str(tmp_path / "out")))
    assert got.restored == 3 and got.failed == []
    assert got.blocks_read <= 3 * 3
    for p in wanted:
        assert (tmp_path / "out" / p.relative_to(src)).read_bytes() == p.read_bytes()
