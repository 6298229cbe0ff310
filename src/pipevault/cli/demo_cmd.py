"""``pipevault demo``: the main job on embedded defaults, end to end, with figures.

Backs up a tree it generates under ``$PIPEVAULT_HOME/demo`` (small text files, medium files,
a random file, a log file and a sparse file; or the directory the user names) into the
embedded catalog and disk pool, restores it elsewhere, checks that every file came back
identical (content, sparseness, permissions, times) and prints the throughput of each step.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import click
import xxhash
from rich.console import Console

from pipevault.cli._app import app, cli
from pipevault.cli._jobs import job_reporter, open_site
from pipevault.cli._render import stage_table, summary_line
from pipevault.mover import BackupOptions, RestoreOptions, run_backup, run_restore
from pipevault.mover.bench import make_tree
from pipevault.mover.errors import DemoMismatch


def fingerprint(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Per entry: type and permissions, size, mtime and a content digest (link target for links)."""
    out: dict[str, tuple[int, int, int, str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                h = xxhash.xxh3_128()
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                digest = h.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(p)
            else:
                digest = ""
            mtime = st.st_mtime_ns if stat.S_ISREG(st.st_mode) else 0
            out[rel] = (st.st_mode, st.st_size if not stat.S_ISDIR(st.st_mode) else 0, mtime, digest)
    return out


@cli.command("demo")
@click.option("--source", type=click.Path(file_okay=False, exists=True), default=None,
              help="Back up this directory instead of a generated one.")
@click.option("--scale", type=float, default=0.1, show_default=True,
              help="Size of the generated tree (1.0 = the 2 GiB benchmark tree).")
@click.pass_context
def demo_command(ctx: click.Context, source: str | None, scale: float) -> None:
    """Back up a tree, restore it elsewhere, verify it, print the throughput."""
    a = app(ctx)
    console = Console(stderr=a.json)
    work = a.settings.home / "demo"
    tree = Path(source) if source else make_tree(work / f"source-{scale:g}", scale)
    restored = work / "restored"
    shutil.rmtree(restored, ignore_errors=True)
    if not a.json:
        console.print(f"[bold]pipevault demo[/]: back up {tree}, restore into {restored}, verify")
    with open_site(a) as site:
        with job_reporter(a, console, "backup", None) as rep:
            backup = run_backup(site, BackupOptions([str(tree)], full=True,
                                                    instances=a.settings["instances"]), rep)
        with job_reporter(a, console, "restore", None) as rep:
            restore = run_restore(site, RestoreOptions([str(tree)], to=str(restored)), rep)
    before, after = fingerprint(tree), fingerprint(restored)
    wrong = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if wrong:
        raise DemoMismatch(f"{len(wrong)} entries differ after restore, e.g. {wrong[:5]}")
    sparse = tree / "sparse.img"
    if sparse.exists():
        got = os.stat(restored / "sparse.img")
        if got.st_blocks * 512 > os.stat(sparse).st_blocks * 512 + (1 << 20):
            raise DemoMismatch("the sparse file came back without its holes")
    if a.json:
        click.echo(json.dumps({"event": "demo", "objects": backup.sent, "bytes": backup.bytes_read,
                               "stored_bytes": backup.bytes_stored, "backup_s": round(backup.elapsed_s, 3),
                               "restore_s": round(restore.elapsed_s, 3), "verified": True,
                               "entries_compared": len(before)}))
        return
    console.print(stage_table(backup.stages, backup.elapsed_s, backup.bottleneck))
    console.print(summary_line(f"backup: {backup.sent} objects", backup.bytes_read, backup.elapsed_s,
                               stored_mb=round(backup.bytes_stored / 1e6, 1)))
    console.print(summary_line(f"restore: {restore.restored} objects", restore.bytes, restore.elapsed_s))
    console.print(f"verified: {len(before)} entries identical (content, size, mode, mtime, links, holes)")
