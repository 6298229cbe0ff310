"""``pipevault pipe``: run an ad-hoc DataPipe, and list the pipes running on this machine.

Stage specifications for ``--stage`` (repeatable, in order between reader and writer)::

    zstd[-LEVEL]   zstd compression (default level 1)    unzstd   zstd decompression
    lz4            lz4 compression                       unlz4    lz4 decompression
    encrypt        AES-256-GCM (needs --key-file)        decrypt  AES-256-GCM decryption
    hash           xxh3-128 of the stream                pass     hand the buffer on

Append ``:N`` for N parallel instances (compressors and encrypt) and ``@process`` to run the
stage as processes instead of threads: ``zstd-3:2@process``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from pipevault.cli._app import app, cli
from pipevault.cli._render import reporter_for, stage_table, summary_line
from pipevault.config import parse_size
from pipevault.errors import UsageError
from pipevault.events import JobFinished
from pipevault.pipe import Pipe, StageSpec
from pipevault.pipe._names import list_segments
from pipevault.pipe._pool import BufferPool
from pipevault.pipe._status import read_status
from pipevault.pipe.errors import PipeNotFound
from pipevault.pipe.modules import (
    AesGcmDecrypt,
    AesGcmEncrypt,
    Discard,
    FileReader,
    FileWriter,
    Lz4Compress,
    Lz4Decompress,
    Passthrough,
    Xxh3Hasher,
    ZstdCompress,
    ZstdDecompress,
)

_SPEC = re.compile(r"^(?P<name>[a-z0-9]+)(?:-(?P<level>-?\d+))?(?::(?P<n>\d+))?(?P<proc>@process)?$")
_PARALLEL = {"zstd", "lz4", "encrypt"}


def read_key(path: str | None) -> bytes:
    """A 32-byte AES key from a file of 32 raw bytes or 64 hex digits.

    Raises:
        UsageError: no file given, or its content is not such a key.
    """
    if path is None:
        raise UsageError("encrypt and decrypt stages need --key-file")
    raw = Path(path).read_bytes()
    text = raw.strip()
    if len(text) == 64 and all(c in b"0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text.decode())
    if len(raw) == 32:
        return raw
    raise UsageError(f"{path} holds neither 32 raw bytes nor 64 hex digits")


def parse_stage(spec: str, key_file: str | None) -> StageSpec:
    """Turn ``zstd-3:2@process`` into a StageSpec.

    Raises:
        UsageError: unknown stage, or instances where the stage cannot run in parallel.
    """
    m = _SPEC.match(spec)
    if not m:
        raise UsageError(f"bad stage {spec!r}", hint="Write NAME[-LEVEL][:N][@process], e.g. zstd-3:2")
    name, level = m.group("name"), m.group("level")
    instances = int(m.group("n") or 1)
    mode = "process" if m.group("proc") else "thread"
    if instances > 1 and name not in _PARALLEL:
        raise UsageError(f"stage {name} keeps state across buffers and runs as one instance only")
    factory: Any
    allocates = True
    if name == "zstd":
        factory = functools.partial(ZstdCompress, int(level or 1))
    elif name == "lz4":
        factory = Lz4Compress
    elif name == "unzstd":
        factory = ZstdDecompress
    elif name == "unlz4":
        factory = Lz4Decompress
    elif name == "encrypt":
        factory = functools.partial(AesGcmEncrypt, read_key(key_file))
    elif name == "decrypt":
        factory = functools.partial(AesGcmDecrypt, read_key(key_file))
    elif name in ("hash", "pass"):
        factory, allocates = (Xxh3Hasher if name == "hash" else Passthrough), False
    else:
        raise UsageError(f"unknown stage {name!r}",
                         hint="Use zstd, unzstd, lz4, unlz4, encrypt, decrypt, hash or pass.")
    return StageSpec(spec, factory, instances=instances, allocates=allocates, mode=mode)


@cli.group("pipe")
def pipe_group() -> None:
    """Run ad-hoc DataPipes and look at running ones."""


@pipe_group.command("run")
@click.option("--input", "input_", required=True, metavar="PATH", help="File to read ('-' for stdin).")
@click.option("--output", default=None, metavar="PATH", help="File to write ('-' for stdout); "
              "default: discard.")
@click.option("--stage", "stages", multiple=True, metavar="SPEC", help="Stage, repeatable (see above).")
@click.option("--buffer-size", default=None, help="Buffer size (64K-16M).")
@click.option("--max-buffers", type=int, default=None, help="Buffers in the pool.")
@click.option("--key-file", default=None, help="AES-256 key: 32 raw bytes or 64 hex digits.")
@click.option("--sync", is_flag=True, help="fsync the output before reporting success.")
@click.pass_context
def pipe_run(ctx: click.Context, input_: str, output: str | None, stages: tuple[str, ...],
             buffer_size: str | None, max_buffers: int | None, key_file: str | None, sync: bool) -> None:
    """Read INPUT, run it through the stages, write OUTPUT; show the per-stage figures.

    \b
    Examples:
      pipevault pipe run --input disk.img --stage zstd:2 --output disk.img.zst
      pipevault pipe run --input disk.img.zst --stage unzstd --stage hash
    """
    settings = app(ctx).settings
    size = parse_size(buffer_size) if buffer_size else settings["buffer_size"]
    count = max_buffers or settings["max_buffers"]
    specs = [StageSpec("read", functools.partial(FileReader, input_))]
    specs += [parse_stage(s, key_file) for s in stages]
    if output is None:
        specs.append(StageSpec("discard", Discard))
    else:
        specs.append(StageSpec("write", functools.partial(FileWriter, output, sync)))
    total = os.path.getsize(input_) if input_ != "-" and os.path.isfile(input_) else None
    json_mode = app(ctx).json
    console = Console(stderr=output == "-")
    reporter = reporter_for(json_mode, console, "pipe", total)
    pipe = Pipe(specs, buffer_size=size, max_buffers=count, reporter=reporter, total_bytes=total)
    if json_mode:
        result = pipe.run()
    else:
        with reporter:  # type: ignore[union-attr]
            result = pipe.run()
    results = {name: vals for name, vals in result.results.items() if any(v is not None for v in vals)}
    if json_mode:
        done = JobFinished("pipe", "completed", result.bytes_read, round(result.elapsed_s, 4),
                           stages=tuple(s.figures() for s in result.status.stages),
                           extra={"results": results,
                                  "bottleneck": result.status.bottleneck(result.elapsed_s)})
        click.echo(json.dumps(done.to_dict(), default=str))
        return
    console.print(stage_table(tuple(s.figures() for s in result.status.stages), result.elapsed_s,
                              result.status.bottleneck(result.elapsed_s)))
    console.print(summary_line("read", result.bytes_read, result.elapsed_s))
    for name, vals in results.items():
        if name.startswith("hash"):
            console.print(f"xxh3-128 of the stream at {name}: {vals[0]}")


@pipe_group.command("list")
@click.pass_context
def pipe_list(ctx: click.Context) -> None:
    """List the pipes running on this machine with their per-stage figures."""
    json_mode = app(ctx).json
    console = Console()
    for name in list_segments():
        try:
            pool = BufferPool.attach(name, lambda: 0.0, status_only=True)
        except PipeNotFound:
            continue
        try:
            status = read_status(pool)
        finally:
            pool.close()
        if json_mode:
            click.echo(json.dumps({"pipe": name, "state": status.state,
                                   "stages": [s.figures().__dict__ for s in status.stages]}))
        else:
            console.print(f"[bold]{name}[/] {status.state}")
            console.print(stage_table(tuple(s.figures() for s in status.stages), 0.0, None))
