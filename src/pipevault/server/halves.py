"""What the server runs for a remote pipe half: named heads (pulls) and tails (pushes).

A client's Extend_Pipe names a module; the server looks it up here and builds its half of
the pipe: the stages after its pseudo-head (a push) or before its pseudo-tail (a pull).
Every path a client names is resolved inside that node's own area
(``<server home>/nodes/<node>/``), so a node can reach only its own data.

Other packages plug in with :func:`register` (e.g. the mover registers a tail that writes
a backup to media and reports durable offsets through the :class:`Checkpoint`)::

    def build(req: HalfRequest) -> Half:
        ...
    register("push", "store", build)

Built in: push ``file`` (write a file, durable checkpoints every ``sync_bytes``, resumable)
and ``discard``; pull ``file`` (read a file from ``offset``) and ``zeros`` (``bytes`` of
generated data, for benchmarks).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pipevault.config import Settings
from pipevault.pipe import PipeResult, StageContext, StageSpec
from pipevault.pipe.modules import Discard, FileReader
from pipevault.pipe.net.checkpoint import Checkpoint
from pipevault.server.errors import AccessDenied, ServerError, UnknownModule

SYNC_BYTES = 8 << 20


@dataclass(frozen=True)
class HalfRequest:
    """What a builder gets: the authenticated node, its own area, the client's parameters,
    and the settings of the site (pools, catalog) the server owns, if it owns one."""

    node: str
    root: Path
    params: dict[str, Any]
    resume: bool
    pipe: str
    settings: Settings | None = None

    def path(self, key: str = "path") -> Path:
        """The parameter ``key`` as a path inside the node's area.

        Raises:
            AccessDenied: absolute, escaping with ``..`` or through a symlink, or missing.
        """
        raw = self.params.get(key)
        if not isinstance(raw, str) or not raw or raw.startswith("/") or "\0" in raw:
            raise AccessDenied(f"node {self.node}: {key}={raw!r} is not a relative path")
        root = self.root.resolve()
        target = (root / raw).resolve()
        if target == root or root not in target.parents:
            raise AccessDenied(f"node {self.node}: {raw!r} leads outside its own area")
        return target


@dataclass
class Half:
    """The server's half: its stages, an optional checkpoint, and what to do at the end.

    ``on_success`` runs after the pipe completed and before the client hears DONE; what it
    returns is added to the DONE payload (``on_result``, when given, runs instead and also
    gets the pipe's result). ``on_failure`` runs after a failure.
    """

    stages: list[StageSpec]
    checkpoint: Checkpoint | None = None
    resume_from: int = 0
    on_success: Callable[[], dict[str, Any]] = field(default=dict)
    on_failure: Callable[[], None] = field(default=lambda: None)
    on_result: Callable[[PipeResult], dict[str, Any]] | None = None

    def succeeded(self, result: PipeResult) -> dict[str, Any]:
        """Run the success hook; what it returns goes into the DONE payload."""
        return self.on_result(result) if self.on_result is not None else self.on_success()


Builder = Callable[[HalfRequest], Half]
Operation = Callable[[HalfRequest], dict[str, Any]]
_BUILDERS: dict[tuple[str, str], Builder] = {}
_OPERATIONS: dict[str, Operation] = {}


def register_operation(op: str, handler: Operation) -> None:
    """Offer control request ``op`` to nodes: ``handler`` gets the request's ``params`` in a
    :class:`HalfRequest` of the authenticated node and returns the reply object."""
    _OPERATIONS[op] = handler


def operation(op: str) -> Operation | None:
    """The handler of control request ``op``, if one was registered."""
    return _OPERATIONS.get(op)


def register(direction: str, name: str, builder: Builder) -> None:
    """Offer module ``name`` for ``direction`` "push" (a tail) or "pull" (a head)."""
    if direction not in ("push", "pull"):
        raise ValueError(f"direction must be push or pull, not {direction!r}")
    _BUILDERS[(direction, name)] = builder


def build(direction: str, name: str, req: HalfRequest) -> Half:
    """The half for ``name``.

    Raises:
        UnknownModule: no such module for that direction.
        AccessDenied, ServerError: the builder refused the parameters.
    """
    builder = _BUILDERS.get((direction, name))
    if builder is None:
        offered = ", ".join(sorted(n for d, n in _BUILDERS if d == direction))
        raise UnknownModule(f"no {direction} module {name!r} on this server (offered: {offered})")
    return builder(req)


class DurableFileWriter:
    """Tail: appends the stream to ``path`` from ``start``, fsyncing every ``sync_bytes`` and
    recording each synced offset in ``checkpoint``. Result: bytes written by this run."""

    def __init__(self, path: Path, checkpoint: Checkpoint, start: int, sync_bytes: int) -> None:
        self.path, self.checkpoint, self.start, self.sync_bytes = path, checkpoint, start, sync_bytes

    def run(self, ctx: StageContext) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, self.start)  # drop whatever followed the last durable point
            os.lseek(fd, self.start, os.SEEK_SET)
            offset, unsynced = self.start, 0
            while (buf := ctx.receive_buf()) is not None:
                view = buf.view
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done:])
                del view
                ctx.free_buf(buf)
                offset += done
                unsynced += done
                if unsynced >= self.sync_bytes:
                    os.fsync(fd)
                    self.checkpoint.durable(offset)
                    unsynced = 0
            os.fsync(fd)
            self.checkpoint.durable(offset)
            return offset - self.start
        finally:
            os.close(fd)


def _push_file(req: HalfRequest) -> Half:
    final = req.path()
    final.parent.mkdir(parents=True, exist_ok=True)
    partial_path = final.with_name(final.name + ".partial")
    ckpt_path = final.with_name(final.name + ".ckpt")
    start = 0
    if req.resume:
        record = Checkpoint.load(ckpt_path)
        if record is not None and partial_path.exists():
            start = min(int(record["durable"]), partial_path.stat().st_size)
    ckpt = Checkpoint(ckpt_path, start, pipe=req.pipe, node=req.node)
    sync = int(req.params.get("sync_bytes", SYNC_BYTES))
    if sync <= 0:
        raise ServerError(f"sync_bytes must be positive, not {sync}")

    def success() -> dict[str, Any]:
        os.replace(partial_path, final)
        ckpt_path.unlink(missing_ok=True)
        return {"path": str(final.relative_to(req.root.resolve())), "size": final.stat().st_size}

    return Half([StageSpec("write", partial(DurableFileWriter, partial_path, ckpt, start, sync))],
                ckpt, start, success)


def _push_discard(req: HalfRequest) -> Half:
    return Half([StageSpec("discard", Discard)])


def _pull_file(req: HalfRequest) -> Half:
    path = req.path()
    if not path.is_file():
        raise AccessDenied(f"node {req.node}: no file {req.params.get('path')!r} in its area")
    offset = int(req.params.get("offset", 0))
    return Half([StageSpec("read", partial(FileReader, str(path), offset))], resume_from=offset)


class Zeros:
    """First stage: ``total`` bytes of zeros without touching memory beyond the first fill
    (a benchmark source: the buffers' content is left as it was after the first use)."""

    def __init__(self, total: int) -> None:
        self.total = total

    def run(self, ctx: StageContext) -> int:
        left = self.total
        limit = ctx.fill_limit
        while left > 0:
            buf = ctx.alloc_buf()
            buf.length = min(limit, left)
            left -= buf.length
            ctx.send_buf(buf)
        return self.total


def _pull_zeros(req: HalfRequest) -> Half:
    total = int(req.params.get("bytes", 0))
    if total < 0:
        raise ServerError(f"bytes must be >= 0, not {total}")
    return Half([StageSpec("zeros", partial(Zeros, total))])


register("push", "file", _push_file)
register("push", "discard", _push_discard)
register("pull", "file", _pull_file)
register("pull", "zeros", _pull_zeros)
