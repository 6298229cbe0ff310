"""The compiled small-file writer (``pipevault.mover._fastio``) against its Python specification.

Both write the same batches into two fresh directories: every file must come out the same
(data, size, mode, owner, times, xattrs, what replaced what was in the way) and every
failure must be the same exception with the same message.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipevault.mover import write_behind
from pipevault.mover.errors import DestinationError
from pipevault.mover.write_behind import WriteBatch, write_batch

XATTR = b"user.pipevault.test"


def test_the_extension_is_built() -> None:
    assert write_behind.COMPILED, "pipevault.mover._fastio is not built (see setup.py)"


def _header(size: int, mode: int = 0o100640, uid: int = 0, gid: int = 0, xattrs: tuple[tuple[bytes, bytes], ...] = ()
            ) -> SimpleNamespace:
    return SimpleNamespace(size=size, mode=mode, uid=uid, gid=gid, atime_ns=1_600_000_000_123_456_789,
                           mtime_ns=1_500_000_000_987_654_321, xattrs=xattrs)


def _prepare(root: Path) -> None:
    """What is in the way before the batch runs (the same in both directories)."""
    root.mkdir()
    (root / "old.txt").write_bytes(b"a much longer old content that must not survive")
    (root / "outside").write_bytes(b"never touched")
    os.symlink(root / "outside", root / "link")
    (root / "dir").mkdir()
    (root / "taken").write_bytes(b"in a directory said to be fresh")
    (root / "linked").write_bytes(b"shared")
    os.link(root / "linked", root / "other-link")


def _batch(root: Path) -> tuple[WriteBatch, int]:
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    b = WriteBatch()
    b.dirs[()] = (dfd, False)
    owner = 1234 if os.geteuid() == 0 else os.geteuid()
    for name, data, h in [
        ("new.txt", b"hello", _header(5)),
        ("old.txt", b"short", _header(5, mode=0o100600)),
        ("link", b"replaces the symlink", _header(20)),
        ("dir", b"x", _header(1)),
        ("linked", b"own copy", _header(8)),
        ("holes", b"tail", _header(10_000)),  # trailing hole: the size is set after the data
        ("empty", b"", _header(0, mode=0o100444)),
        ("owned", b"mine", _header(4, uid=owner, gid=owner)),
        ("x" * 300, b"name too long", _header(13)),
    ]:
        b.files.append((dfd, name, False, bytearray(data), h, f"t/{name[:20]}"))
    xattrs = ((XATTR, b"value"),)
    b.files.append((dfd, "attrs", False, bytearray(b"x"), _header(1, xattrs=xattrs), "t/attrs"))
    b.files.append((dfd, "taken", True, bytearray(b"y"), _header(1), "t/taken"))  # O_EXCL meets a file
    return b, dfd


def _said(e: Exception | None) -> tuple[type, str] | None:
    """What the restore reports of a failure (a DestinationError's message, an OSError's
    strerror: the Python path's OSError also names the file, the restore never shows it)."""
    if e is None:
        return None
    return (type(e), e.message if isinstance(e, DestinationError) else str(getattr(e, "strerror", e)))


def _state(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for p in sorted(root.iterdir()):
        st = os.lstat(p)
        entry: tuple[object, ...] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_size, st.st_nlink)
        if stat.S_ISREG(st.st_mode):
            try:
                xattr = os.getxattr(p, XATTR)
            except OSError:
                xattr = None
            # (the times of the files prepared, not written, are when each run made them)
            times = (st.st_atime_ns, st.st_mtime_ns) if p.name not in ("outside", "other-link", "taken") else ()
            entry += (p.read_bytes(), st.st_uid, st.st_gid, *times, xattr, st.st_blocks * 512 < st.st_size)
        out[p.name] = entry
    return out


@pytest.mark.skipif(not write_behind.COMPILED, reason="checked by test_the_extension_is_built")
def test_compiled_batches_write_what_the_python_writes(tmp_path: Path) -> None:
    results: dict[bool, tuple[list[tuple[type, str] | None], dict[str, tuple[Any, ...]]]] = {}
    for compiled in (False, True):
        root = tmp_path / ("c" if compiled else "py")
        _prepare(root)
        batch, _ = _batch(root)
        errors = write_batch(batch, compiled=compiled)
        results[compiled] = ([_said(e) for e in errors], _state(root))
    assert results[True] == results[False]
    said, state = results[True]
    # What the specification says, checked once here on the compiled side's results:
    assert said[3] == (DestinationError, "t/dir exists in the target as a directory")
    assert said[8] == (OSError, os.strerror(36))  # ENAMETOOLONG, from the look before creating
    assert said[10] == (DestinationError, f"cannot create t/taken: {os.strerror(17)}")  # EEXIST
    assert [i for i, e in enumerate(said) if e is not None] == [3, 8, 10]
    assert state["link"][0] == stat.S_IFREG and (tmp_path / "c" / "outside").read_bytes() == b"never touched"
    assert (tmp_path / "c" / "other-link").read_bytes() == b"shared"  # the other link kept its data
    assert state["old.txt"][4] == b"short" and state["old.txt"][1] == 0o600
    assert state["holes"][2] == 10_000 and state["empty"][1] == 0o444
    assert state["new.txt"][8] == 1_500_000_000_987_654_321


def test_a_batch_closes_its_directories(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _prepare(root)
    batch, dfd = _batch(root)
    write_batch(batch)
    with pytest.raises(OSError):
        os.fstat(dfd)  # closed by the batch, as the Python path does
