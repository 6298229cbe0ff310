"""One tool's round of the backup bench: a backup of the tree and a full restore, each timed
the same way for every tool (:func:`measure`), and the warm-ups every timed run starts on.

A round leaves nothing behind: each tool's repository and restored tree are removed before
the next tool runs, so every tool writes to the same fresh file system.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing.forkserver
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipevault import config
from pipevault.mover.backup import BackupOptions, run_backup
from pipevault.mover.restore import RestoreOptions, run_restore
from pipevault.mover.site import Site

WARM_MEMORY = 3 << 30  # bytes of free memory warmed before each timed run (see warm_memory)


@dataclass
class Round:
    """One tool's timed backup and restore: wall and CPU seconds (children included), the
    backup's output bytes, and for our own tool where the time went (``notes``)."""

    backup_s: float
    backup_cpu_s: float
    restore_s: float
    restore_cpu_s: float
    output: int
    notes: dict[str, Any] = field(default_factory=dict)


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime + _forkserver_cpu()


def _forkserver_cpu() -> float:
    """CPU seconds of the fork server our process modules come from, and of the modules it
    reaped: they are not our children's, so RUSAGE_CHILDREN misses them until it exits."""
    pid = getattr(getattr(multiprocessing.forkserver, "_forkserver", None), "_forkserver_pid", None)
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of stat(5); fields[0] is field 3.
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(fn: Callable[[], Any], synced: list[float] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn`` followed by ``sync`` (whose seconds go to ``synced``),
    started on warm free memory (:func:`warm_memory`)."""
    subprocess.run(["sync"], check=True)
    warm_memory()
    c0, t0 = _cpu(), time.perf_counter()
    fn()
    t1 = time.perf_counter()
    subprocess.run(["sync"], check=True)
    t2 = time.perf_counter()
    if synced is not None:
        synced.append(t2 - t1)
    return t2 - t0, _cpu() - c0


def warm(root: Path) -> int:
    """Read every file under ``root`` once (untimed), so that each tool's backup reads its
    source from the page cache, as the figures say. This machine's cache does not keep the
    tree between runs (a gigabyte of it read at 0.7 GB/s cold, 1.9 GB/s warm), and the tool
    that ran first used to pay for the disk alone. Returns the bytes read."""
    total = 0
    buf = bytearray(1 << 20)
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.is_symlink():
            continue
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total


def warm_memory(limit: int = WARM_MEMORY) -> int:
    """Fault in, then free, up to ``limit`` bytes of anonymous memory (untimed, just before
    each tool's timed run); returns the bytes (at most a quarter of the memory available).

    This virtual machine hands free memory back to its host (free page reporting: 2 MiB
    blocks free for a moment or more), and the host must supply a page again the first time
    it is written: writing 735 MB into a file took 1.67 s of system time on such memory and
    0.22 s on memory freed a second before (``dd``, then ``sync``, on the scratch file
    system). Whichever tool ran first after a quiet spell paid for it: ours, in the order of
    the runs (our restore took 3.3 s after a pause and 2.4 s without; restic's restore, 5.2
    s in the bench, 3.8 s on warm memory). Memory just freed is taken again first, so the
    run that follows writes its page cache and buffers on memory the host has supplied.
    """
    size = min(limit, memory_available() // 4) // mmap.PAGESIZE * mmap.PAGESIZE
    if size <= 0:
        return 0
    # MAP_POPULATE: the kernel faults every page in before mmap returns (no Python loop).
    mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE).close()
    return size


def memory_available() -> int:
    """The kernel's estimate of the bytes that can be allocated without swapping
    (``MemAvailable`` in ``/proc/meminfo``), read now; 0 where it cannot be read. It moves
    from one read to the next as the page cache and reclaim change it."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def _stage_notes(stages: tuple[Any, ...]) -> dict[str, dict[str, float]]:
    """Where our pipe's time went: each stage's waits and CPU seconds."""
    return {s.name: {"wait_in_s": s.wait_input_s, "wait_buf_s": s.wait_alloc_s, "cpu_s": s.cpu_s} for s in stages}


def _phases(result: Any, sync_s: float) -> dict[str, float]:
    """Where our job's wall time went: before the pipe (planning, processes starting), the
    pipe, after it, and the final sync."""
    return {"before_pipe_s": round(result.elapsed_s - result.pipe_s, 3), "pipe_s": round(result.pipe_s, 3),
            "sync_s": round(sync_s, 3)}


def _sh(cmd: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ours(tree: Path, workdir: Path) -> Round:
    """pipevault on embedded defaults in a fresh home: a full backup, then a full restore."""
    home, out = workdir / "pv-home", workdir / "pv-out"
    site = Site.open(config.load(env={"PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent"}))
    done: dict[str, Any] = {}
    synced: list[float] = []

    def backup() -> None:
        done["backup"] = run_backup(site, BackupOptions([str(tree)], instances=2))

    def restore() -> None:
        done["restore"] = run_restore(site, RestoreOptions([str(tree)], to=str(out)))

    try:
        warm(tree)
        backup_s, backup_cpu = measure(backup, synced)
        output = _du(home / "pools")
        restore_s, restore_cpu = measure(restore, synced)
    finally:
        site.close()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    notes = {op: {"stages": _stage_notes(done[op].stages), "phases": _phases(done[op], synced[i]),
                  "bottleneck": done[op].bottleneck} for i, op in enumerate(("backup", "restore"))}
    return Round(backup_s, backup_cpu, restore_s, restore_cpu, output, notes)


def tar_zstd(tree: Path, workdir: Path) -> Round:
    """``tar -cf - | zstd -1 -T0`` into one file, then ``zstd -d | tar -xf -``."""
    tarball, out = workdir / "tree.tar.zst", workdir / "tar-out"
    try:
        warm(tree)
        backup_s, backup_cpu = measure(lambda: _sh(f"tar -C {tree} -cf - . | zstd -q -1 -T0 -o {tarball}"))
        output = tarball.stat().st_size
        out.mkdir()
        restore_s, restore_cpu = measure(lambda: _sh(f"zstd -q -d -c {tarball} | tar -C {out} -xf -"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        tarball.unlink(missing_ok=True)
    return Round(backup_s, backup_cpu, restore_s, restore_cpu, output)


def restic(tree: Path, workdir: Path) -> Round:
    """restic on its defaults into a fresh repository, then ``restic restore latest``."""
    repo, out = workdir / "restic-repo", workdir / "restic-out"
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo), "RESTIC_CACHE_DIR": str(workdir / "rc")}
    try:
        _sh("restic init", env)
        warm(tree)
        backup_s, backup_cpu = measure(lambda: _sh(f"restic backup -q {tree}", env))
        output = _du(repo)
        restore_s, restore_cpu = measure(lambda: _sh(f"restic restore -q latest --target {out}", env))
    finally:
        for path in (repo, out, workdir / "rc"):
            shutil.rmtree(path, ignore_errors=True)
    return Round(backup_s, backup_cpu, restore_s, restore_cpu, output)


def borg(tree: Path, workdir: Path) -> Round:
    """borg with ``--compression zstd,1`` into a fresh repository, then ``borg extract``."""
    repo, out, base = workdir / "borg-repo", workdir / "borg-out", workdir / "borg-base"
    env = {"BORG_PASSPHRASE": "bench", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
           "BORG_BASE_DIR": str(base)}
    try:
        _sh(f"borg init -e repokey {repo}", env)
        warm(tree)
        backup_s, backup_cpu = measure(lambda: _sh(f"borg create --compression zstd,1 {repo}::a {tree}", env))
        output = _du(repo)
        out.mkdir()
        restore_s, restore_cpu = measure(lambda: _sh(f"cd {out} && borg extract {repo}::a", env))
    finally:
        for path in (repo, out, base):
            shutil.rmtree(path, ignore_errors=True)
    return Round(backup_s, backup_cpu, restore_s, restore_cpu, output)


def available() -> dict[str, Callable[[Path, Path], Round]]:
    """The tools this machine has, by the names the bench reports them under."""
    tools: dict[str, Callable[[Path, Path], Round]] = {"pipevault": ours, "tar|zstd": tar_zstd}
    if shutil.which("restic"):
        tools["restic"] = restic
    if shutil.which("borg"):
        tools["borg"] = borg
    return tools
