"""``pipevault bench backup``: backup and full restore of a generated tree, against
``tar | zstd -1 -T0`` and, when installed, restic and borg, in the same run.

The tree (about 2 GiB; a tenth with ``--quick``): 20,000 small text files, 200 medium
files, one 400 MiB random file, one 300 MiB log-like file and one 512 MiB sparse file.
Every figure is timed up to a final ``sync`` (restic and borg fsync their writes), and CPU
seconds include child processes. Each backup reads a tree just read once
(:func:`~pipevault.mover.bench_tools.warm`), and every timed run starts on free memory the
virtual machine's host has supplied (:func:`~pipevault.mover.bench_tools.warm_memory`).

Every tool runs ``ROUNDS`` times (one round with ``--quick``), in an order rotated each
round, so that no tool always runs first after the tree is made or right after another
given tool; each figure is the median of its rounds (``median_low``: a round's own figure),
and the notes list every round's. One round each used to decide the figures alone, and on
this virtual machine the same backup took 1.38 to 2.18 s from run to run: its DAMON reclaim
(``kdamond``) pages out cache idle for 60 s, so by the time the first tool runs much of the
fresh tree has gone and comes back from the disk, during that tool's timed runs too
(docs/benchmarks.md, session 13). Cases:

- ``backup``: MB/s of source data; ratio ours / tar|zstd. Notes carry each tool's MB/s,
  output size and CPU seconds, and where our time went in our median round: each stage's
  waits and CPU seconds, and the phases of the job (before the pipe, the pipe, the sync).
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
import os
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

from pipevault.events import BenchResult
from pipevault.mover.bench_tools import Round, available

MB = 1e6
ROUNDS = 3  # rounds of every tool (one with --quick); each figure is the median
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

def _logical_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != ".complete")


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
        with contextlib.suppress(OSError):  # still busy when detached lazily: the kernel frees it
            mnt.rmdir()


def run(quick: bool, workdir: Path, cases: tuple[str, ...] | None = None,
        rounds: int | None = None) -> Iterator[BenchResult]:
    """Back up and restore the generated tree with every tool, ``rounds`` times (default
    ``ROUNDS``, one with ``quick``); yields the two cases."""
    scale = 0.1 if quick else 1.0
    fresh = not (workdir / "tree" / ".complete").exists()
    tree = make_tree(workdir / "tree", scale)
    if fresh:
        settle(SETTLE_S * scale)
    with scratch_fs(workdir, 2 if quick else 8) as (scratch, kind):
        runs = run_rounds(available(), tree, scratch, rounds or (1 if quick else ROUNDS))
    yield from results(runs, _logical_size(tree), kind, cases)


def settle(seconds: float) -> None:
    """Sync, then wait ``seconds`` before the first tool runs, after generating the tree.

    The gigabyte just written slows this virtual machine for about half a minute after the
    guest's own ``sync`` returns: the tool that ran first paid for it. Measured with our
    backup as the first tool, three runs in a row: 179.8, 203.6 and 220.3 MB/s at once
    (every stage spending 20-40 % more CPU seconds), 249.2 and 266.7 MB/s after 60 s. Waiting
    is not the whole cure: by then the guest's reclaim has paged much of the tree out again
    (see the module's notes), which the rotation of the rounds spreads over the tools.
    """
    os.sync()
    time.sleep(seconds)


def rotation(names: list[str], index: int) -> list[str]:
    """The order of the tools in round ``index``: each round starts one tool further on."""
    k = index % len(names) if names else 0
    return names[k:] + names[:k]


def run_rounds(tools: dict[str, Callable[[Path, Path], Round]], tree: Path, workdir: Path,
               rounds: int) -> dict[str, list[Round]]:
    """Every tool's rounds, by tool name (in the order of ``tools``)."""
    runs: dict[str, list[Round]] = {name: [] for name in tools}
    for index in range(rounds):
        for name in rotation(list(tools), index):
            runs[name].append(tools[name](tree, workdir))
    return runs


def median_round(rounds: list[Round], op: str) -> Round:
    """The round whose ``op`` (backup or restore) took the median time (the lower of the two
    middle ones when even)."""
    seconds: Callable[[Round], float] = attrgetter(f"{op}_s")
    middle = statistics.median_low(seconds(r) for r in rounds)
    return next(r for r in rounds if seconds(r) == middle)


def figures_of(rounds: list[Round], data: int) -> dict[str, Any]:
    """One tool's figures: MB/s and CPU seconds of its median backup and median restore, the
    median output, and every round's MB/s."""
    b, r = median_round(rounds, "backup"), median_round(rounds, "restore")
    return {"backup_mb_s": round(data / b.backup_s / MB, 1), "backup_cpu_s": round(b.backup_cpu_s, 2),
            "output_mb": round(statistics.median_low(x.output for x in rounds) / MB, 1),
            "restore_mb_s": round(data / r.restore_s / MB, 1), "restore_cpu_s": round(r.restore_cpu_s, 2),
            "rounds_backup_mb_s": [round(data / x.backup_s / MB, 1) for x in rounds],
            "rounds_restore_mb_s": [round(data / x.restore_s / MB, 1) for x in rounds]}


def results(runs: dict[str, list[Round]], data: int, scratch_kind: str,
            cases: tuple[str, ...] | None) -> Iterator[BenchResult]:
    """The two cases from every tool's rounds."""
    notes: dict[str, Any] = {"data_mb": round(data / MB, 1), "scratch_fs": scratch_kind,
                             "rounds": len(runs["pipevault"]), "order": "rotated each round",
                             **{name: figures_of(rounds, data) for name, rounds in runs.items()}}
    for op in ("backup", "restore"):
        if cases and op not in cases:
            continue
        ours = median_round(runs["pipevault"], op).notes.get(op, {})
        extra = {**notes, "pipevault_stages": ours.get("stages"), "pipevault_phases": ours.get("phases"),
                 "bottleneck": ours.get("bottleneck")}
        yield BenchResult("backup", op, notes["pipevault"][f"{op}_mb_s"], notes["tar|zstd"][f"{op}_mb_s"],
                          "tar -cf - | zstd -1 -T0", notes=extra)
