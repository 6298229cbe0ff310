"""``pipevault demo``: the main job on embedded defaults, end to end, with figures.

Generates a data set under ``$PIPEVAULT_HOME/demo`` (or uses the file the user names),
sends it through the DataPipe as a backup would (xxh3 -> zstd x2 -> AES-256-GCM x2 -> file),
brings it back (decrypt -> unzstd -> xxh3 -> file), verifies that what came back is what went
in, and prints the throughput and each stage's figures.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import click
from rich.console import Console

from pipevault.cli._app import app, cli
from pipevault.cli._render import reporter_for, stage_table, summary_line
from pipevault.errors import PipevaultError
from pipevault.pipe import Pipe, PipeResult, StageSpec
from pipevault.pipe.bench import make_corpus
from pipevault.pipe.modules import (
    AesGcmDecrypt,
    AesGcmEncrypt,
    FileReader,
    FileWriter,
    Xxh3Hasher,
    ZstdCompress,
    ZstdDecompress,
)

P = functools.partial


class DemoMismatch(PipevaultError):
    """The data that came back differs from the data that went in."""

    code = "demo.mismatch"
    exit_code = 13
    hint = "Please report this with the output of `pipevault demo`."


def _run(console: Console, json_mode: bool, label: str, stages: list[StageSpec], total: int,
         buffer_size: int, max_buffers: int) -> PipeResult:
    reporter = reporter_for(json_mode, console, label, total)
    pipe = Pipe(stages, buffer_size=buffer_size, max_buffers=max_buffers, reporter=reporter,
                total_bytes=total, job=label)
    if json_mode:
        return pipe.run()
    with reporter:  # type: ignore[union-attr]
        result = pipe.run()
    console.print(stage_table(tuple(s.figures() for s in result.status.stages), result.elapsed_s,
                              result.status.bottleneck(result.elapsed_s)))
    return result


@cli.command("demo")
@click.option("--source", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File to use instead of a generated one.")
@click.option("--size", default="512M", help="Size of the generated data (default 512M).")
@click.pass_context
def demo_command(ctx: click.Context, source: str | None, size: str) -> None:
    """Move a data set through the DataPipe and back, verify it, print the figures."""
    from pipevault.config import parse_size

    settings = app(ctx).settings
    json_mode = app(ctx).json
    console = Console()
    work = settings.home / "demo"
    work.mkdir(parents=True, exist_ok=True)
    src = Path(source) if source else make_corpus(work / "demo-input.dat", parse_size(size))
    total = src.stat().st_size
    key = os.urandom(32)
    sealed, back = work / "demo.sealed", work / "demo.restored"
    bs, nb, inst = settings["buffer_size"], settings["max_buffers"], settings["instances"]
    if not json_mode:
        console.print(f"[bold]pipevault demo[/]: {src} ({total / 1e6:.1f} MB) -> {sealed} -> {back}")
    t0 = time.perf_counter()
    out = _run(console, json_mode, "store", [
        StageSpec("read", P(FileReader, str(src))), StageSpec("xxh3", Xxh3Hasher),
        StageSpec("zstd", P(ZstdCompress, 1), instances=inst, allocates=True),
        StageSpec("aes-gcm", P(AesGcmEncrypt, key), instances=inst, allocates=True),
        StageSpec("write", P(FileWriter, str(sealed), True))], total, bs, nb)
    store_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back_res = _run(console, json_mode, "restore", [
        StageSpec("read", P(FileReader, str(sealed))),
        StageSpec("aes-gcm", P(AesGcmDecrypt, key), allocates=True),
        StageSpec("unzstd", ZstdDecompress, allocates=True), StageSpec("xxh3", Xxh3Hasher),
        StageSpec("write", P(FileWriter, str(back), True))], sealed.stat().st_size, bs, nb)
    restore_s = time.perf_counter() - t0
    digest_in, digest_out = out.results["xxh3"][0], back_res.results["xxh3"][0]
    if digest_in != digest_out or back.stat().st_size != total:
        raise DemoMismatch(f"xxh3 {digest_in} went in, {digest_out} came back")
    stored = sealed.stat().st_size
    lines = [summary_line("store (read, hash, zstd-1, AES-256-GCM, write+fsync)", total, store_s,
                          stored_mb=round(stored / 1e6, 1), ratio=round(total / stored, 2)),
             summary_line("restore (read, decrypt, unzstd, hash, write+fsync)", total, restore_s),
             f"verified: xxh3-128 {digest_in} in and out"]
    for p in (sealed, back):
        p.unlink()
    if json_mode:
        import json

        click.echo(json.dumps({"event": "demo", "bytes": total, "stored_bytes": stored,
                               "store_s": round(store_s, 3), "restore_s": round(restore_s, 3),
                               "xxh3": digest_in, "verified": True}))
    else:
        for line in lines:
            console.print(line)
