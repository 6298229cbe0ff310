"""The network agents of seed 002 (figure 7): a pseudo-tail and a pseudo-head.

- :class:`NetSender` is the tail stage of the sending half, one instance per connection
  (``StageSpec(..., instances=len(link))``). Each instance takes buffers from the shared
  input queue, sends each as one DATA frame tagged with the buffer's stream sequence number
  straight from the pool memory (``sendmsg`` of the header and the buffer's memoryview),
  and frees it. At the end it sends END with its frame count and waits for the receiving
  half's DONE, so a finished sending pipe means a finished remote pipe.
- :class:`NetReceiver` is the first stage of the receiving half: one instance multiplexing
  every connection with a selector. It reads each frame's payload with ``recv_into``
  directly into a pool buffer and sends the buffers on in sequence order, holding
  out-of-order ones only while the allocator quota leaves room for the one it waits for
  (a connection whose next frame would exceed that, counting the buffers other
  connections are still filling, is parked until order catches up).

Both poll the pipe's state every :data:`~pipevault.pipe.net.link.IO_TIMEOUT_S` while
blocked, so a stop anywhere is noticed promptly. An ABORT from the other half raises
:class:`RemoteFailed`; a connection that breaks raises :class:`ConnectionLost`.
"""

from __future__ import annotations

import select
import selectors
import socket
from dataclasses import dataclass
from typing import Any

from pipevault.pipe._context import Buffer, StageContext
from pipevault.pipe.errors import PipeStopped
from pipevault.pipe.net import wire
from pipevault.pipe.net.checkpoint import Checkpoint
from pipevault.pipe.net.errors import ConnectionLost, ProtocolError, RemoteFailed
from pipevault.pipe.net.link import IO_TIMEOUT_S, Connection, DataLink


def _check_stop(ctx: StageContext) -> None:
    if ctx.stopping:
        raise PipeStopped(f"pipe {ctx.pool.name} stopped")


def _send_frame(ctx: StageContext, conn: Connection, parts: list[Any]) -> None:
    """Send ``parts`` whole on ``conn``, waiting in slices while the pipe runs."""
    views = [memoryview(p).cast("B") for p in parts]
    with conn.send_lock:
        while views:
            try:
                n = conn.sock.sendmsg(views)
            except TimeoutError:
                _check_stop(ctx)
                continue
            except OSError as exc:
                raise _lost_or_aborted(conn, f"sending on connection {conn.index} failed: {exc}") from exc
            while n:
                if n >= views[0].nbytes:
                    n -= views.pop(0).nbytes
                else:
                    views[0] = views[0][n:]
                    n = 0


def _lost_or_aborted(conn: Connection, why: str) -> Exception:
    """The error to raise when ``conn`` broke: the peer's ABORT if one is waiting, else lost."""
    try:
        conn.sock.settimeout(0.2)
        kind, _, payload = wire.read_frame(conn.sock)
        if kind == wire.K_ABORT:
            return RemoteFailed.from_wire("the remote half failed", wire.decode_json(kind, payload))
    except (ConnectionLost, ProtocolError, OSError):
        pass
    return ConnectionLost(why)


class NetSender:
    """Pseudo-tail: sends its share of the stream over connection ``ctx.instance`` of ``link``.

    Result: for instance 0, the receiving half's DONE payload (``{"bytes", "durable", ...}``);
    None for the others. Buffers are freed as soon as their frame is in the socket.
    """

    def __init__(self, link: DataLink) -> None:
        self.link = link

    def run(self, ctx: StageContext) -> dict[str, Any] | None:
        conn = self.link.connections[ctx.instance]
        parallel = ctx.pool.topology.stages[ctx.stage].instances > 1
        frames = 0
        while (buf := ctx.receive_buf()) is not None:
            seq = buf.seq if parallel else frames
            n = buf.length
            _send_frame(ctx, conn, [wire.header(wire.K_DATA, n, seq), buf.view])
            ctx.free_buf(buf)
            conn.count(n)
            frames += 1
            self._poll(conn)
        _send_frame(ctx, conn, [wire.header(wire.K_END, 0, frames)])
        result = self._await_done(ctx, conn)
        return result if ctx.instance == 0 else None

    def _poll(self, conn: Connection) -> None:
        """Handle frames the receiver sent (ACKs, an ABORT) without blocking."""
        while select.select([conn.sock], [], [], 0)[0]:
            try:
                peek = conn.sock.recv(1, socket.MSG_PEEK)
            except OSError as exc:
                raise ConnectionLost(f"connection {conn.index} to {self.link.peer} broke: {exc}") from exc
            if not peek:
                raise ConnectionLost(f"{self.link.peer} closed connection {conn.index} mid-transfer")
            self._handle(conn, *wire.read_frame(conn.sock))

    def _handle(self, conn: Connection, kind: int, seq: int, payload: bytes) -> bool:
        if kind == wire.K_ACK:
            self.link.note_ack(seq)
            return False
        if kind == wire.K_DONE:
            self.link.note_done(wire.decode_json(kind, payload))
            return True
        if kind == wire.K_ABORT:
            raise RemoteFailed.from_wire(f"{self.link.peer} stopped the pipe",
                                         wire.decode_json(kind, payload))
        raise ProtocolError(f"unexpected {wire.KIND_NAMES[kind]} frame from the receiving half")

    def _await_done(self, ctx: StageContext, conn: Connection) -> dict[str, Any]:
        while True:
            _check_stop(ctx)
            try:
                frame = wire.read_frame(conn.sock)
            except ConnectionLost as exc:
                if isinstance(exc.__cause__, TimeoutError):
                    continue
                raise ConnectionLost(f"{self.link.peer} closed connection {conn.index} before "
                                     f"confirming the transfer: {exc.message}") from exc
            if self._handle(conn, *frame):
                return self.link.remote_result or {}


@dataclass
class _Inbound:
    """Receiving state of one connection: a header being read, or a frame's payload."""

    conn: Connection
    header: bytearray
    header_got: int = 0
    buf: Buffer | None = None
    seq: int = 0
    length: int = 0
    got: int = 0
    ended: bool = False
    frames_announced: int = -1
    frames_seen: int = 0
    parked: tuple[int, int] | None = None  # (length, seq) of a frame waiting for room
    lowat: int = 1


class NetReceiver:
    """Pseudo-head: receives the stream from every connection of ``link`` in order.

    Sockets are read without blocking: each readable connection gives what it has (a
    header, or part of a payload straight into its pool buffer), so one slow connection
    never holds up the others. ``checkpoint`` (if given) is the tail's durable counter;
    its advances go back to the sender as ACK frames. Result: ``{"bytes", "frames"}``.
    """

    def __init__(self, link: DataLink, checkpoint: Checkpoint | None = None) -> None:
        self.link = link
        self.checkpoint = checkpoint
        self._acked = -1

    def run(self, ctx: StageContext) -> dict[str, int]:
        # Room to hold out-of-order frames: the quota, less one for the frame order waits for.
        self._limit = max(0, ctx.pool.topology.quota - 1)
        self._ctx_send = ctx.send_buf
        self._held: dict[int, Buffer] = {}
        self._partial = 0  # buffers being filled by connections (each holds one)
        self._expected = 0
        self._bytes = 0
        sel = selectors.DefaultSelector()
        states = [_Inbound(c, bytearray(wire.HEADER_SIZE)) for c in self.link.connections]
        for st in states:
            st.conn.sock.setblocking(False)
            sel.register(st.conn.sock, selectors.EVENT_READ, st)
        try:
            while not all(st.ended for st in states):
                _check_stop(ctx)
                self._send_acks()
                for key, _ in sel.select(timeout=0.2):
                    st = key.data
                    if st.parked is None and not st.ended:
                        self._pump(ctx, sel, st)
                self._unpark(ctx, sel, states)
            total = sum(st.frames_announced for st in states)
            if self._expected != total or self._held:
                raise ProtocolError(f"stream ended with {self._expected} of {total} frames delivered "
                                    f"and {len(self._held)} held out of order")
            self._send_acks()
            return {"bytes": self._bytes, "frames": self._expected}
        finally:
            sel.close()
            for st in states:
                st.conn.sock.settimeout(IO_TIMEOUT_S)
                if st.lowat != 1 and not st.conn.closed:
                    st.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
                if st.buf is not None:
                    ctx.free_buf(st.buf)
            for buf in self._held.values():
                ctx.free_buf(buf)
            self._held.clear()

    def _send_acks(self) -> None:
        if self.checkpoint is None or self.checkpoint.value == self._acked:
            return
        self._acked = self.checkpoint.value
        frame = wire.header(wire.K_ACK, 0, self._acked)
        for conn in self.link.connections:
            with conn.send_lock:
                conn.sock.settimeout(IO_TIMEOUT_S * 8)
                try:
                    wire.send_all(conn.sock, [frame])
                finally:
                    conn.sock.setblocking(False)

    def _recv(self, st: _Inbound, view: memoryview) -> int:
        """Bytes read into ``view`` now (0 if none are waiting)."""
        try:
            k = st.conn.sock.recv_into(view, len(view))
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise ConnectionLost(f"connection {st.conn.index} from {self.link.peer} broke: {exc}") from exc
        if k == 0:
            raise ConnectionLost(f"{self.link.peer} closed connection {st.conn.index} mid-transfer "
                                 f"({self._bytes} bytes received in order)")
        return k

    def _pump(self, ctx: StageContext, sel: selectors.BaseSelector, st: _Inbound) -> None:
        """Read what ``st``'s socket holds, frame by frame, without blocking."""
        while st.parked is None and not st.ended:
            if st.buf is None:
                k = self._recv(st, memoryview(st.header)[st.header_got:])
                if not k:
                    return
                st.header_got += k
                if st.header_got == wire.HEADER_SIZE:
                    st.header_got = 0
                    self._on_header(ctx, sel, st, *wire.parse_header(st.header))
            else:
                k = self._recv(st, st.buf.data[st.got: st.length])
                if not k:
                    self._wake_at(st, st.length - st.got)
                    return
                st.got += k
                if st.got == st.length:
                    self._wake_at(st, 1)
                    self._complete(st)

    def _wake_at(self, st: _Inbound, want: int) -> None:
        """Let the selector report ``st`` readable only once ``want`` bytes are waiting
        (SO_RCVLOWAT), within a quarter of its receive buffer so they always fit: one
        wakeup and one read per large piece of a frame instead of one per segment."""
        sock = st.conn.sock
        if want > 1:
            want = max(1, min(want, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 4))
        if want != st.lowat:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
            st.lowat = want

    def _on_header(self, ctx: StageContext, sel: selectors.BaseSelector, st: _Inbound, kind: int,
                   length: int, seq: int) -> None:
        if kind == wire.K_DATA:
            self._take(ctx, sel, st, length, seq)
        elif kind == wire.K_END:
            st.ended, st.frames_announced = True, seq
            sel.unregister(st.conn.sock)
            if st.frames_seen != seq:
                raise ProtocolError(f"connection {st.conn.index} announced {seq} frames but "
                                    f"carried {st.frames_seen}")
        elif kind == wire.K_ABORT:
            st.conn.sock.settimeout(2.0)
            payload = bytearray(length)
            wire.recv_into_exact(st.conn.sock, memoryview(payload))
            raise RemoteFailed.from_wire(f"{self.link.peer} stopped the pipe",
                                         wire.decode_json(kind, bytes(payload)))
        else:
            raise ProtocolError(f"unexpected {wire.KIND_NAMES[kind]} frame on data connection "
                                f"{st.conn.index}")

    def _take(self, ctx: StageContext, sel: selectors.BaseSelector, st: _Inbound, length: int,
              seq: int) -> None:
        """Start receiving frame ``seq`` into a new buffer, or park the connection."""
        if seq < self._expected or seq in self._held:
            raise ProtocolError(f"frame {seq} arrived twice (connection {st.conn.index})")
        if seq != self._expected and len(self._held) + self._partial >= self._limit:
            st.parked = (length, seq)
            sel.unregister(st.conn.sock)
            return
        if length > ctx.pool.buffer_size:
            raise ProtocolError(f"frame {seq} of {length} bytes exceeds the {ctx.pool.buffer_size}-byte "
                                "buffers of this pipe")
        st.buf, st.seq, st.length, st.got = ctx.alloc_buf(), seq, length, 0
        self._partial += 1
        if length == 0:
            self._complete(st)

    def _complete(self, st: _Inbound) -> None:
        buf, st.buf = st.buf, None
        assert buf is not None
        self._partial -= 1
        buf.length = st.length
        st.conn.count(st.length)
        st.frames_seen += 1
        self._held[st.seq] = buf
        while self._expected in self._held:
            out = self._held.pop(self._expected)
            self._bytes += out.length
            self._ctx_send(out)
            self._expected += 1

    def _unpark(self, ctx: StageContext, sel: selectors.BaseSelector, states: list[_Inbound]) -> None:
        progressed = True
        while progressed:
            progressed = False
            for st in states:
                if st.parked is None:
                    continue
                length, seq = st.parked
                if seq == self._expected or len(self._held) + self._partial < self._limit:
                    st.parked = None
                    sel.register(st.conn.sock, selectors.EVENT_READ, st)
                    self._take(ctx, sel, st, length, seq)
                    self._pump(ctx, sel, st)
                    progressed = True
