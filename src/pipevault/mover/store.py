"""Writing one session to a pool and cataloguing what is durable.

:class:`SessionStore` owns the session's :class:`~pipevault.format.SessionWriter`, appends
each finished superblock to a volume of the pool (moving to the next volume when one is
full), remembers where each superblock went, and catalogues an object only once every
superblock holding it is durable: the volume is synced first, then the object's version goes
into the catalog batch, then the batch is committed. A job killed at any point therefore
leaves no object in the catalog whose data is not safely on media.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from pipevault.catalog.writer import BatchWriter, NewVersion, Piece
from pipevault.format import ArchiveFooter, ArchiveHeader, EncodedChunk, SessionWriter, peek_header
from pipevault.media import Volume
from pipevault.media.errors import VolumeFull
from pipevault.mover.site import Site

SYNC_EVERY = 256 << 20  # bytes between durability points (sync volume, commit catalog batch)


@dataclass
class PendingObject:
    """An object whose footer was written but whose last superblock may not be durable yet."""

    header: ArchiveHeader
    footer: ArchiveFooter
    version: dict[str, Any]


class SessionStore:
    """One session's writer, volumes and catalog batch. Used by one thread (the pipe's tail).

    Args:
        site: the open site.
        writer: the session writer (its superblocks go to ``pool``).
        pool: destination pool.
        session_id: the catalog's session row.
        archive: catalogue archive copies instead of backup versions.
    """

    def __init__(self, site: Site, writer: SessionWriter, pool: str, session_id: int,
                 archive: bool = False) -> None:
        self.site = site
        self.writer = writer
        self.pool = pool
        self.session_id = session_id
        self.archive = archive
        self._stack = ExitStack()
        self._volume: Volume | None = None
        self._full: set[str] = set()
        self.placed: dict[int, tuple[str, int]] = {}  # superblock seq -> (volume, address)
        self._pending: list[PendingObject] = []
        self._since_sync = 0
        self._durable_seq = -1
        self._batch = BatchWriter(site.catalog, session_id, batch_size=5000)
        self.objects = 0
        self.bytes = 0
        self.volumes_used: list[str] = []

    # -- feeding --------------------------------------------------------------------------

    def begin(self, header: ArchiveHeader, options: dict[str, bytes] | None) -> int:
        """Open an object; returns its index in the session."""
        index = self.writer.begin_object(header)
        self._open_header = header  # object_index is the writer's (the footer carries it)
        if options:
            self.writer.options(options)
        self._drain()
        return index

    def chunk(self, chunk: EncodedChunk) -> None:
        """Pack one encoded chunk of the open object (its bytes are copied)."""
        self.writer.add_chunk(chunk)
        self._drain()

    def end(self, status: int, version: dict[str, Any]) -> ArchiveFooter:
        """Close the open object; it is catalogued once durable (``version`` = catalog fields)."""
        footer = self.writer.end_object(status)
        self._pending.append(PendingObject(self._open_header, footer, version))
        self._drain()
        return footer

    def close(self, status: int) -> None:
        """Write the session footer, make everything durable and catalogue the rest."""
        self.writer.close(status)
        self._drain(force=True)
        self._checkpoint()
        self._stack.close()

    def abort(self) -> None:
        """Release the volumes without cataloguing anything more."""
        self._stack.close()

    # -- superblocks -------------------------------------------------------------------------

    def _drain(self, force: bool = False) -> None:
        for block in self.writer.take():
            seq = peek_header(block).seq
            self.placed[seq] = self._append(block)
            self._since_sync += len(block)
        if self._since_sync >= SYNC_EVERY and not force:
            self._checkpoint()

    def _append(self, block: memoryview) -> tuple[str, int]:
        while True:
            volume = self._current_volume()
            try:
                return volume.name, volume.append(block)
            except VolumeFull:
                # Everything before this block is on the full volume: make it durable there.
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
        """Durability point: sync the volume, then catalogue every object now fully on media."""
        if self._volume is not None:
            self._volume.sync()
        self._since_sync = 0
        self._durable_seq = max(self.placed, default=-1)
        ready = [p for p in self._pending if p.footer.last_seq <= self._durable_seq]
        self._pending = [p for p in self._pending if p.footer.last_seq > self._durable_seq]
        for p in ready:
            self._batch.add(self._version(p))
        self._batch.flush()  # the batch writer also adds the objects and bytes to the session row
        self.objects += len(ready)
        self.bytes += sum(p.footer.plain_bytes for p in ready)

    def _version(self, p: PendingObject) -> NewVersion:
        """The catalog entry of a durable object: one piece per volume it lies on."""
        spans: dict[str, list[int]] = {}
        for seq in range(p.footer.first_seq, p.footer.last_seq + 1):
            vol, addr = self.placed[seq]
            span = spans.setdefault(vol, [addr, addr])
            span[0], span[1] = min(span[0], addr), max(span[1], addr)  # first and last block there
        stored = p.footer.stored_bytes
        share = stored // max(1, len(spans))
        pieces = tuple(Piece(vol, first, 0, share) for vol, (first, _last) in spans.items())
        v = dict(p.version)
        attrs = dict(v.pop("attributes"))
        attrs.update(session=str(self.writer.session_id), object=p.footer.object_index)
        return NewVersion(pieces=pieces, attributes=json.dumps(attrs, separators=(",", ":")), **v)
