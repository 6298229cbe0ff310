"""The restore and retrieve job: stored versions back into files, verified, never outside the target.

Versions are chosen and their reads planned in the catalog (:mod:`.restore_plan`); their
superblocks are read volume by volume in position order by the first stage of a DataPipe
(:class:`BlockReader`), a scan process verifies every checksum, decrypts and decompresses
only the wanted objects and reports damage precisely (:mod:`.scan`), and the tail writes
them (:class:`~pipevault.mover.object_writer.ObjectWriter`). Objects that cannot be
restored intact are removed and named, and the job then raises :class:`RestoreIncomplete`
after restoring everything else.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pipevault.errors import PipevaultError
from pipevault.events import ItemCounter, Reporter
from pipevault.media.errors import BadBlock, EndOfData, MediaCorrupt, MediaIOError
from pipevault.mover import scan
from pipevault.mover.errors import (
    RestoreIncomplete,
)
from pipevault.mover.keys import key_path
from pipevault.mover.object_writer import SMALL_RESTORE, ObjectWriter
from pipevault.mover.paths import TargetTree, check_filespace
from pipevault.mover.restore_plan import (
    Key,
    RestoreOptions,
    link_primaries,
    locations_of,
    plan_with_sources,
    select_versions,
)
from pipevault.mover.scan import ScanStage
from pipevault.mover.site import Site
from pipevault.mover.walk import from_text
from pipevault.mover.write_behind import Outcome
from pipevault.pipe import Pipe, StageContext, StageSpec, bulk_gc, preload_process_modules

__all__ = ["BlockReader", "Key", "RestoreOptions", "RestoreResult", "RestoreSink", "checked", "locations_of",
           "run_restore", "select_versions", "sink_stages"]

# Superblocks (256 KiB) on the way in, events with whole 1 MiB chunks of plaintext on the way out.
BLOCK_BUFFER = (1 << 20) + (64 << 10)
# Two stages allocate (read, scan) and each may hold half: enough for the reader to stay
# ahead of the scanner while the writer holds buffers behind its writes (32 made both wait).
RESTORE_BUFFERS = 64
HELD_BUFFERS = 4  # EVENTS buffers the restore keeps while their large-file writes run behind
# The reader waits this long at the last block its active objects can reach for the writer
# to finish them (the blocks in flight are decoded and written well within it), then reads
# on for AHEAD_AFTER_WAIT blocks before it waits again (another session's blocks between).
WAIT_DONE_S = 0.5
AHEAD_AFTER_WAIT = 32
_NO_END = 1 << 62  # an object without an estimated last block: read on while it is unfinished


@dataclass
class RestoreResult:
    """What a restore did; ``failed`` names every object not restored intact, with why."""

    restored: int
    bytes: int
    elapsed_s: float
    failed: list[tuple[str, str]] = field(default_factory=list)
    verified_only: bool = False
    blocks_read: int = 0
    media_problems: list[str] = field(default_factory=list)
    stages: tuple[Any, ...] = ()  # each stage's figures (StageFigures), where the time went
    bottleneck: str | None = None
    pipe_s: float = 0.0  # of elapsed_s, the pipe's: the rest is planning before it and closing after


# -- pipe modules ------------------------------------------------------------------------------


class BlockReader:
    """First stage: superblocks in position order, skipping what no wanted object needs.

    For each volume it starts at the first block of the first wanted object there and reads
    on while any object that started at or before the position is unfinished; once all are
    (the tail marks them in ``done``), it jumps to the next wanted object's first block. The
    tail's view lags by the blocks in flight, so at the last block the active objects can
    reach (``ends``, estimated by the plan) it sends the scan an empty buffer (send on what you
    hold) and waits for the tail to finish them before reading on.
    """

    def __init__(self, site: Site, starts: list[tuple[str, list[tuple[int, Key]]]], done: set[Key],
                 ends: dict[tuple[str, Key], int] | None = None) -> None:
        self.site, self.starts, self.done, self.ends = site, starts, done, ends or {}

    def run(self, ctx: StageContext) -> tuple[int, list[str]]:
        """Returns the blocks read and what could not be read. An unreadable block is left
        out: the scanner then reports exactly which objects lost bytes."""
        blocks = 0
        problems: list[str] = []
        for name, starts in self.starts:
            try:
                volume = self.site.open_volume(name)
            except PipevaultError as exc:
                problems.append(f"volume {name}: {exc.message}")
                continue
            try:
                blocks += self._volume(ctx, volume, starts, problems)
            finally:
                volume.close()
        return blocks, problems

    def _volume(self, ctx: StageContext, volume: Any, starts: list[tuple[int, Key]], problems: list[str]) -> int:
        blocks, j, addr = 0, 0, starts[0][0]
        active: deque[Key] = deque()  # objects started at or before addr, oldest first
        horizon = -1  # the last block the active objects can reach (see restore_plan.last_blocks)
        while True:
            while j < len(starts) and starts[j][0] <= addr:
                key = starts[j][1]
                active.append(key)
                horizon = max(horizon, self.ends.get((volume.name, key), _NO_END))
                j += 1
            # Objects end roughly in the order they start: dropping finished ones from the
            # front until one is unfinished answers "is any unfinished" without a full pass.
            while active and active[0] in self.done:
                active.popleft()
            if active and addr > horizon:
                # Every block the active objects need is on its way: wait for the writer to
                # finish them rather than read on into blocks no one wants. An empty buffer
                # first tells the scan to send on what it holds (see ScanStage.run).
                flush = ctx.alloc_buf()
                flush.length = 0
                ctx.send_buf(flush)
                if self._wait_done(active):
                    continue
                horizon = addr + AHEAD_AFTER_WAIT  # not done in time: the estimate was short
            if not active:
                if j == len(starts):
                    return blocks
                addr = max(addr, starts[j][0])
                continue
            buf = ctx.alloc_buf()
            try:
                buf.length = volume.read_into(addr, buf.data)  # straight into the pool buffer
            except EndOfData:
                ctx.free_buf(buf)
                return blocks
            except (MediaCorrupt, MediaIOError, BadBlock) as exc:
                ctx.free_buf(buf)
                problems.append(f"volume {volume.name} block {addr}: {exc.message}")
                addr += 1
                continue
            ctx.send_buf(buf)
            blocks += 1
            addr += 1

    def _wait_done(self, active: deque[Key]) -> bool:
        """Wait up to WAIT_DONE_S for every object in ``active`` to be done; whether they are.
        Without a DoneSet (a plain set: nothing signals), only checks."""
        changed = getattr(self.done, "changed", None)
        deadline = time.monotonic() + WAIT_DONE_S
        while True:
            if changed is not None:
                changed.clear()  # before checking: an add after the check sets it again
            if all(k in self.done for k in active):
                return True
            left = deadline - time.monotonic()
            if changed is None or left <= 0:
                return False
            changed.wait(left)


class RestoreSink:
    """Tail: writes out the wanted objects from the scan stage's events."""

    def __init__(self, writer: ObjectWriter) -> None:
        self.writer = writer

    def run(self, ctx: StageContext) -> None:
        # Buffers whose data a large file's writes (behind, in another thread) still read.
        held: deque[tuple[Any, Future[Outcome]]] = deque()
        try:
            while (buf := ctx.receive_buf()) is not None:
                writes = self.writer.feed(buf.view)
                if writes is None:
                    ctx.free_buf(buf)
                else:
                    held.append((buf, writes))
                while held and (len(held) > HELD_BUFFERS or held[0][1].done()):
                    done, writes = held.popleft()
                    writes.result()
                    ctx.free_buf(done)
            self.writer.finish()
        finally:
            self.writer.close_writes()  # after a failure too: no write reads a freed buffer
            for done, _writes in held:
                ctx.free_buf(done)


def sink_stages(writer: ObjectWriter) -> list[StageSpec]:
    """The stages after those delivering superblocks: scan (a process: parsing and decoding
    run beside the writing) and the writer's sink."""
    # Decoding large compressed chunks in a parallel stage after the scan (format's ``defer``)
    # was measured (docs/benchmarks.md, backup, session 5): on two cores it cost more, another
    # allocator and another copy, than it took off the scan process.
    wanted = list(writer.by_index) if len(writer.by_index) == len(writer.wanted) else None
    scan = functools.partial(ScanStage, writer.key, {k[0] for k in writer.wanted}, wanted, SMALL_RESTORE)
    return [StageSpec("scan", scan, mode="process", allocates=True),
            StageSpec("restore", functools.partial(RestoreSink, writer))]


@bulk_gc()
def run_restore(site: Site, opts: RestoreOptions, reporter: Reporter | None = None) -> RestoreResult:
    """Restore (or with ``verify_only`` check) the chosen versions.

    Raises:
        NothingMatched: nothing matches.
        KeyMissing, WrongPassphrase: encrypted data and no (or a wrong) key.
        RestoreIncomplete: some objects were not restored intact (all others were); the
            exception's ``details["failed"]`` lists them.
    """
    t0 = time.perf_counter()
    preload_process_modules([scan.__name__])  # the scan stage, imported while we plan
    versions = select_versions(site, opts)
    links = link_primaries(site, versions)
    plan, extra = plan_with_sources(site, versions)
    by_version = {v.version_id: k for k, v in plan.wanted.items()}
    redirect = {by_version[p.version_id]: link for p, link in links.items() if p.version_id in by_version}
    sources = {by_version[v.version_id] for v in extra if v.version_id in by_version}
    asked = len(plan.wanted) - len(sources)
    key = site.key(create=False) if key_path(site.home, site.node).exists() and site.passphrase else None
    target: TargetTree | None = None
    base: dict[str, tuple[str, ...]] = {}
    for v in versions + extra:
        base[v.filespace] = () if opts.to is not None else check_filespace(from_text(v.filespace))
    if not opts.verify_only:
        target = TargetTree(opts.to if opts.to is not None else "/")
    counter = ItemCounter(reporter, asked) if reporter is not None else None
    writer = ObjectWriter(plan.wanted, plan.by_index, key, target, base, reporter, redirect, counter, sources)
    pipe = Pipe([StageSpec("read", functools.partial(BlockReader, site, plan.starts, writer.done, plan.ends)),
                 *sink_stages(writer)],
                buffer_size=BLOCK_BUFFER, max_buffers=RESTORE_BUFFERS, reporter=counter,
                total_bytes=plan.stored,
                job="verify" if opts.verify_only else "restore")
    try:
        result = pipe.run()
    finally:
        writer.close()  # after a failure too: no writer thread outlives the job
        if target is not None:
            writer.drop_scratch()
            target.close()
    failed = sorted((plan.wanted[k].path, why) for k, why in writer.failed.items())
    blocks, problems = result.results["read"][0]
    out = RestoreResult(len(writer.restored), writer.bytes, time.perf_counter() - t0, failed,
                        opts.verify_only, blocks, problems, tuple(s.figures() for s in result.status.stages),
                        result.status.bottleneck(result.elapsed_s), result.elapsed_s)
    return checked(out, asked)


def checked(out: RestoreResult, wanted: int) -> RestoreResult:
    """``out`` if every object was restored intact.

    Raises:
        RestoreIncomplete: naming what was not (with ``out`` as its ``result``).
    """
    if out.failed:
        failed = out.failed
        err = RestoreIncomplete(f"{len(failed)} of {wanted} objects were not restored intact: "
                                + "; ".join(f"{p}: {why}" for p, why in failed[:10])
                                + (" ..." if len(failed) > 10 else ""), failed=failed)
        err.result = out  # type: ignore[attr-defined]
        raise err
    return out


