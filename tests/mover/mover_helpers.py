"""Generated source trees with every kind of entry, and a comparison of trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipevault import config
from pipevault.mover import BackupOptions, RestoreOptions, Site, run_backup, run_restore


def open_site(home: Path, passphrase: bytes | None = None, volume_size: str = "64M") -> Site:
    env = {"PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent", "PIPEVAULT_VOLUME_SIZE": volume_size}
    return Site.open(config.load(env=env), passphrase=passphrase)


def backup_and_restore(src: Path, work: Path) -> Path:
    """Back ``src`` up into a fresh home under ``work`` and restore all of it to ``work/out``
    (returned), with embedded defaults."""
    out = work / "out"
    with open_site(work / "home") as site:
        run_backup(site, BackupOptions([str(src)]))
        run_restore(site, RestoreOptions([str(src)], to=str(out)))
    return out


def make_tree(root: Path, seed: int = 0) -> Path:
    """Files of several sizes, empty file, sparse file, symlinks, hard links, a FIFO, xattrs,
    odd permissions and times, unicode and non-UTF-8 names, nested directories."""
    rng = __import__("random").Random(seed)
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    for i in range(30):
        (root / "docs" / f"note{i:02d}.txt").write_text(f"note {i}\n" * rng.randint(1, 3000))
    (root / "docs" / "deep" / "deeper" / "blob.bin").write_bytes(rng.randbytes(2_500_000))
    (root / "empty").write_bytes(b"")
    with open(root / "sparse.img", "wb") as f:
        f.truncate(40 << 20)
        f.seek(5 << 20)
        f.write(rng.randbytes(300_000))
        f.seek((40 << 20) - 1000)
        f.write(b"end" * 100)
    os.symlink("docs/note01.txt", root / "link-to-note")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "docs" / "note02.txt", root / "hardlink-to-note02")
    os.mkfifo(root / "fifo")
    (root / "üñïcødé.txt").write_text("unicode name\n")
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9.txt"), "wb") as f:
        f.write(b"non-UTF-8 name\n")
    os.setxattr(root / "docs" / "note03.txt", "user.tag", b"important")
    os.chmod(root / "docs" / "note04.txt", 0o600)
    os.chmod(root / "docs" / "deep", 0o750)
    os.utime(root / "docs" / "note05.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    return root


def snapshot(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Everything a restore must bring back, by relative name (bytes)."""
    out: dict[bytes, tuple[object, ...]] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, base)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            data: object = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            try:
                xattrs = tuple(sorted((n, os.getxattr(p, n, follow_symlinks=False))
                                      for n in os.listxattr(p, follow_symlinks=False)))
            except OSError:
                xattrs = ()
            mtime = st.st_mtime_ns if not stat.S_ISLNK(st.st_mode) and not stat.S_ISDIR(st.st_mode) else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                        data, xattrs, mtime)
    return out
