"""Duplicate discard across files (the default class dedups) and small sparse files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from mover_helpers import open_site, snapshot

from pipevault.mover import BackupOptions, RestoreOptions, run_backup, run_restore
from pipevault.mover.errors import RestoreIncomplete

MIB = 1 << 20


def _repeats(root: Path) -> Path:
    """Files sharing whole 1 MiB chunks: big ones, a small one, and one repeating itself."""
    rng = random.Random(3)
    block = rng.randbytes(MIB)
    (root / "a").mkdir(parents=True)
    (root / "a" / "first.bin").write_bytes(block * 3 + b"tail-a")
    (root / "a" / "second.bin").write_bytes(block * 2 + b"tail-b")
    small = rng.randbytes(10_000)
    (root / "s1.dat").write_bytes(small)
    (root / "s2.dat").write_bytes(small)
    (root / "unique.bin").write_bytes(rng.randbytes(MIB + 5))
    with open(root / "small-sparse.img", "wb") as f:  # small, with a hole before its data
        f.truncate(200_000)
        f.seek(150_000)
        f.write(b"x" * 20_000)
    return root


def test_duplicates_are_stored_once_and_restored_everywhere(tmp_path: Path) -> None:
    src = _repeats(tmp_path / "src")
    with open_site(tmp_path / "home") as site:
        backed = run_backup(site, BackupOptions([str(src)]))
        # Five copies of the block, two of the small file: each stored once (plus the unique
        # data, the tails and the sparse file's 20,000 bytes).
        assert backed.bytes_stored < 2 * MIB + 100_000
        out = tmp_path / "out"
        restored = run_restore(site, RestoreOptions([str(src)], to=str(out)))
        assert restored.failed == []
        assert snapshot(out) == snapshot(src)
        sparse = os.stat(out / "small-sparse.img")
        assert sparse.st_size == 200_000
        checked = run_restore(site, RestoreOptions([str(src)], to=str(tmp_path / "none"), verify_only=True))
        assert checked.failed == [] and checked.bytes == backed.bytes_read


def test_a_duplicate_of_a_file_not_restored_is_named(tmp_path: Path) -> None:
    src = _repeats(tmp_path / "src")
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        with pytest.raises(RestoreIncomplete) as caught:
            run_restore(site, RestoreOptions([str(src / "a" / "second.bin")], to=str(tmp_path / "out")))
        # Restored alone, the repeated file names what it needs instead of writing wrong bytes.
        assert [path for path, _ in caught.value.details["failed"]] == [str(src / "a" / "second.bin")]
        assert "restore the whole session" in caught.value.details["failed"][0][1]
        assert not (tmp_path / "out" / "a" / "second.bin").exists()
        # Restored with the file it repeats, it comes back whole.
        both = run_restore(site, RestoreOptions([str(src / "a")], to=str(tmp_path / "both")))
        assert both.failed == []
    assert (tmp_path / "both" / "a" / "second.bin").read_bytes() == (src / "a" / "second.bin").read_bytes()


def test_many_small_files_with_long_undecodable_names(tmp_path: Path) -> None:
    """Names that grow most once escaped (every byte not UTF-8) still fit the encoders' batches."""
    src = tmp_path / "src"
    deep = os.path.join(os.fsencode(src), b"\xfe" * 200)
    os.makedirs(deep)
    for i in range(300):
        with open(os.path.join(deep, b"%03d" % i + b"\xff" * 240), "wb") as f:
            f.write(b"x" * (i * 7))
    with open_site(tmp_path / "home") as site:
        backed = run_backup(site, BackupOptions([str(src)]))
        assert backed.sent == 302 and not backed.warnings
        out = tmp_path / "out"
        assert run_restore(site, RestoreOptions([str(src)], to=str(out))).failed == []
    assert snapshot(out) == snapshot(src)
