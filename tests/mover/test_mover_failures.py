"""Damaged media, hostile names, killed backups: clear errors, nothing lost, nothing outside."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mover_helpers import make_tree, open_site, snapshot

from pipevault.mover import BackupOptions, RestoreOptions, run_backup, run_restore
from pipevault.mover.errors import NothingMatched, RestoreIncomplete, UnsafePath
from pipevault.mover.paths import TargetTree, check_name
from pipevault.mover.plan import make_plan


def _volume_files(home: Path) -> list[Path]:
    return sorted((home / "pools" / "disk").glob("*.pvv"))


def test_restore_goes_on_past_damage_and_names_what_it_lost(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    home = tmp_path / "home"
    with open_site(home) as site:
        run_backup(site, BackupOptions([str(src)]))
    vol = _volume_files(home)[0]
    data = bytearray(vol.read_bytes())
    # Flip bytes in the middle of the volume: inside the 2.5 MB random blob's superblocks.
    middle = len(data) // 2
    data[middle: middle + 64] = bytes(b ^ 0xFF for b in data[middle: middle + 64])
    vol.write_bytes(data)
    out = tmp_path / "out"
    with open_site(home) as site, pytest.raises(RestoreIncomplete) as info:
        run_restore(site, RestoreOptions([str(src)], to=str(out)))
    failed = {p for p, _why in info.value.details["failed"]}
    assert failed, "the damaged object must be named"
    assert all("damaged" in why or "not found" in why or "missing" in why for _p, why in info.value.details["failed"])
    # Every object not named was restored intact; the named ones are not left half written.
    want, got = snapshot(src), snapshot(out)
    lost = {os.fsencode(os.path.relpath(p, src)) for p in failed}
    for rel, entry in want.items():
        if rel in lost:
            assert rel not in got or entry[0] == 0o040000  # a directory may still exist
        else:
            assert got.get(rel) == entry, rel


def test_restore_of_a_missing_volume_names_every_object(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    home = tmp_path / "home"
    with open_site(home) as site:
        result = run_backup(site, BackupOptions([str(src / "docs")]))
    _volume_files(home)[0].unlink()
    with open_site(home) as site, pytest.raises(RestoreIncomplete) as info:
        run_restore(site, RestoreOptions([str(src / "docs")], to=str(tmp_path / "out")))
    assert len(info.value.details["failed"]) == result.sent


@pytest.mark.parametrize("name", [b"../escape", b"/etc/passwd-pv", b"a/../../b", b"a//b", b"./x", b"a\x00b",
                                  b".."])
def test_hostile_names_are_refused(name: bytes) -> None:
    with pytest.raises(UnsafePath):
        check_name(name)


def test_a_symlink_in_the_target_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "docs")
    tree = TargetTree(str(target))
    try:
        with pytest.raises(UnsafePath, match="not a plain directory"):
            tree.create_file(("docs", "note.txt"))
        # A symlink where a file goes is replaced, not written through.
        os.symlink(outside / "victim", target / "file.txt")
        fd = tree.create_file(("file.txt",))
        os.write(fd, b"data")
        os.close(fd)
    finally:
        tree.close()
    assert not (outside / "note.txt").exists() and not (outside / "victim").exists()
    assert (target / "file.txt").read_bytes() == b"data" and not (target / "file.txt").is_symlink()


def test_hostile_names_on_media_are_refused_and_nothing_escapes(tmp_path: Path) -> None:
    """A session whose object names climb out of the file space (as a forged volume would)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_text("good\n")
    (src / "evil.txt").write_text("evil\n")
    home = tmp_path / "home"
    with open_site(home) as site:
        plan = make_plan(site, [str(src)])
        plan.send = [dataclasses.replace(e, rel="../../escaped.txt") if e.rel == "evil.txt" else e
                     for e in plan.send]
        run_backup(site, BackupOptions([str(src)]), plan=plan)
        out = tmp_path / "deep" / "out"
        with pytest.raises(RestoreIncomplete) as info:
            run_restore(site, RestoreOptions([str(src)], to=str(out)))
    assert any("has a '..' component" in why for _p, why in info.value.details["failed"])
    assert (out / "good.txt").read_text() == "good\n"
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()


def test_a_killed_backup_leaves_no_partial_object_and_the_next_one_completes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"part{i:02d}.bin").write_bytes(os.urandom(3_000_000))
    home = tmp_path / "home"
    env = {**os.environ, "PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent"}
    proc = subprocess.Popen([sys.executable, "-m", "pipevault", "--json", "backup", str(src)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it once some data is on a volume but long before the end.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        vols = list((home / "pools" / "disk").glob("*.pvv")) if (home / "pools" / "disk").exists() else []
        if vols and sum(v.stat().st_size for v in vols) > 20_000_000:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    # Whatever the catalog holds is complete and intact on the media.
    with open_site(home) as site:
        try:
            catalogued = run_restore(site, RestoreOptions([str(src)], verify_only=True)).restored
        except NothingMatched:  # nothing catalogued yet is also a valid outcome
            catalogued = 0
        assert catalogued < 41  # the kill came before the end
        again = run_backup(site, BackupOptions([str(src)]))
        assert again.sent == 41 - catalogued  # catalogued files are not sent twice
        out = tmp_path / "out"
        run_restore(site, RestoreOptions([str(src)], to=str(out)))
    assert snapshot(out) == snapshot(src)


def test_a_file_that_vanishes_before_it_is_read_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.txt").write_text(f"file {i}\n")
    with open_site(tmp_path / "home") as site:
        plan = make_plan(site, [str(src)])
        (src / "f3.txt").unlink()  # gone between the walk and the read
        result = run_backup(site, BackupOptions([str(src)]), plan=plan)
        assert any(path.endswith("f3.txt") and "not backed up" in why for path, why in result.warnings)
        assert result.sent == 5  # the root directory and the four files still there
        out = tmp_path / "out"
        run_restore(site, RestoreOptions([str(src)], to=str(out)))
    assert sorted(p.name for p in out.iterdir()) == ["f0.txt", "f1.txt", "f2.txt", "f4.txt"]


def test_cli_exit_status_one_when_files_were_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok\n")
    os.mkfifo(src / "pipe")  # backed up as a FIFO, never opened: no warning
    env = {**os.environ, "PIPEVAULT_HOME": str(tmp_path / "home"), "PIPEVAULT_CONFIG": "/nonexistent"}
    ok = subprocess.run([sys.executable, "-m", "pipevault", "--json", "backup", str(src)], env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run([sys.executable, "-m", "pipevault", "--json", "backup", str(tmp_path / "nope")],
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert "No such file" in missing.stdout
