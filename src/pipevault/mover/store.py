"""Writing one session to a pool and handing on what is durable.

:class:`SessionStore` owns the session's :class:`~pipevault.format.SessionWriter`, appends
each finished superblock to a volume of the pool (moving to the next volume when one is
full), remembers where each superblock went, and hands an object on to be catalogued only
once every superblock holding it is durable: the volume is synced first, then the objects
now wholly on media go to ``on_durable`` (which catalogues them, see
:mod:`pipevault.mover.catalogue`). A job killed at any point therefore leaves no object in
the catalog whose data is not safely on media.

With ``background_sync``, the sync of a durability point on a disk volume runs in a thread
of its own while the store goes on appending: it makes durable what was appended before it
began, and those objects are handed on once it has returned (an fsync of 256 MB stalled the
whole pipe for about half a second). Handing on then lags by up to two intervals, so a job
that counts on its checkpoints (a remote backup resumes from them) syncs in line; so do tape
and optical drives, whose drivers are not shared between threads.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, NamedTuple

from pipevault.format import ArchiveFooter, ArchiveHeader, EncodedChunk, FramedObject, SessionWriter, peek_header
from pipevault.media import Volume
from pipevault.media.errors import VolumeFull
from pipevault.mover.site import Site

SYNC_EVERY = 256 << 20  # bytes between durability points (sync volume, commit catalog batch)
OBJECTS_EVERY = 1000  # objects waiting that call a durability point too (background syncs only)


class Durable(NamedTuple):
    """An object wholly on media: its footer, what the caller attached to it (``ident``),
    ``spans``: for each volume it lies on, in data order, the first superblock there, and
    ``refs``: the indices of the session's other objects whose chunks it repeats (discarded
    duplicates; restoring it alone needs their data too). A named tuple: one is made for
    every object of a backup, in a fifth of a frozen dataclass's time."""

    footer: ArchiveFooter
    ident: Any
    spans: tuple[tuple[str, int], ...]
    refs: tuple[int, ...] = ()


class SessionStore:
    """One session's writer and volumes. Used by one thread (the pipe's store stage).

    Args:
        site: the open site.
        writer: the session writer (its superblocks go to ``pool``).
        pool: destination pool.
        on_durable: called at each durability point, after the sync, with the objects that
            became durable (possibly none); it must have catalogued them when it returns,
            or raise (then the session fails and nothing later is handed on).
        sync_every: stored bytes between durability points (besides the end and full volumes).
        background_sync: sync disk volumes in the background (see the module's notes).
    """

    def __init__(self, site: Site, writer: SessionWriter, pool: str,
                 on_durable: Callable[[list[Durable]], None], sync_every: int = SYNC_EVERY,
                 background_sync: bool = False) -> None:
        self.site = site
        self.sync_every = sync_every
        self.background_sync = background_sync
        self.writer = writer
        self.pool = pool
        self.on_durable = on_durable
        self._stack = ExitStack()
        self._volume: Volume | None = None
        self._full: set[str] = set()
        self.placed: dict[int, tuple[str, int]] = {}  # superblock seq -> (volume, address)
        self._pending: list[tuple[ArchiveFooter, Any, tuple[int, ...]]] = []
        self._since_sync = 0
        self._durable_seq = -1
        self._syncer: ThreadPoolExecutor | None = None
        self._syncing: tuple[Future[None], int] | None = None  # a sync in flight, and the last seq it covers
        self.objects = 0
        self.bytes = 0
        self.volumes_used: list[str] = []

    # -- feeding --------------------------------------------------------------------------

    def begin(self, header: ArchiveHeader, options: dict[str, bytes] | None) -> int:
        """Open an object; returns its index in the session."""
        index = self.writer.begin_object(header)
        if options:
            self.writer.options(options)
        self._drain()
        return index

    def chunk(self, chunk: EncodedChunk) -> None:
        """Pack one encoded chunk of the open object (its bytes are copied)."""
        self.writer.add_chunk(chunk)
        self._drain()

    def end(self, status: int, ident: Any) -> ArchiveFooter:
        """Close the open object; it is handed on with ``ident`` once durable."""
        footer = self.writer.end_object(status)
        self._pending.append((footer, ident, self.writer.object_refs))
        self._drain()
        return footer

    def put_object(self, framed: FramedObject, status: int, ident: Any) -> ArchiveFooter:
        """Write a whole object framed by an encoder (its records are copied before return);
        it is handed on with ``ident`` once durable."""
        footer = self.writer.put_object(framed, status)
        self._pending.append((footer, ident, self.writer.object_refs))
        self._drain()
        return footer

    def session_options(self, items: dict[str, bytes]) -> None:
        """Write an options record for the whole session (no object may be open)."""
        self.writer.options(items)
        self._drain()

    def close(self, status: int) -> None:
        """Write the session footer, make everything durable and catalogue the rest."""
        self.writer.close(status)
        self._drain(force=True)
        self._finish_sync(wait=True)
        self._checkpoint()
        self._stop_syncer()
        self._stack.close()

    def abort(self) -> None:
        """Release the volumes without cataloguing anything more."""
        if self._syncing is not None:
            self._syncing[0].exception()  # waits; its error no longer matters
            self._syncing = None
        self._stop_syncer()
        self._stack.close()

    # -- superblocks -------------------------------------------------------------------------

    def _drain(self, force: bool = False) -> None:
        for block in self.writer.take():
            seq = peek_header(block).seq
            self.placed[seq] = self._append(block)
            self._since_sync += len(block)
        if self._syncing is not None:
            # One sync in flight at most: past two intervals, wait for it (bounds what the
            # catalog lags behind the media).
            self._finish_sync(wait=self._since_sync >= 2 * self.sync_every)
        if force or self._syncing is not None:
            return
        due = self._since_sync >= self.sync_every
        volume = self._volume
        if self.background_sync and volume is not None and volume.capabilities.medium == "disk":
            # Also every OBJECTS_EVERY objects: twenty thousand small files fit one interval,
            # and the catalog stage would insert them all after the last sync, alone.
            if due or len(self._pending) >= OBJECTS_EVERY:
                self._start_sync(volume)
        elif due:
            self._checkpoint()

    def _append(self, block: memoryview) -> tuple[str, int]:
        while True:
            volume = self._current_volume()
            try:
                return volume.name, volume.append(block)
            except VolumeFull:
                # Everything before this block is on the full volume: make it durable there.
                self._finish_sync(wait=True)
                volume.sync()
                self._full.add(volume.name)
                self.site.mark_volume(volume.name, "full")
                self._volume = None

    def _current_volume(self) -> Volume:
        if self._volume is None:
            self._volume = self._stack.enter_context(self.site.writable_volume(self.pool, self._full))
            if self._volume.name not in self.volumes_used:
                self.volumes_used.append(self._volume.name)
        return self._volume

    def _checkpoint(self) -> None:
        """Durability point: sync the volume, then hand on every object now wholly on media."""
        if self._volume is not None:
            self._volume.sync()
        self._since_sync = 0
        self._hand_on(max(self.placed, default=-1))

    def _hand_on(self, durable_seq: int) -> None:
        """Every object whose superblocks are all up to ``durable_seq`` (durable now) goes on."""
        self._durable_seq = durable_seq
        cut = 0
        while cut < len(self._pending) and self._pending[cut][0].last_seq <= self._durable_seq:
            cut += 1  # objects end in order, so the durable ones are a prefix
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        self.on_durable([Durable(footer, ident, self._spans(footer), refs) for footer, ident, refs in ready])
        self.objects += len(ready)
        self.bytes += sum(footer.plain_bytes for footer, _, _ in ready)

    def _start_sync(self, volume: Volume) -> None:
        """Begin a durability point in the background: it covers every superblock placed so far."""
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="pv-sync")
        self._syncing = (self._syncer.submit(volume.sync), max(self.placed, default=-1))
        self._since_sync = 0

    def _finish_sync(self, wait: bool) -> None:
        """Hand on what the sync in flight made durable, once it has returned (or wait for it).

        Raises:
            whatever the volume's sync raised (the session then fails).
        """
        if self._syncing is None or not (wait or self._syncing[0].done()):
            return
        future, seq = self._syncing
        self._syncing = None
        future.result()
        self._hand_on(seq)

    def _stop_syncer(self) -> None:
        if self._syncer is not None:
            self._syncer.shutdown(wait=True)
            self._syncer = None

    def _spans(self, footer: ArchiveFooter) -> tuple[tuple[str, int], ...]:
        """Each volume the object lies on, in data order, with its first superblock there."""
        if footer.first_seq == footer.last_seq:
            return (self.placed[footer.first_seq],)
        spans: dict[str, int] = {}
        for seq in range(footer.first_seq, footer.last_seq + 1):
            vol, addr = self.placed[seq]
            spans[vol] = min(spans.get(vol, addr), addr)
        return tuple(spans.items())
