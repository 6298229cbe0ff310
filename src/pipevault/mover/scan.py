"""The scanning half of a restore: superblocks in, the wanted objects' events and plaintext out.

Reading a session back is two kinds of work: parsing, checking and decoding the stream
format (Python, about half of a restore), and creating files and setting their attributes
(system calls, the other half). :class:`ScanStage` does the first in a process module of
its own, so the two run on two cores; :class:`EventReader` gives the writer, in the
initiator, the events back.

An EVENTS buffer holds ``a`` records, each ``EVENT`` (type, session id, a number, body
length) and its body:

- STARTED: number = superblock seq; body = the pickled ArchiveHeader (half the cost of the
  format's own packing and parsing, and this pipe never leaves the machine).
- OPTIONS: body = the packed Options.
- CHUNK: ``CHUNK_EVENT`` (object index, chunk seq, object offset, plain length, flags,
  duplicate reference, offset of this piece in the chunk) then the piece of plaintext; a
  chunk larger than a buffer comes in several pieces (pipevault's own chunks never do).
- ENDED: ``ENDED_EVENT`` (object index, status).
- DAMAGE: the pickled Damage event (this pipe never leaves the machine).
- SMALL: a wanted small file read whole (one chunk, or none, and a complete end), all it
  takes to write it in one record: ``SMALL_EVENT`` (object index, chunk flags, mode, uid, gid,
  atime, mtime, size, name length, file space length, xattr bytes), the name, the file space,
  the xattrs (``XATTR`` name length, value length, name, value each) and the data. Most files
  are small: one record instead of three (with a pickled header) halves what they cost the
  two processes.

Only what a restore uses travels: chunks without data (objects not wanted) and session
events stay in the scanning process.
"""

from __future__ import annotations

import pickle
import struct
import uuid
from collections.abc import Callable, Collection, Iterator
from typing import Any, NamedTuple

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
    Options,
    OptionsRead,
    Scanner,
)
from pipevault.format.errors import KeyRequiredError, WrongKeyError
from pipevault.mover import _wire as W
from pipevault.mover.errors import KeyMissing, WrongPassphrase
from pipevault.pipe import StageContext

EVENTS = 9
EVENT = struct.Struct("<B16sQI")  # type, session id, superblock seq or 0, body length
CHUNK_EVENT = struct.Struct("<IIQQBIIQ")  # index, seq, offset, plain length, flags, ref index, ref seq, piece at
ENDED_EVENT = struct.Struct("<IB")  # object index, status
SMALL_EVENT = struct.Struct("<IBIIIqqQIHI")
XATTR = struct.Struct("<HI")
STARTED, OPTIONS, CHUNK, ENDED, DAMAGE, SMALL = 1, 2, 3, 4, 5, 6
NO_REF = 0xFFFFFFFF
_FLAGS = [ChunkFlags(v) for v in range(8)]  # every combination of the three chunk flags, made once


class ScanStage:
    """Middle stage (allocating): scans, verifies and decodes the superblocks it receives;
    sends the events of wanted objects in EVENTS buffers, each when full, or at once when an
    empty buffer comes in (the block reader waits for what it has read to be written).

    Args:
        key: the node's key (None: unencrypted data only).
        sessions: the media sessions to read; others are skipped from their headers.
        wanted: when given, the only ``(session, object index)`` slots to send events for
            and decode (a restore whose plan knows every object's index).
        small_max: files up to this size read whole are sent as one SMALL record (0: never).

    Raises (from run):
        WrongPassphrase, KeyMissing: encrypted data and a wrong or no key.
    """

    def __init__(self, key: bytes | None, sessions: Collection[uuid.UUID],
                 wanted: Collection[tuple[uuid.UUID, int]] | None, small_max: int = 0) -> None:
        self.key, self.sessions = key, set(sessions)
        self.wanted = set(wanted) if wanted is not None else None
        self.small_max = small_max

    def run(self, ctx: StageContext) -> None:
        wanted = self.wanted
        want: Callable[[uuid.UUID, int], bool] | None = None
        if wanted is not None:
            def want(sid: uuid.UUID, index: int) -> bool:
                return (sid, index) in wanted
        scanner = Scanner(key=self.key, sessions=self.sessions, want=want)
        out = _EventBuffers(ctx, wanted, self.small_max)
        while (buf := ctx.receive_buf()) is not None:
            if not buf.length:
                # The reader waits for the objects found so far to be written (it sends this
                # empty buffer first, see restore.BlockReader): they go now, not once the
                # buffer is full (held back, they kept it reading the volume to its end).
                ctx.free_buf(buf)
                out.release()
                out.flush()
                continue
            try:
                events = scanner.feed(buf.view)
            except WrongKeyError as exc:
                raise WrongPassphrase(f"the node's key does not decrypt this data: {exc.message}") from exc
            except KeyRequiredError as exc:
                raise KeyMissing(f"the data is encrypted: {exc.message}") from exc
            for ev in events:
                out.event(ev)
            out.release()
            del events  # chunk data may be views of the superblock: copied by now
            ctx.free_buf(buf)
        for ev in scanner.finish():
            out.event(ev)
        out.release()
        out.flush()


class _EventBuffers:
    """Packs events into EVENTS buffers, sending each when full; only those of ``wanted``
    objects (all when None).

    A small file's start is held back until its chunk and its end show whether it can go as
    one SMALL record; anything else releases the held events as they came.
    """

    def __init__(self, ctx: StageContext, wanted: set[tuple[uuid.UUID, int]] | None, small_max: int = 0) -> None:
        self.ctx, self.wanted, self.small_max = ctx, wanted, small_max
        self.buf: Any = None
        self.pos = self.count = 0
        self._held: ObjectStarted | None = None
        self._held_chunk: ChunkRead | None = None

    def _room(self, need: int) -> memoryview:
        if self.buf is not None and self.pos + need > self.ctx.pool.buffer_size:
            self.flush()
        if self.buf is None:
            self.buf, self.pos, self.count = self.ctx.alloc_buf(), W.PREFIX_LEN, 0
        view: memoryview = self.buf.data
        return view

    def flush(self) -> None:
        if self.buf is not None:
            W.put_prefix(self.buf.data, EVENTS, 0, a=self.count)
            self.buf.length = self.pos
            self.ctx.send_buf(self.buf)
            self.buf = None

    def _put(self, rtype: int, sid: uuid.UUID, number: int, *parts: bytes | memoryview) -> None:
        size = sum(len(p) for p in parts)
        d = self._room(EVENT.size + size)
        EVENT.pack_into(d, self.pos, rtype, sid.bytes, number, size)
        pos = self.pos + EVENT.size
        for p in parts:
            d[pos: pos + len(p)] = p
            pos += len(p)
        self.pos = pos
        self.count += 1

    def event(self, ev: object) -> None:
        if self._held is not None:
            if self._hold(ev):
                return
            self.release()
        if type(ev) is ObjectStarted and self._small(ev):
            self._held = ev
            return
        self._send(ev)

    def _small(self, ev: ObjectStarted) -> bool:
        h = ev.header
        return (h.type == ObjectType.FILE and self.small_max > 0 and h.size <= self.small_max
                and (self.wanted is None or (ev.session_id, h.object_index) in self.wanted))

    def _hold(self, ev: object) -> bool:
        """Take ``ev`` into the held small file; False when it does not continue it as one."""
        held = self._held
        assert held is not None
        h = held.header
        if type(ev) is ChunkRead:
            c = ev.header
            if (self._held_chunk is None and ev.session_id == held.session_id and c.object_index == h.object_index
                    and c.chunk_seq == 0 and c.plain_len == h.size and ev.data is not None):
                self._held_chunk = ev
                return True
            return False
        if type(ev) is ObjectEnded:
            f = ev.footer
            chunk = self._held_chunk
            if (ev.session_id != held.session_id or f.object_index != h.object_index
                    or f.status != ObjectStatus.COMPLETE or (chunk is None and h.size)):
                return False
            self._held = self._held_chunk = None
            data = memoryview(chunk.data).cast("B") if chunk is not None and chunk.data is not None else b""
            flags = int(chunk.header.flags) if chunk is not None else 0
            fs = h.filespace.encode()
            xattrs = b"".join(XATTR.pack(len(n), len(v)) + n + v for n, v in h.xattrs)
            head = SMALL_EVENT.pack(h.object_index, flags, h.mode, h.uid, h.gid, h.atime_ns, h.mtime_ns, h.size,
                                    len(h.name), len(fs), len(xattrs))
            self._put(SMALL, held.session_id, held.seq, head, h.name, fs, xattrs, data)
            return True
        return False

    def release(self) -> None:
        """Send a held small file's events the ordinary way (the superblock its chunk's data
        may be a view of is about to be freed, or something else came between)."""
        held, chunk = self._held, self._held_chunk
        if held is not None:
            self._held = self._held_chunk = None
            self._send(held)
            if chunk is not None:
                self._send(chunk)

    def _send(self, ev: object) -> None:
        wanted = self.wanted
        if isinstance(ev, ChunkRead):
            h = ev.header
            duplicate = bool(h.flags & ChunkFlags.DUPLICATE)
            if ev.data is None and not duplicate:
                return  # an object nobody asked for
            ref = h.ref if h.ref is not None else (NO_REF, NO_REF)
            data = memoryview(ev.data).cast("B") if ev.data is not None else memoryview(b"")
            # Whole in one record when it fits an empty buffer; else in pieces.
            most = self.ctx.pool.buffer_size - W.PREFIX_LEN - EVENT.size - CHUNK_EVENT.size
            at = 0
            while True:
                piece = data[at: at + most]
                head = CHUNK_EVENT.pack(h.object_index, h.chunk_seq, h.object_offset, h.plain_len, int(h.flags),
                                        ref[0], ref[1], at)
                self._put(CHUNK, ev.session_id, 0, head, piece)
                at += len(piece)
                if at >= len(data):
                    return
        if isinstance(ev, Damage):
            self._put(DAMAGE, ev.session_id or uuid.UUID(int=0), 0, pickle.dumps(ev))
            return
        if isinstance(ev, ObjectStarted):
            if wanted is None or (ev.session_id, ev.header.object_index) in wanted:
                self._put(STARTED, ev.session_id, ev.seq, pickle.dumps(ev.header, protocol=pickle.HIGHEST_PROTOCOL))
        elif isinstance(ev, OptionsRead):
            if wanted is None or (ev.session_id, ev.options.object_index) in wanted:
                self._put(OPTIONS, ev.session_id, ev.seq, ev.options.pack())
        elif isinstance(ev, ObjectEnded):
            f = ev.footer
            if wanted is None or (ev.session_id, f.object_index) in wanted:
                self._put(ENDED, ev.session_id, ev.seq, ENDED_EVENT.pack(f.object_index, f.status))


class EventReader:
    """Reads EVENTS buffers back into events, in the order they were sent (one consumer)."""

    def __init__(self) -> None:
        self._pending: bytearray | None = None  # a large chunk's pieces so far (they span buffers)
        self._sessions: dict[bytes, uuid.UUID] = {}  # a restore reads few sessions: ids made once

    def events(self, view: memoryview) -> Iterator[object]:
        """The events of an EVENTS buffer: ObjectStarted, OptionsRead, ChunkRead (``data`` a
        view of ``view`` when whole; pieces of a larger chunk are joined), ObjectEnded (its
        footer carries only the index and status), Damage.

        The caller releases the views (drops the events) before reusing the buffer.
        """
        _kind, _i, _s, _o, count, _b, _c = W.get_prefix(view)
        pos = W.PREFIX_LEN
        for _ in range(count):
            rtype, sid_raw, number, size = EVENT.unpack_from(view, pos)
            pos += EVENT.size
            body = view[pos: pos + size]
            pos += size
            sid = self._sessions.get(sid_raw)
            if sid is None:
                sid = self._sessions[sid_raw] = uuid.UUID(bytes=sid_raw)
            if rtype == CHUNK:
                index, seq, offset, plain, flags, ref_i, ref_s, at = CHUNK_EVENT.unpack_from(body, 0)
                piece = body[CHUNK_EVENT.size:]
                data: memoryview | bytearray | None = piece
                if flags & ChunkFlags.DUPLICATE:
                    data = None
                elif at or len(piece) < plain:
                    self._pending = bytearray() if at == 0 else self._pending
                    pending = self._pending
                    assert pending is not None and len(pending) == at, "chunk pieces arrive in order"
                    pending += piece
                    if len(pending) < plain:
                        continue
                    data, self._pending = pending, None
                header = ChunkHeader(index, seq, offset, plain, 0, flags=_FLAGS[flags & 7],
                                     ref=(ref_i, ref_s) if ref_i != NO_REF else None)
                yield ChunkRead(sid, number, number, header, data)
            elif rtype == STARTED:
                header = pickle.loads(body)
                assert isinstance(header, ArchiveHeader)
                yield ObjectStarted(sid, number, header)
            elif rtype == OPTIONS:
                yield OptionsRead(sid, number, Options.unpack(body))
            elif rtype == ENDED:
                index, status = ENDED_EVENT.unpack_from(body, 0)
                yield ObjectEnded(sid, number, ArchiveFooter(object_index=index, status=status))
            elif rtype == SMALL:
                yield _small_file(sid, number, body)
            elif rtype == DAMAGE:
                ev = pickle.loads(body)
                assert isinstance(ev, Damage)
                yield ev


class SmallFile(NamedTuple):
    """A wanted small file read whole (a SMALL record): the archive header's fields a writer
    uses, and the plaintext (``data``, a view of the EVENTS buffer: copy it to keep it).
    ``flags`` are its chunk's (HAS_DEDUP_HASH: later duplicates may repeat it). A named
    tuple: made for each of tens of thousands of small files, in a tenth of a frozen
    dataclass's time."""

    session_id: uuid.UUID
    seq: int
    object_index: int
    name: bytes
    filespace: str
    size: int
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    xattrs: tuple[tuple[bytes, bytes], ...]
    flags: int
    data: memoryview


def _small_file(sid: uuid.UUID, seq: int, body: memoryview) -> SmallFile:
    index, flags, mode, uid, gid, atime, mtime, size, n_name, n_fs, n_xattrs = SMALL_EVENT.unpack_from(body, 0)
    pos = SMALL_EVENT.size
    name = bytes(body[pos:pos + n_name])
    pos += n_name
    fs = str(body[pos:pos + n_fs], "utf-8")
    pos += n_fs
    xattrs: list[tuple[bytes, bytes]] = []
    end = pos + n_xattrs
    while pos < end:
        n, v = XATTR.unpack_from(body, pos)
        pos += XATTR.size
        xattrs.append((bytes(body[pos:pos + n]), bytes(body[pos + n:pos + n + v])))
        pos += n + v
    return SmallFile(sid, seq, index, name, fs, size, mode, uid, gid, atime, mtime, tuple(xattrs), flags,
                     body[pos:pos + size])
