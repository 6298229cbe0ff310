"""Large restored files are written behind the event handling, in order, and a failed
write names its file instead of passing as restored."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from mover_helpers import backup_and_restore, open_site, snapshot

from pipevault.format import ArchiveHeader
from pipevault.mover import write_behind
from pipevault.mover.backup import BackupOptions, run_backup
from pipevault.mover.errors import RestoreIncomplete
from pipevault.mover.restore import RestoreOptions, run_restore
from pipevault.mover.write_behind import WriteBehind


def _open_under(path: Path) -> int:
    """This process's descriptors of ``path`` or anything under it. Not all descriptors: the
    test process has others (another test's threads, the garbage collector closing a
    connection) that come and go on their own."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since listed
            target = os.readlink(f"/proc/self/fd/{fd}")
            n += target == str(path) or target.startswith(f"{path}/")
    return n

def test_writes_then_attributes_in_order_and_the_descriptor_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    wb = WriteBehind()
    try:
        wb.write("k", fd, memoryview(b"hello "), 0, ("f",))
        wb.write("k", fd, b"world", 6, ("f",))
        header = ArchiveHeader(name=b"/f", size=20, mode=0o640, atime_ns=10**18, mtime_ns=2 * 10**18,
                               uid=os.geteuid(), gid=os.getegid())
        wb.finish_file("k", fd, header, 11, ("f",))
        assert wb.submit() is not None
        assert wb.submit() is None  # nothing queued since
        outcomes = wb.done(wait=True)
    finally:
        wb.close()
    assert [(o.failed, o.warnings) for o in outcomes] == [([], [])]
    assert path.read_bytes() == b"hello world" + bytes(9)  # trailing hole restored by size
    st = path.stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 2 * 10**18)
    with pytest.raises(OSError) as err:
        os.fstat(fd)
    assert err.value.errno == errno.EBADF


def test_a_failed_write_names_the_object_and_skips_the_rest_of_it(tmp_path: Path) -> None:
    (tmp_path / "ro").write_bytes(b"")
    bad = os.open(tmp_path / "ro", os.O_RDONLY)  # pwrite on it fails (EBADF)
    good = os.open(tmp_path / "ok", os.O_RDWR | os.O_CREAT, 0o600)
    header = ArchiveHeader(name=b"/x", size=3, mode=0o600, uid=os.geteuid(), gid=os.getegid())
    wb = WriteBehind()
    try:
        wb.write("bad", bad, b"abc", 0, ("ro",))
        wb.write("ok", good, b"xyz", 0, ("ok",))
        wb.write("bad", bad, b"def", 3, ("ro",))
        wb.finish_file("bad", bad, header, 6, ("ro",))
        wb.finish_file("ok", good, header, 3, ("ok",))
        wb.submit()
        (outcome,) = wb.done(wait=True)
    finally:
        wb.close()
    assert [(key, parts) for key, _why, parts in outcome.failed] == [("bad", ("ro",))]
    assert "cannot write it" in outcome.failed[0][1]
    assert (tmp_path / "ok").read_bytes() == b"xyz"
    for fd in (bad, good):  # both closed by their finish
        with pytest.raises(OSError):
            os.fstat(fd)


def test_close_drops_queued_work_and_closes_its_descriptors(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    wb = WriteBehind()
    wb.write("k", fd, b"data", 0, ("f",))
    wb.finish_file("k", fd, ArchiveHeader(name=b"/f", size=4), 4, ("f",))
    wb.close()  # never submitted: a failed job
    with pytest.raises(OSError):
        os.fstat(fd)


def test_restore_names_a_large_file_whose_writes_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(3 << 20))
    (src / "other").write_bytes(os.urandom(2 << 20))
    (src / "small").write_text("small\n")
    site = open_site(tmp_path / "home")
    try:
        run_backup(site, BackupOptions([str(src)]))
        real = os.pwrite

        def pwrite(fd: int, data: Any, offset: int) -> int:
            if os.readlink(f"/proc/self/fd/{fd}").endswith("/big"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data, offset)

        monkeypatch.setattr(write_behind.os, "pwrite", pwrite)
        out = tmp_path / "out"
        with pytest.raises(RestoreIncomplete) as err:
            run_restore(site, RestoreOptions([str(src)], to=str(out)))
    finally:
        site.close()
    failed = err.value.details["failed"]
    assert [(os.path.basename(p), why) for p, why in failed] == [("big", "cannot write it: No space left on device")]
    assert not (out / "big").exists()  # not left behind half written
    assert snapshot(out) == {k: v for k, v in snapshot(src).items() if k != b"big"}


def test_a_restore_leaves_no_descriptor_open(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(12):
            size = (300 << 10) if i % 2 else 100  # large files through write-behind, small in batches
            (src / f"d{d}" / f"f{i}").write_bytes(os.urandom(size))
    site = open_site(tmp_path / "home")
    try:
        run_backup(site, BackupOptions([str(src)]))
        run_restore(site, RestoreOptions([str(src)], to=str(tmp_path / "warm")))  # pools and caches opened
        before = _open_under(tmp_path)
        run_restore(site, RestoreOptions([str(src)], to=str(tmp_path / "out")))
        after = _open_under(tmp_path)
    finally:
        site.close()
    assert after <= before  # was one duplicate directory descriptor per large file
    assert snapshot(tmp_path / "out") == snapshot(src)


def test_write_back_is_started_every_few_megabytes_and_at_the_end(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Large files' pages go to the device while the restore runs (not all at the final
    sync), from where the last start left off, on descriptors of the writer's own; each
    range is advised again, dropping its pages, once DROP_AFTER more bytes were written (the
    rest at close)."""
    started: list[tuple[int, int, bool]] = []
    real = os.posix_fadvise

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED and length == 0
        started.append((fd, offset, os.path.samefile(f"/proc/self/fd/{fd}", tmp_path / "big")))
        real(fd, offset, length, advice)

    monkeypatch.setattr(write_behind.os, "posix_fadvise", advise)
    every = write_behind.WRITEBACK_EVERY
    monkeypatch.setattr(write_behind, "DROP_AFTER", every)
    piece = bytes(every // 4)
    fd = os.open(tmp_path / "big", os.O_RDWR | os.O_CREAT, 0o600)
    before = _open_under(tmp_path)
    wb = WriteBehind()
    try:
        for i in range(10):  # 2.5 x WRITEBACK_EVERY
            wb.write("k", fd, piece, i * len(piece), ("big",))
        header = ArchiveHeader(name=b"/big", size=10 * len(piece), mode=0o600, uid=os.geteuid(), gid=os.getegid())
        wb.finish_file("k", fd, header, 10 * len(piece), ("big",))
        wb.done(wait=True)
    finally:
        wb.close()
    # Started at 0 and every; 0 dropped once 2 x every was written; 2 x every started at the
    # file's end; the others dropped at close.
    assert [(offset, same) for _fd, offset, same in started] == [
        (0, True), (every, True), (0, True), (2 * every, True), (every, True), (2 * every, True)]
    assert all(f != fd for f, _o, _s in started)  # duplicates: the file's own closes on its schedule
    assert _open_under(tmp_path) == before - 1  # the file's closed, every duplicate too
    assert (tmp_path / "big").stat().st_size == 10 * len(piece)


def test_the_file_system_is_written_out_once_per_few_megabytes_of_events(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The flusher calls syncfs on its own descriptor of the target's file system once each
    time another FLUSH_EVERY bytes were handled, from its own thread, and nothing after close."""
    calls: list[tuple[bool, str]] = []
    done = threading.Semaphore(0)

    def syncfs(fd: int) -> int:
        calls.append((os.path.samefile(f"/proc/self/fd/{fd}", tmp_path), threading.current_thread().name))
        done.release()
        return 0

    monkeypatch.setattr(write_behind, "_syncfs", syncfs)
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    before = _open_under(tmp_path)
    flusher = write_behind.Flusher(root, every=1000)
    os.close(root)  # the flusher keeps a descriptor of its own
    try:
        flusher.wrote(999)
        flusher.wrote(1)  # the threshold: one write-out
        assert done.acquire(timeout=10)
        flusher.wrote(400)
        flusher.wrote(599)  # not yet
        flusher.wrote(1)
        assert done.acquire(timeout=10)
    finally:
        flusher.close()
    flusher.close()  # idempotent
    assert calls == [(True, "pv-flush"), (True, "pv-flush")] and flusher.flushes == 2
    assert _open_under(tmp_path) == before - 1  # its duplicate closed, and ours
    assert not [t for t in threading.enumerate() if t.name == "pv-flush"]


def test_a_restore_writes_out_its_file_system_as_it_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore's flusher is fed the events handled and is gone when the restore returns."""
    calls: list[str] = []

    def syncfs(fd: int) -> int:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return 0

    monkeypatch.setattr(write_behind, "_syncfs", syncfs)
    monkeypatch.setattr(write_behind, "FLUSH_EVERY", 64 << 10)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(os.urandom(50_000))
    out = backup_and_restore(src, tmp_path)
    assert calls and set(calls) == {str(out)}
    assert not [t for t in threading.enumerate() if t.name == "pv-flush"]
    assert snapshot(out) == snapshot(src)
