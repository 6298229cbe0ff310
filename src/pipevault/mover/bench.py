"""``pipevault bench backup``: backup and full restore of a generated tree, against
``tar | zstd -1 -T0`` and, when installed, restic and borg, in the same run.

The tree (about 2 GiB; a tenth with ``--quick``): 20,000 small text files, 200 medium
files, one 400 MiB random file, one 300 MiB log-like file and one 512 MiB sparse file.
Every figure is timed up to a final ``sync`` (restic and borg fsync their writes), and CPU
seconds include child processes. Each backup reads a tree just read once (:func:`warm`), and
every timed run starts on free memory the virtual machine's host has supplied
(:func:`warm_memory`). Cases:

- ``backup``: MB/s of source data; ratio ours / tar|zstd. Notes carry each tool's MB/s,
  output size and CPU seconds, and where our time went: each stage's waits and CPU seconds,
  and the phases of the job (before the pipe, the pipe, the final sync).
- ``restore``: MB/s of restored data; ratio ours / tar|zstd; notes as above.

Every tool writes (repositories, restored trees) to a fresh journaled ext4 file system on a
direct-I/O loop device when the bench runs as root (the notes say ``scratch_fs``). This machine's root
file system is ext4 without a journal, where creating files within minutes of deleting many
scans past each recently deleted inode: 20,000 small files took 0.7 s to create in a fresh
directory and 4 to 11 s right after earlier runs' deletions, so whichever tool ran after
another's clean-up lost seconds to it. A fresh file system gives every tool the same start.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing.forkserver
import os
import random
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipevault import config
from pipevault.events import BenchResult
from pipevault.mover.backup import BackupOptions, run_backup
from pipevault.mover.restore import RestoreOptions, run_restore
from pipevault.mover.site import Site

MB = 1e6
WARM_MEMORY = 3 << 30  # bytes of free memory warmed before each timed run (see warm_memory)
SETTLE_S = 60.0  # seconds a freshly generated tree is left before the first tool (see settle)


def make_tree(root: Path, scale: float = 1.0, seed: int = 7) -> Path:
    """Generate the benchmark tree under ``root`` (reused when already complete)."""
    done = root / ".complete"
    if done.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(4000)]
    small = root / "small"
    for i in range(max(1, int(20_000 * scale))):
        d = small / f"d{i // 500:03d}"
        if i % 500 == 0:
            d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(20, 400)
        (d / f"f{i:05d}.txt").write_bytes(b" ".join(rng.choice(words) for _ in range(n)) + b"\n")
    medium = root / "medium"
    medium.mkdir(parents=True)
    block = rng.randbytes(1 << 20)
    text = b"\n".join(b" ".join(rng.choice(words) for _ in range(12)) for _ in range(40_000))
    for i in range(max(1, int(200 * scale))):
        size = rng.randint(200_000, 2_000_000)
        src = text if i % 2 else block
        (medium / f"m{i:03d}.dat").write_bytes((src * (size // len(src) + 1))[:size])
    with open(root / "random.bin", "wb") as f:
        for _ in range(int(400 * scale)):
            f.write(os.urandom(1 << 20))
    with open(root / "app.log", "wb") as f:
        written, k = 0, 0
        while written < int(300 * scale) << 20:
            line = (b"2026-11-23T02:%02d:%02d.%03d INFO worker-%d request id=%08x path=/api/v1/%s "
                    b"status=%d bytes=%d ms=%d\n" % (k // 60 % 60, k % 60, k % 1000, k % 16, rng.getrandbits(32),
                                                     rng.choice(words), rng.choice((200, 200, 200, 404, 500)),
                                                     rng.randint(0, 99999), rng.randint(0, 999)))
            f.write(line)
            written += len(line)
            k += 1
    with open(root / "sparse.img", "wb") as f:
        size = int(512 * scale) << 20
        f.truncate(size)
        for off in range(0, size, 64 << 20):
            f.seek(off)
            f.write(rng.randbytes(1 << 20))
    done.write_text("ok\n")
    return root


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


def _measure(fn: Callable[[], Any], synced: list[float] | None = None) -> tuple[float, float]:
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
    available = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    size = min(limit, available // 4) // mmap.PAGESIZE * mmap.PAGESIZE
    if size <= 0:
        return 0
    # MAP_POPULATE: the kernel faults every page in before mmap returns (no Python loop).
    mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE).close()
    return size


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def _logical_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != ".complete")


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


@contextlib.contextmanager
def scratch_fs(workdir: Path, size_gib: int) -> Iterator[tuple[Path, str]]:
    """A fresh journaled ext4 file system on a direct-I/O loop device under ``workdir`` (root
    only), or ``workdir`` itself when one cannot be made; yields the directory and what it is.

    Direct I/O: a buffered loop device caches every block twice (its file system's pages and
    the image file's); writing and syncing 1 GB took 5.2 s on it against 1.9 s on the disk's
    own file system, and 2.1 s with direct I/O.
    """
    image, mnt = workdir / "scratch.img", workdir / "scratch"
    device = ""
    mounted = False
    try:
        if os.geteuid() == 0 and shutil.which("mkfs.ext4") and shutil.which("losetup"):
            with open(image, "wb") as f:
                f.truncate(size_gib << 30)
            mnt.mkdir()
            if subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True).returncode == 0:
                made = subprocess.run(["losetup", "--direct-io=on", "-f", "--show", str(image)],
                                      capture_output=True, text=True)
                device = made.stdout.strip() if made.returncode == 0 else ""
            mounted = bool(device) and subprocess.run(["mount", device, str(mnt)],
                                                      capture_output=True).returncode == 0
        if mounted:
            yield mnt, f"fresh ext4 ({size_gib} GiB, journaled) on a direct-I/O loop device"
        else:
            yield workdir, "the work directory's own file system (not root, or no loop device)"
    finally:
        # A process that just exited (a tool's helper) can keep it busy for a moment: then it
        # is detached now and released by the kernel when the last user goes.
        if mounted and subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        if device:
            subprocess.run(["losetup", "-d", device], capture_output=True)
        image.unlink(missing_ok=True)


def run(quick: bool, workdir: Path, cases: tuple[str, ...] | None = None) -> Iterator[BenchResult]:
    """Back up and restore the generated tree with every tool; yields the two cases."""
    scale = 0.1 if quick else 1.0
    fresh = not (workdir / "tree" / ".complete").exists()
    tree = make_tree(workdir / "tree", scale)
    if fresh:
        settle(SETTLE_S * scale)
    with scratch_fs(workdir, 2 if quick else 8) as (scratch, kind):
        yield from _run(tree, scratch, kind, cases)


def settle(seconds: float) -> None:
    """Sync, then wait ``seconds`` before the first tool runs, after generating the tree.

    The gigabyte just written slows this virtual machine for about half a minute after the
    guest's own ``sync`` returns, with no trace in the guest (no I/O, no steal time): the tool
    that ran first paid for it. Measured with our backup as the first tool, three runs in a
    row: 179.8, 203.6 and 220.3 MB/s at once (every stage spending 20-40 % more CPU seconds),
    249.2 and 266.7 MB/s after 60 s.
    """
    os.sync()
    time.sleep(seconds)


def _run(tree: Path, workdir: Path, scratch_kind: str, cases: tuple[str, ...] | None) -> Iterator[BenchResult]:
    data = _logical_size(tree)
    figures: dict[str, dict[str, float]] = {}

    def record(tool: str, op: str, wall: float, cpu: float, size: int | None = None) -> None:
        f = figures.setdefault(tool, {})
        f[f"{op}_mb_s"] = round(data / wall / MB, 1)
        f[f"{op}_cpu_s"] = round(cpu, 2)
        if size is not None:
            f["output_mb"] = round(size / MB, 1)

    # pipevault, embedded defaults in a fresh home
    home = workdir / "pv-home"
    env = {"PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent"}
    site = Site.open(config.load(env=env))
    stages: dict[str, Any] = {}
    try:
        results: dict[str, Any] = {}
        synced: list[float] = []

        def ours_backup() -> None:
            results["backup"] = r = run_backup(site, BackupOptions([str(tree)], instances=2))
            stages["backup"] = _stage_notes(r.stages)
            stages["backup_bottleneck"] = r.bottleneck
        warm(tree)
        wall, cpu = _measure(ours_backup, synced)
        stages["backup_phases"] = _phases(results["backup"], synced[-1])
        record("pipevault", "backup", wall, cpu, _du(home / "pools"))
        out = workdir / "pv-out"

        def ours_restore() -> None:
            results["restore"] = r = run_restore(site, RestoreOptions([str(tree)], to=str(out)))
            stages["restore"] = _stage_notes(r.stages)
            stages["restore_bottleneck"] = r.bottleneck
        wall, cpu = _measure(ours_restore, synced)
        stages["restore_phases"] = _phases(results["restore"], synced[-1])
        record("pipevault", "restore", wall, cpu)
    finally:
        site.close()
    shutil.rmtree(workdir / "pv-out", ignore_errors=True)

    # tar | zstd -1 -T0
    tarball = workdir / "tree.tar.zst"
    warm(tree)
    wall, cpu = _measure(lambda: _sh(f"tar -C {tree} -cf - . | zstd -q -1 -T0 -o {tarball}"))
    record("tar|zstd", "backup", wall, cpu, tarball.stat().st_size)
    tout = workdir / "tar-out"
    tout.mkdir()
    wall, cpu = _measure(lambda: _sh(f"zstd -q -d -c {tarball} | tar -C {tout} -xf -"))
    record("tar|zstd", "restore", wall, cpu)
    shutil.rmtree(tout)
    tarball.unlink()

    if shutil.which("restic"):
        repo = workdir / "restic-repo"
        renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo), "RESTIC_CACHE_DIR": str(workdir / "rc")}
        _sh("restic init", renv)
        warm(tree)
        wall, cpu = _measure(lambda: _sh(f"restic backup -q {tree}", renv))
        record("restic", "backup", wall, cpu, _du(repo))
        rout = workdir / "restic-out"
        wall, cpu = _measure(lambda: _sh(f"restic restore -q latest --target {rout}", renv))
        record("restic", "restore", wall, cpu)
        shutil.rmtree(repo)
        shutil.rmtree(rout)
    if shutil.which("borg"):
        repo = workdir / "borg-repo"
        benv = {"BORG_PASSPHRASE": "bench", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_BASE_DIR": str(workdir / "borg-base")}
        _sh(f"borg init -e repokey {repo}", benv)
        warm(tree)
        wall, cpu = _measure(lambda: _sh(f"borg create --compression zstd,1 {repo}::a {tree}", benv))
        record("borg", "backup", wall, cpu, _du(repo))
        bout = workdir / "borg-out"
        bout.mkdir()
        wall, cpu = _measure(lambda: _sh(f"cd {bout} && borg extract {repo}::a", benv))
        record("borg", "restore", wall, cpu)
        shutil.rmtree(repo)
        shutil.rmtree(bout)

    notes: dict[str, Any] = {"data_mb": round(data / MB, 1), "scratch_fs": scratch_kind, **figures}
    for op in ("backup", "restore"):
        if cases and op not in cases:
            continue
        extra = dict(notes)
        extra["pipevault_stages"] = stages.get(op)
        extra["pipevault_phases"] = stages.get(f"{op}_phases")
        extra["bottleneck"] = stages.get(f"{op}_bottleneck")
        yield BenchResult("backup", op, figures["pipevault"][f"{op}_mb_s"], figures["tar|zstd"][f"{op}_mb_s"],
                          "tar -cf - | zstd -1 -T0", notes=extra)
