"""Duplicate discard across files (the default class dedups) and small sparse files."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from mover_helpers import open_site, snapshot

from pipevault.catalog import classes as class_rows
from pipevault.catalog import objects as object_rows
from pipevault.catalog import schema
from pipevault.catalog.check import check
from pipevault.catalog.objects import REFS_FIELD
from pipevault.mover import BackupOptions, RestoreOptions, Site, run_backup, run_restore
from pipevault.mover.errors import RestoreIncomplete
from pipevault.mover.query import run_expire

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


def _attributes(site: Site, src: Path, name: str) -> dict[str, object]:
    rel = (src / name).relative_to(src)
    hl = "/" + str(rel.parent) if str(rel.parent) != "." else "/"
    with site.catalog.read() as conn:
        v = object_rows.active_version(conn, site.node, str(src), hl, rel.name)
    assert v is not None
    attrs: dict[str, object] = json.loads(v.attributes)
    return attrs


def test_a_file_repeating_another_restores_alone(tmp_path: Path) -> None:
    src = _repeats(tmp_path / "src")
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        # The catalog names the object whose chunks each copy repeats (and nothing for the rest).
        first = _attributes(site, src, "a/first.bin")
        assert _attributes(site, src, "a/second.bin")[REFS_FIELD] == [first["object"]]
        assert _attributes(site, src, "s2.dat")[REFS_FIELD] == [_attributes(site, src, "s1.dat")["object"]]
        assert REFS_FIELD not in first and REFS_FIELD not in _attributes(site, src, "unique.bin")
        assert not [f for f in check(site.catalog) if f.code == "dangling_refs"]
        for name in ("a/second.bin", "s2.dat"):
            out = tmp_path / ("out-" + name.replace("/", "-"))
            alone = run_restore(site, RestoreOptions([str(src / name)], to=str(out)))
            assert alone.failed == [] and alone.restored == 1
            assert (out / name).read_bytes() == (src / name).read_bytes()
            # The file it repeats was read, not restored: nothing else is left in the target.
            assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir()) == [name]
            assert not list(out.rglob(".pipevault-restore-scratch-*"))
            checked = run_restore(site, RestoreOptions([str(src / name)], verify_only=True))
            assert checked.failed == [] and checked.bytes == (src / name).stat().st_size


def test_sources_of_sources_are_read_too(tmp_path: Path) -> None:
    """D repeats a chunk of S, whose other chunk repeats T: restoring D alone needs both."""
    rng = random.Random(5)
    a, b = rng.randbytes(MIB), rng.randbytes(MIB)
    src = tmp_path / "src"
    src.mkdir()
    (src / "1-t.bin").write_bytes(a)
    (src / "2-s.bin").write_bytes(a + b)
    (src / "3-d.bin").write_bytes(b + b"tail-d")
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        t, s, d = (_attributes(site, src, n) for n in ("1-t.bin", "2-s.bin", "3-d.bin"))
        assert s[REFS_FIELD] == [t["object"]] and d[REFS_FIELD] == [s["object"]]
        out = tmp_path / "out"
        assert run_restore(site, RestoreOptions([str(src / "3-d.bin")], to=str(out))).failed == []
        assert (out / "3-d.bin").read_bytes() == b + b"tail-d"
        assert sorted(p.name for p in out.iterdir()) == ["3-d.bin"]


def test_a_copy_of_an_expired_object_is_named_not_written(tmp_path: Path) -> None:
    src = _repeats(tmp_path / "src")
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        first = _attributes(site, src, "a/first.bin")
        with site.catalog.write() as conn:  # the original's version gone from the catalog
            (vid,) = conn.execute(sa.select(schema.versions.c.id).where(
                schema.versions.c.attributes.like(f'%"object":{first["object"]}}}'))).one()
            conn.execute(sa.delete(schema.locations).where(schema.locations.c.version_id == vid))
            conn.execute(sa.delete(schema.versions).where(schema.versions.c.id == vid))
        # The catalog check names the copy left without its original.
        assert [(f.code, f.count) for f in check(site.catalog) if f.code == "dangling_refs"] == [("dangling_refs", 1)]
        with pytest.raises(RestoreIncomplete) as caught:
            run_restore(site, RestoreOptions([str(src / "a" / "second.bin")], to=str(tmp_path / "out")))
        # Restored alone, the copy names what it lacks instead of writing wrong bytes.
        assert [path for path, _ in caught.value.details["failed"]] == [str(src / "a" / "second.bin")]
        assert "no longer lists it (expired)" in caught.value.details["failed"][0][1]
        assert not (tmp_path / "out" / "a" / "second.bin").exists()


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


def test_a_copy_restores_alone_from_a_catalog_rebuilt_from_media(tmp_path: Path) -> None:
    from pipevault.mover.rebuild import rebuild_from_media

    src = _repeats(tmp_path / "src")
    home = tmp_path / "home"
    with open_site(home) as site:
        run_backup(site, BackupOptions([str(src)]))
        before = {n: _attributes(site, src, n) for n in ("a/first.bin", "a/second.bin", "s2.dat")}
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (home / name).unlink(missing_ok=True)
    with open_site(home) as site:
        assert rebuild_from_media(site).sessions == 1
        # The media tell the rebuild what each copy repeats and where each object sits.
        for name, attrs in before.items():
            rebuilt = _attributes(site, src, name)
            assert (rebuilt["session"], rebuilt["object"]) == (attrs["session"], attrs["object"])
            assert rebuilt.get(REFS_FIELD) == attrs.get(REFS_FIELD)
        out = tmp_path / "out"
        assert run_restore(site, RestoreOptions([str(src / "a" / "second.bin")], to=str(out))).failed == []
    assert (out / "a" / "second.bin").read_bytes() == (src / "a" / "second.bin").read_bytes()
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["second.bin"]


def test_expiration_holds_an_original_while_a_copy_is_kept(tmp_path: Path) -> None:
    src = _repeats(tmp_path / "src")
    with open_site(tmp_path / "home") as site:
        with site.catalog.write() as conn:  # a deleted file's versions expire at once
            class_rows.define_class(conn, class_rows.ManagementClass("STANDARD", versions_deleted=0),
                                    now=site.catalog.clock.now())
        run_backup(site, BackupOptions([str(src)]))
        original = (src / "a" / "first.bin").read_bytes()
        (src / "a" / "first.bin").unlink()
        (src / "s1.dat").unlink()
        run_backup(site, BackupOptions([str(src)]))
        report = run_expire(site)
        # first.bin and s1.dat are due, and held: second.bin and s2.dat, kept, repeat them.
        assert (report.versions_expired, report.versions_held) == (0, 2)
        assert not [f for f in check(site.catalog) if f.code == "dangling_refs"]
        out = tmp_path / "out"
        assert run_restore(site, RestoreOptions([str(src / "a" / "second.bin")], to=str(out))).failed == []
        assert (out / "a" / "second.bin").read_bytes() == original[: 2 * MIB] + b"tail-b"
        whole = run_restore(site, RestoreOptions([str(src)], to=str(tmp_path / "whole")))
        assert whole.failed == [] and snapshot(tmp_path / "whole") == snapshot(src)
        # Once the copies go too, so do the originals.
        (src / "a" / "second.bin").unlink()
        (src / "s2.dat").unlink()
        run_backup(site, BackupOptions([str(src)]))
        report = run_expire(site)
        assert report.versions_held == 0
        with site.catalog.read() as conn:
            left = {v.ll for v in object_rows.query_versions(conn, site.node, str(src), state="any")}
        assert not left & {"first.bin", "second.bin", "s1.dat", "s2.dat"}


def test_every_file_of_a_tree_of_copies_restores_alone(tmp_path: Path) -> None:
    """Files made of shared 1 MiB blocks in random orders, and small files repeated: each one
    restored alone (and verified alone) comes back byte for byte, with nothing else written."""
    rng = random.Random(11)
    blocks = [rng.randbytes(MIB) for _ in range(4)]
    small = [rng.randbytes(rng.randint(10, 3000)) for _ in range(3)]
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(10):
        parts = [rng.choice(blocks) for _ in range(rng.randint(1, 4))]
        tail = rng.randbytes(rng.randint(0, 5000)) if i % 3 else b""
        (src / ("sub" if i % 2 else ".") / f"big{i}.bin").write_bytes(b"".join(parts) + tail)
    for i in range(6):
        (src / f"small{i}.txt").write_bytes(small[i % 3])
    files = sorted(p for p in src.rglob("*") if p.is_file())
    with open_site(tmp_path / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        with site.catalog.read() as conn:
            refs = [json.loads(v.attributes).get(REFS_FIELD) for v in
                    object_rows.query_versions(conn, site.node, str(src), state="any")]
        assert sum(1 for r in refs if r) >= 8  # most files repeat another's chunks
        for n, f in enumerate(files):
            out = tmp_path / f"out{n}"
            alone = run_restore(site, RestoreOptions([str(f)], to=str(out)))
            rel = f.relative_to(src)
            assert alone.failed == [] and alone.restored == 1, rel
            assert (out / rel).read_bytes() == f.read_bytes(), rel
            assert [p.relative_to(out) for p in out.rglob("*") if not p.is_dir()] == [rel]
            checked = run_restore(site, RestoreOptions([str(f)], verify_only=True))
            assert checked.failed == [] and checked.bytes == f.stat().st_size, rel
