"""Turning a restore's events into files: the writer at the tail of the restore pipe.

:class:`ObjectWriter` receives the scan stage's events (see :mod:`pipevault.mover.scan`)
and writes each wanted object through :class:`~pipevault.mover.paths.TargetTree`, never
outside the target: small files whole, 32 per writer-thread task; large files' chunks and
attributes behind it in a thread of their own (:mod:`pipevault.mover.write_behind`), whose
flusher writes the target's file system out as the restore goes; sparse files with their
holes; duplicate chunks read back from where their originals went. The
whole-object digest recorded at backup is checked; an object not restored intact is
removed and named.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import xxhash

from pipevault.catalog.objects import VersionInfo
from pipevault.catalog.rebuild import split_name
from pipevault.events import ItemCounter, ItemWarning, Reporter
from pipevault.format import (
    ArchiveFooter,
    ArchiveHeader,
    ChunkFlags,
    ChunkHeader,
    ChunkRead,
    Damage,
    ObjectEnded,
    ObjectStarted,
    ObjectStatus,
    ObjectType,
    OptionsRead,
)
from pipevault.mover.errors import (
    DestinationError,
    UnsafePath,
)
from pipevault.mover.paths import TargetTree, check_name
from pipevault.mover.restore_plan import Key, rel_path
from pipevault.mover.scan import EventReader, SmallFile
from pipevault.mover.source import EXTENTS_KEY, unpack_extents
from pipevault.mover.walk import from_text
from pipevault.mover.write_behind import Flusher, Outcome, WriteBatch, WriteBehind, set_owner, write_batch

_HAS_DEDUP_HASH = int(ChunkFlags.HAS_DEDUP_HASH)  # an int: IntFlag operators run Python code
SMALL_RESTORE = 256 << 10  # files up to this size are written whole by the writer threads
WRITERS = 2  # measured: four contended for the interpreter lock with the writer's own thread
WRITE_BATCH = 32  # small files per writer-thread task
WRITE_BATCH_BYTES = 4 << 20
VERIFY_KEEP = 512 << 20  # bytes of chunks --verify keeps for the duplicates that may repeat them
# Where objects read only for the chunks others repeat (``sources``) are written, under each
# file space's place in the target, and removed at the end (drop_scratch).
SCRATCH_DIR = f".pipevault-restore-scratch-{os.getpid()}"

@dataclass
class _Open:
    key: Key
    version: VersionInfo
    parts: tuple[str, ...]
    kind: int
    header: Any
    fd: int = -1
    extents: list[tuple[int, int, int]] | None = None  # (stream offset, file offset, length)
    digest: Any = field(default_factory=xxhash.xxh3_128)
    written: int = 0
    chunks: dict[int, tuple[int, int]] = field(default_factory=dict)  # chunk seq -> (file offset, len)
    small: bytearray | None = None  # a small file's data, written whole by a writer thread


class DoneSet(set[Key]):
    """The objects restored or given up: a set the block reader checks, and ``changed``,
    set at each addition, that it waits on (restore.BlockReader._wait_done)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Event()

    def add(self, key: Key) -> None:
        super().add(key)
        if not self.changed.is_set():  # set until the reader clears it: no lock per object
            self.changed.set()


class ObjectWriter:
    """Turns scanner events into restored objects. Used by one thread (the pipe's tail).

    Objects are recognised by session and name (``/`` + path in the file space, as the
    catalog names them), or, when the catalog recorded it, by their index in the session,
    which also lets the scanner skip decoding everything else.

    ``sources`` are wanted objects read only because others repeat their chunks (see
    ``restore_plan.dedup_sources``): restored into a scratch directory (in memory under
    ``--verify``) where the duplicates read them back, never counted or reported as restored,
    and removed by :meth:`drop_scratch`.
    """

    def __init__(self, wanted: dict[Key, VersionInfo], by_index: dict[tuple[uuid.UUID, int], Key],
                 key: bytes | None, target: TargetTree | None, base: dict[str, tuple[str, ...]],
                 reporter: Reporter | None, redirect: dict[Key, VersionInfo] | None = None,
                 counter: ItemCounter | None = None, sources: set[Key] | None = None) -> None:
        self.wanted = wanted
        self.sources = sources or set()
        self.scratch: list[tuple[str, ...]] = []  # what the sources were restored into
        self.lost: dict[tuple[uuid.UUID, int], str] = {}  # sources not restored intact, and why
        self.counter = counter
        self.by_index = dict(by_index)
        self.redirect = redirect or {}
        self.key = key  # for the scan stage (see sink_stages)
        self._events = EventReader()
        self.target = target
        self.base = base  # file space -> parts under the target root
        self.reporter = reporter
        self.open: dict[tuple[uuid.UUID, int], _Open] = {}
        self.done: set[Key] = DoneSet()  # restored or given up: shared with the reader
        self.restored: set[Key] = set()
        self.failed: dict[Key, str] = {}
        self.restored_paths: dict[tuple[str, bytes], tuple[str, ...]] = {}  # (file space, name) -> parts
        self.dirs: list[tuple[tuple[str, ...], Any]] = []
        self.bytes = 0
        # Small files are written whole by a few threads: creating a file is kernel work
        # that runs in parallel once the GIL is released, and most restores are many files.
        self.pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="pv-write")
        self.behind = WriteBehind()  # large files' writes and attributes, in order, in a thread
        self.flusher = Flusher(target.root_fd) if target is not None else None
        # Small files in flight: each names its batch and its place there. A batch is handed
        # to a writer thread whole (one task per WRITE_BATCH files, not one per file).
        self.writes: dict[tuple[str, ...], tuple[Key, WriteBatch, int]] = {}
        self._batch = WriteBatch()
        # Chunks that duplicates may refer to: (session, object, chunk) -> (parts, file
        # offset, length) of where they were restored, or their bytes under --verify.
        self.originals: dict[tuple[uuid.UUID, int, int], tuple[tuple[str, ...], int, int] | bytes] = {}
        self._kept = 0
        self._dropped = False

    # -- events ------------------------------------------------------------------------------

    def feed(self, events: memoryview) -> Future[Outcome] | None:
        """Apply the events of one EVENTS buffer (see :mod:`pipevault.mover.scan`).

        Returns the future of the large-file writes they called for (run behind, see
        :mod:`pipevault.mover.write_behind`): ``events`` must stay valid until it is done.
        None: nothing of the buffer is needed any more.
        """
        for ev in self._events.events(events):
            self._event(ev)
        if self.flusher is not None:
            self.flusher.wrote(len(events))
        self._settle_behind(wait=False)
        return self.behind.submit()

    def finish(self) -> None:
        for o in list(self.open.values()):
            self._fail(o.key, "the object's end is missing on the media")
        for key in self.wanted:
            if key not in self.done:
                self._fail(key, "not found on the media")
        self._settle_behind(wait=True)
        self._drain_writes(0)
        self.pool.shutdown()
        if self.target is not None:
            self._finish_dirs()

    def close(self) -> None:
        """Stop the writer threads (after the pipe, failed or not); small files collected but
        never handed to a thread are dropped (their directories closed)."""
        self._batch.drop()
        self._batch = WriteBatch()
        self.pool.shutdown(wait=True)
        if self.flusher is not None:
            self.flusher.close()

    def drop_scratch(self) -> None:
        """Remove what the sources were restored into (after the pipe, failed or not)."""
        if self.target is None:
            return
        for parts in self.scratch:
            self.target.remove(parts)
        for where in {parts[:-1] for parts in self.scratch}:
            self.target.remove_dir(where)

    def close_writes(self) -> None:
        """Let the large-file writes already handed over end (their buffers are then free)."""
        self.behind.close()

    def _settle_behind(self, wait: bool) -> None:
        """Take in what the large-file writes behind reported (all of it with ``wait``)."""
        for outcome in self.behind.done(wait):
            for key, message in outcome.warnings:
                self._warn(self.wanted[key], message)
            for key, why, parts in outcome.failed:
                self.restored.discard(key)
                self.failed[key] = why
                self._warn(self.wanted[key], why)
                if self.target is not None:
                    self.target.remove(parts)

    def _drain_writes(self, keep: int) -> None:
        """Wait for the oldest small-file writes until at most ``keep`` are in flight."""
        while len(self.writes) > keep:
            parts = next(iter(self.writes))
            self._settle(parts, self.writes.pop(parts))

    def _submit(self) -> None:
        """Hand the collected small files to a writer thread."""
        batch, self._batch = self._batch, WriteBatch()
        if batch.files:
            batch.future = self.pool.submit(write_batch, batch)

    def _settle(self, parts: tuple[str, ...], pending: tuple[Key, WriteBatch, int]) -> None:
        key, batch, i = pending
        if batch.future is None:
            self._submit()  # it is in the batch still being collected
        assert batch.future is not None
        exc = batch.future.result()[i]
        if exc is not None:
            message = exc.message if isinstance(exc, DestinationError) else f"{exc.strerror}"
            self.restored.discard(key)
            self.failed[key] = f"cannot write it: {message}"
            self._warn(self.wanted[key], self.failed[key])
            if self.target is not None:
                self.target.remove(parts)

    def _event(self, ev: object) -> None:
        try:
            if type(ev) is SmallFile:
                self._small(ev)
            elif isinstance(ev, ObjectStarted):
                self._started(ev)
            elif isinstance(ev, OptionsRead):
                o = self.open.get((ev.session_id, ev.options.object_index))
                if o is not None:
                    raw = dict(ev.options.items).get(EXTENTS_KEY)
                    if raw is not None:
                        if o.small is not None and self.target is not None:
                            # A sparse file: its data goes to its extents, not end to end.
                            o.small, o.fd = None, self.target.create_file(o.parts)
                        o.extents, pos = [], 0
                        for off, n in unpack_extents(raw):
                            o.extents.append((pos, off, n))
                            pos += n
            elif isinstance(ev, ChunkRead):
                self._chunk(ev)
            elif isinstance(ev, ObjectEnded):
                self._ended(ev)
            elif isinstance(ev, Damage):
                self._damage(ev)
        except (UnsafePath, DestinationError) as exc:
            slot = _slot_of(ev)
            key = self.by_index.get(slot) if slot is not None else None
            if key is not None:
                self._fail(key, exc.message)
            elif isinstance(exc, DestinationError):
                raise

    def _key_of(self, sid: uuid.UUID, index: int, name: bytes, filespace: str) -> Key | None:
        """The wanted version object ``index`` of session ``sid`` is, or None when not wanted."""
        key = self.by_index.get((sid, index))
        if key is None:
            hl, ll = split_name(name)
            key = (sid, filespace, hl, ll)
            if key not in self.wanted:
                return None
            self.by_index[(sid, index)] = key
        return key

    def _small(self, ev: SmallFile) -> None:
        """A small file read whole: checked, noted and queued for a writer thread at once."""
        key = self._key_of(ev.session_id, ev.object_index, ev.name, ev.filespace)
        if key is None or key in self.done:
            return
        if key in self.redirect or key in self.sources:  # restored elsewhere than its name: the long way
            self._whole_object(ev)
            return
        v = self.wanted[key]
        fs = ev.filespace or v.filespace
        parts = self.base[fs] + check_name(ev.name.lstrip(b"/"))
        data = ev.data
        if v.digest is not None and xxhash.xxh3_128_digest(data) != v.digest:
            self._fail(key, "content does not match the digest recorded at backup")
            return
        if ev.flags & _HAS_DEDUP_HASH:
            self._remember((ev.session_id, ev.object_index, 0), parts, 0, data)
        self.done.add(key)
        self.restored.add(key)
        if self.counter is not None:
            self.counter.count += 1
        self.bytes += len(data)
        self.restored_paths[(fs, ev.name)] = parts
        if self.target is not None:
            self._queue_small(key, parts, bytearray(data), ev)

    def _whole_object(self, ev: SmallFile) -> None:
        """A SMALL record taken apart into the events it stands for."""
        header = ArchiveHeader(object_index=ev.object_index, name=ev.name, type=ObjectType.FILE, size=ev.size,
                               mode=ev.mode, uid=ev.uid, gid=ev.gid, atime_ns=ev.atime_ns, mtime_ns=ev.mtime_ns,
                               xattrs=ev.xattrs, filespace=ev.filespace)
        self._started(ObjectStarted(ev.session_id, ev.seq, header))
        if ev.size:
            chunk = ChunkHeader(ev.object_index, 0, 0, ev.size, 0, flags=ChunkFlags(ev.flags))
            self._chunk(ChunkRead(ev.session_id, ev.seq, ev.seq, chunk, ev.data))
        self._ended(ObjectEnded(ev.session_id, ev.seq, ArchiveFooter(object_index=ev.object_index)))

    def _started(self, ev: ObjectStarted) -> None:
        h = ev.header
        slot = (ev.session_id, h.object_index)
        key = self._key_of(ev.session_id, h.object_index, h.name, h.filespace)
        if key is None:
            return
        v = self.wanted[key]
        if key in self.done:
            return
        fs = h.filespace or v.filespace
        parts = check_name(h.name.lstrip(b"/"))
        link = self.redirect.get(key)
        if link is not None:  # a hard link's data, restored under the link's own name
            parts = check_name(os.fsencode(from_text(rel_path(link))))
        if key in self.sources:
            parts = (SCRATCH_DIR, f"{ev.session_id.hex}-{h.object_index}")
            self.scratch.append(self.base[fs] + parts)
        o = _Open(key, v, self.base[fs] + parts, h.type, h)
        self.open[slot] = o
        if self.target is None:
            return
        t = self.target
        if h.type == ObjectType.FILE:
            if h.size <= SMALL_RESTORE and link is None:
                o.small = bytearray()
            else:
                o.fd = t.create_file(o.parts)
        elif h.type == ObjectType.DIRECTORY:
            t.make_dir(o.parts)
        elif h.type == ObjectType.SYMLINK:
            t.make_symlink(o.parts, h.link_target)
        elif h.type == ObjectType.HARDLINK:
            first = self.restored_paths.get((fs, h.link_target))
            if first == o.parts:
                return  # this link received the data itself (its first link is not restored)
            if first is None:
                raise UnsafePath(f"hard link {'/'.join(o.parts)}: its first link {os.fsdecode(h.link_target)} "
                                 "is not restored in this run; restore them together")
            pending = self.writes.pop(first, None)
            if pending is not None:
                self._settle(first, pending)  # the first link must exist before linking to it
            t.make_hardlink(o.parts, first)
        elif h.type in (ObjectType.FIFO, ObjectType.DEVICE):
            try:
                t.make_node(o.parts, h.mode, json.loads(v.attributes).get("rdev", 0))
            except PermissionError:
                self._warn(v, "device node not created (needs root)")

    def _chunk(self, ev: ChunkRead) -> None:
        key = (ev.session_id, ev.header.object_index)
        o = self.open.get(key)
        if o is None:
            return
        h = ev.header
        data = ev.data
        if data is None and h.flags & ChunkFlags.DUPLICATE:
            data = self._duplicate(o, h)
        if data is None:
            return
        view = memoryview(data).cast("B")
        o.digest.update(view)
        file_off = self._file_offset(o, h.object_offset)
        o.chunks[h.chunk_seq] = (file_off, len(view))
        if h.flags & ChunkFlags.HAS_DEDUP_HASH and not h.flags & ChunkFlags.DUPLICATE:
            self._remember((o.key[0], h.object_index, h.chunk_seq), o.parts, file_off, view)
        if o.small is not None:
            o.small += view
        elif o.fd >= 0:
            self.behind.write(o.key, o.fd, view, file_off, o.parts)
        o.written += len(view)

    def _duplicate(self, o: _Open, h: Any) -> bytes:
        """A discarded duplicate chunk: the bytes of its original, from the object still being
        restored, from the file it was restored into, or (``--verify``) from memory."""
        sid = o.key[0]
        ref_obj, ref_seq = h.ref
        self._settle_behind(wait=True)  # the original may still be on its way into its file
        source = self.open.get((sid, ref_obj))
        if source is not None and ref_seq in source.chunks:
            off, n = source.chunks[ref_seq]
            if source.small is not None:
                return bytes(source.small[off: off + n])
            if source.fd >= 0:
                return os.pread(source.fd, n, off)
        where = self.originals.get((sid, ref_obj, ref_seq))
        lost = self.lost.get((sid, ref_obj))
        if where is None and lost is not None:
            raise UnsafePath(f"{'/'.join(o.parts)} repeats data of {lost}")
        if where is None and self.target is None and self._dropped:
            raise UnsafePath(f"{'/'.join(o.parts)} repeats data beyond what --verify keeps in memory "
                             f"({VERIFY_KEEP >> 20} MiB); restore it to check it")
        if where is None:
            raise UnsafePath(f"{'/'.join(o.parts)} shares data with object {ref_obj} of its backup session, "
                             "which this restore does not read: the catalog no longer lists it (expired), "
                             "or the backup predates the catalog's record of what copies repeat (restore "
                             "the file's directory or the whole backup with it)")
        if isinstance(where, bytes):
            return where
        parts, off, n = where
        pending = self.writes.pop(parts, None)
        if pending is not None:
            self._settle(parts, pending)  # a small file still being written by a writer thread
        assert self.target is not None
        return self.target.read_back(parts, off, n)

    def _remember(self, slot: tuple[uuid.UUID, int, int], parts: tuple[str, ...], file_off: int,
                  view: memoryview) -> None:
        """Note where chunk ``slot`` (session, object, chunk seq), which later chunks may repeat
        (it carries a dedup hash), went."""
        if self.target is not None:
            self.originals[slot] = (parts, file_off, len(view))
        elif self._kept + len(view) <= VERIFY_KEEP:
            # --verify writes nothing to read back: keep the bytes, within a bound.
            self.originals[slot] = bytes(view)
            self._kept += len(view)
        else:
            self._dropped = True

    @staticmethod
    def _file_offset(o: _Open, stream_offset: int) -> int:
        if o.extents is None:
            return stream_offset
        for s, f, n in o.extents:
            if s <= stream_offset < s + n:
                return f + (stream_offset - s)
        return stream_offset

    def _ended(self, ev: ObjectEnded) -> None:
        o = self.open.pop((ev.session_id, ev.footer.object_index), None)
        if o is None:
            return
        v = o.version
        if ev.footer.status == ObjectStatus.ABORTED:
            self._close(o, remove=True)
            self._fail(o.key, "the object was not stored completely")
            return
        if o.kind == ObjectType.FILE and v.digest is not None and o.digest.digest() != v.digest:
            self._close(o, remove=True)
            self._fail(o.key, "content does not match the digest recorded at backup")
            return
        self.done.add(o.key)
        if o.key in self.sources:  # read for the duplicates that repeat it, not restored as itself
            if self.target is not None:
                self._apply(o)
            return
        self.restored.add(o.key)
        if self.counter is not None:
            self.counter.count += 1
        self.bytes += o.written
        self.restored_paths[(o.header.filespace or v.filespace, o.header.name)] = o.parts
        if self.target is not None:
            self._apply(o)

    def _damage(self, ev: Damage) -> None:
        sid = ev.session_id
        hit: list[Key] = []
        for a in ev.affected:
            if a.object_index is None:
                hit += [k for k in self.wanted if k[0] == sid]
            elif sid is not None and (key := self.by_index.get((sid, a.object_index))) is not None:
                hit.append(key)
        if not ev.affected and sid is not None:
            hit += [o.key for slot, o in self.open.items() if slot[0] == sid]
        for key in hit:
            self._fail(key, f"damaged media: {ev.kind}: {ev.message}")

    def _fail(self, key: Key, why: str) -> None:
        if key in self.done:
            return
        self.done.add(key)
        for slot, o in list(self.open.items()):
            if o.key == key:
                del self.open[slot]
                self._close(o, remove=True)
        if key in self.sources:  # not asked for: the objects that repeat it fail, naming it
            for slot, k in self.by_index.items():
                if k == key:
                    self.lost[slot] = f"{self.wanted[key].path}, which could not be read: {why}"
            return
        self.failed[key] = why
        self._warn(self.wanted[key], why)

    def _warn(self, v: VersionInfo, why: str) -> None:
        if self.reporter is not None:
            self.reporter.emit(ItemWarning("restore", v.path, "mover.restore", why))

    # -- attributes ------------------------------------------------------------------------------

    def _close(self, o: _Open, remove: bool) -> None:
        if o.fd >= 0 and o.small is None:
            self._settle_behind(wait=True)  # its writes behind end before its descriptor does
        if o.fd >= 0:
            os.close(o.fd)
            o.fd = -1
        if remove and self.target is not None and o.kind != ObjectType.DIRECTORY:
            self.target.remove(o.parts)

    def _apply(self, o: _Open) -> None:
        h = o.header
        assert self.target is not None
        if o.kind == ObjectType.FILE and o.small is not None:
            self._queue_small(o.key, o.parts, o.small, h)
            o.small = None
        elif o.kind == ObjectType.FILE:
            self.behind.finish_file(o.key, o.fd, h, o.written, o.parts)  # after its writes; closes it
            o.fd = -1
        elif o.kind == ObjectType.DIRECTORY:
            self.dirs.append((o.parts, h))
        elif o.kind in (ObjectType.SYMLINK, ObjectType.FIFO, ObjectType.DEVICE):
            dfd = self.target.dir_fd(o.parts[:-1])
            name = o.parts[-1]
            try:
                st = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                return  # a device node we could not create (not root): already warned
            try:
                os.chown(name, h.uid, h.gid, dir_fd=dfd, follow_symlinks=False)
            except PermissionError:
                pass
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(name, stat.S_IMODE(h.mode), dir_fd=dfd)
            os.utime(name, ns=(h.atime_ns, h.mtime_ns), dir_fd=dfd, follow_symlinks=False)

    def _queue_small(self, key: Key, parts: tuple[str, ...], data: bytearray, h: Any) -> None:
        """Queue a small file (its bytes and header ``h``) for a writer thread."""
        assert self.target is not None
        batch = self._batch
        slot = batch.dirs.get(parts[:-1])
        if slot is None:  # one duplicate descriptor per directory and batch, not per file
            slot = batch.dirs[parts[:-1]] = self.target.dir_slot(parts[:-1])
        self.writes[parts] = (key, batch, len(batch.files))
        batch.files.append((slot[0], parts[-1], slot[1], data, h, "/".join(parts)))
        batch.size += len(data)
        if len(batch.files) >= WRITE_BATCH or batch.size >= WRITE_BATCH_BYTES:
            self._submit()
        if len(self.writes) > 8 * WRITE_BATCH:
            self._drain_writes(4 * WRITE_BATCH)

    def _finish_dirs(self) -> None:
        assert self.target is not None
        for parts, h in sorted(self.dirs, key=lambda d: -len(d[0])):
            fd = self.target.dir_fd(parts)
            for name, value in h.xattrs:
                try:
                    os.setxattr(fd, name, value)
                except OSError:
                    pass
            set_owner(fd, h)
            os.fchmod(fd, stat.S_IMODE(h.mode))
            os.utime(fd, ns=(h.atime_ns, h.mtime_ns))


def _slot_of(ev: object) -> tuple[uuid.UUID, int] | None:
    """(session, object index) an event is about."""
    if isinstance(ev, ObjectStarted):
        return (ev.session_id, ev.header.object_index)
    if isinstance(ev, ChunkRead):
        return (ev.session_id, ev.header.object_index)
    if isinstance(ev, ObjectEnded):
        return (ev.session_id, ev.footer.object_index)
    if isinstance(ev, SmallFile):
        return (ev.session_id, ev.object_index)
    return None


