"""Backup and restore round trips: every file type and attribute, incremental, points in time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from mover_helpers import make_tree, open_site, snapshot

from pipevault.catalog import classes as class_rows
from pipevault.mover import BackupOptions, RestoreOptions, run_backup, run_restore
from pipevault.mover.errors import KeyMissing, NothingMatched, WrongPassphrase


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "src")


def test_full_round_trip_keeps_everything(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        result = run_backup(site, BackupOptions([str(tree)]))
        assert result.sent == result.examined and not result.warnings
        out = tmp_path / "out"
        restored = run_restore(site, RestoreOptions([str(tree)], to=str(out)))
    assert restored.failed == []
    assert snapshot(out) == snapshot(tree)
    # Hard links come back as links; the sparse file comes back sparse.
    assert os.stat(out / "hardlink-to-note02").st_ino == os.stat(out / "docs" / "note02.txt").st_ino
    sparse = os.stat(out / "sparse.img")
    assert sparse.st_size == 40 << 20 and sparse.st_blocks * 512 < 2 << 20
    # Holes are not stored: far less than 40 MiB went to the volume.
    assert result.bytes_stored < 6 << 20


def test_restore_to_the_original_place_and_a_single_file(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(tree)]))
        before = snapshot(tree)
        (tree / "docs" / "note07.txt").unlink()
        (tree / "docs" / "note08.txt").write_text("clobbered")
        run_restore(site, RestoreOptions([str(tree / "docs")]))
        assert snapshot(tree) == before
        single = run_restore(site, RestoreOptions([str(tree / "docs" / "note09.txt")], to=str(tmp_path / "one")))
    assert single.restored == 1
    assert (tmp_path / "one" / "docs" / "note09.txt").read_bytes() == (tree / "docs" / "note09.txt").read_bytes()
    assert not (tmp_path / "one" / "docs" / "note10.txt").exists()


def test_incremental_sends_only_changes_and_points_in_time_restore_old_states(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        first = run_backup(site, BackupOptions([str(tree)]))
        state1 = snapshot(tree)
        t1 = time.time()
        time.sleep(0.05)
        (tree / "docs" / "note00.txt").write_text("modified\n")
        (tree / "docs" / "note01.txt").unlink()
        os.rename(tree / "docs" / "note02.txt", tree / "docs" / "renamed02.txt")
        (tree / "new.txt").write_text("new file\n")
        second = run_backup(site, BackupOptions([str(tree)]))
        state2 = snapshot(tree)
        # Changed: note00, new.txt, renamed02 (new name), the docs and root directories.
        assert second.sent < first.sent // 4
        assert second.deleted == 2  # note01 and the old name of note02
        unchanged_again = run_backup(site, BackupOptions([str(tree)]))
        assert unchanged_again.sent == 0 and unchanged_again.deleted == 0
        latest = tmp_path / "latest"
        run_restore(site, RestoreOptions([str(tree)], to=str(latest)))
        old = tmp_path / "old"
        run_restore(site, RestoreOptions([str(tree)], to=str(old), point_in_time=t1))
    assert snapshot(latest) == state2
    assert snapshot(old) == state1


def test_full_backup_sends_everything_again(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        first = run_backup(site, BackupOptions([str(tree)]))
        again = run_backup(site, BackupOptions([str(tree)], full=True))
    assert again.sent == first.sent


def test_excludes_are_not_backed_up(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(tree)], excludes=("*.img", str(tree / "docs" / "deep"))))
        out = tmp_path / "out"
        run_restore(site, RestoreOptions([str(tree)], to=str(out)))
    assert not (out / "sparse.img").exists() and not (out / "docs" / "deep").exists()
    assert (out / "docs" / "note00.txt").exists()


def test_verify_reads_everything_and_writes_nothing(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        backed = run_backup(site, BackupOptions([str(tree)]))
        result = run_restore(site, RestoreOptions([str(tree)], to=str(tmp_path / "never"), verify_only=True))
    assert result.restored == backed.sent and result.bytes == backed.bytes_read
    assert not (tmp_path / "never").exists()


def test_nothing_matched(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(tree / "docs")]))
        with pytest.raises(NothingMatched):
            run_restore(site, RestoreOptions([str(tmp_path / "elsewhere")]))


def _encrypting_class(site: object) -> None:
    with site.catalog.write() as conn:  # type: ignore[attr-defined]
        class_rows.define_class(conn, class_rows.ManagementClass("SECRET", encrypt=True), now=time.time())


def test_encrypted_backup_needs_the_passphrase(tmp_path: Path, tree: Path) -> None:
    home = tmp_path / "home"
    with open_site(home, passphrase=b"correct horse") as site:
        _encrypting_class(site)
        run_backup(site, BackupOptions([str(tree / "docs")], class_name="SECRET"))
    volume_bytes = b"".join(p.read_bytes() for p in (home / "pools" / "disk").glob("*.pvv"))
    assert b"note 5\nnote 5\n" not in volume_bytes  # nothing of the plaintext on the media
    with open_site(home, passphrase=b"wrong") as site, pytest.raises(WrongPassphrase):
        run_restore(site, RestoreOptions([str(tree / "docs")], to=str(tmp_path / "x")))
    with open_site(home) as site, pytest.raises(KeyMissing):
        run_restore(site, RestoreOptions([str(tree / "docs")], to=str(tmp_path / "x")))
    with open_site(home, passphrase=b"correct horse") as site:
        run_restore(site, RestoreOptions([str(tree / "docs")], to=str(tmp_path / "ok")))
    assert snapshot(tmp_path / "ok") == snapshot(tree / "docs")  # names are relative to the file space


def test_archive_and_retrieve_by_description(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(tree / "docs")], archive=True, description="quarter end"))
        (tree / "docs" / "note00.txt").write_text("later\n")
        run_backup(site, BackupOptions([str(tree / "docs")], archive=True, description="next month"))
        out = tmp_path / "out"
        run_restore(site, RestoreOptions([str(tree / "docs" / "note00.txt")], to=str(out), archive=True,
                                         description="quarter*"))
        assert (out / "note00.txt").read_text().startswith("note 0")
        with pytest.raises(NothingMatched):  # archives are not backups
            run_restore(site, RestoreOptions([str(tree / "docs")], to=str(tmp_path / "none")))


def test_volumes_fill_and_continue_on_the_next(tmp_path: Path, tree: Path) -> None:
    with open_site(tmp_path / "home", volume_size="1M") as site:
        result = run_backup(site, BackupOptions([str(tree)]))
        assert len(result.volumes) >= 3
        out = tmp_path / "out"
        run_restore(site, RestoreOptions([str(tree)], to=str(out)))
    assert snapshot(out) == snapshot(tree)


def test_catalog_rebuilt_from_media_alone_restores_every_version(tmp_path: Path, tree: Path) -> None:
    from pipevault.mover.rebuild import rebuild_from_media

    home = tmp_path / "home"
    with open_site(home) as site:
        run_backup(site, BackupOptions([str(tree)]))
        state1 = snapshot(tree)
        time.sleep(0.05)
        t1 = time.time()
        time.sleep(0.05)
        (tree / "docs" / "note00.txt").write_text("second version\n")
        (tree / "added.txt").write_text("added later\n")
        (tree / "docs" / "note06.txt").unlink()  # the media must say it was deleted
        assert run_backup(site, BackupOptions([str(tree)])).deleted == 1
        state2 = snapshot(tree)
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (home / name).unlink(missing_ok=True)
    with open_site(home) as site:
        report = rebuild_from_media(site)
        assert report.sessions == 2 and not report.skipped and not report.damage
        latest, old = tmp_path / "latest", tmp_path / "old"
        run_restore(site, RestoreOptions([str(tree)], to=str(latest)))
        run_restore(site, RestoreOptions([str(tree)], to=str(old), point_in_time=t1))
    assert snapshot(latest) == state2
    assert snapshot(old) == state1


def test_archives_survive_a_catalog_rebuild_with_their_description(tmp_path: Path, tree: Path) -> None:
    from pipevault.mover.rebuild import rebuild_from_media

    home = tmp_path / "home"
    with open_site(home) as site:
        run_backup(site, BackupOptions([str(tree / "docs")], archive=True, description="year end 2026"))
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (home / name).unlink(missing_ok=True)
    with open_site(home) as site:
        rebuild_from_media(site)
        out = tmp_path / "out"
        run_restore(site, RestoreOptions([str(tree / "docs")], to=str(out), archive=True, description="year*"))
        with pytest.raises(NothingMatched):
            run_restore(site, RestoreOptions([str(tree / "docs")], to=str(tmp_path / "x"), archive=True,
                                             description="other*"))
    assert snapshot(out) == snapshot(tree / "docs")


def test_a_subtree_or_file_is_found_by_name_with_wildcard_and_like_characters(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in ("a/x.txt", "a/sub/y.txt", "ab/z.txt", "a*/w.txt", "a%/v.txt", "a_/u.txt", "a\\b/t.txt", "a?c/s.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)

    def restored(wanted: str) -> set[str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        run_restore(site, RestoreOptions([str(src / wanted)], to=str(out)))
        return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}

    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        assert restored("a") == {"a/x.txt", "a/sub/y.txt"}  # not ab, a*, a%, a_ ...
        assert restored("a*") == {"a*/w.txt"}
        assert restored("a%") == {"a%/v.txt"}
        assert restored("a_") == {"a_/u.txt"}
        assert restored("a\\b") == {"a\\b/t.txt"}
        assert restored("a?c") == {"a?c/s.txt"}
        assert restored("a/sub/y.txt") == {"a/sub/y.txt"}
        with pytest.raises(NothingMatched):
            run_restore(site, RestoreOptions([str(src / "a" / "nope")], to=str(tmp_path / "none")))
