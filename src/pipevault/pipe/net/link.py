"""A pipe's data link: the N authenticated TCP connections between its two halves.

The link belongs to the *owner* of a pipe half (the client's :class:`RemotePipe`, or a
session of the server daemon). The network agents use one connection each while the pipe
runs; afterwards the owner ends the link with :meth:`DataLink.finish` (the receiving half's
owner sends DONE) or :meth:`DataLink.abort` (an ABORT naming the error) and closes it.

Counters per connection (payload bytes, frames, first and last activity) feed `pipevault
status`; they are plain integers written by the one thread using the connection.
"""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass
from typing import Any

from pipevault.clock import SYSTEM, Clock
from pipevault.errors import PipevaultError
from pipevault.pipe.net import wire

IO_TIMEOUT_S = 0.25  # how often a blocked agent looks at the pipe's state
USER_TIMEOUT_MS = 60_000  # unacknowledged data this long means the peer is gone
LINGER_S = 2.0  # after an ABORT, how long to wait for the peer to read it and close


@dataclass(frozen=True)
class ConnectionStatus:
    """One data connection's figures: payload bytes and frames moved, bytes per second."""

    index: int
    bytes: int
    frames: int
    rate_bytes_s: float
    open: bool


class Connection:
    """One data connection. ``send_lock`` is held while a frame is on its way out, so the
    owner never interleaves an ABORT with an agent's half-sent DATA frame."""

    def __init__(self, index: int, sock: socket.socket, clock: Clock) -> None:
        self.index = index
        self.sock = sock
        self.clock = clock
        self.send_lock = threading.Lock()
        self.bytes = 0
        self.frames = 0
        self.first: float | None = None
        self.last: float | None = None
        self.closed = False

    def count(self, n: int) -> None:
        """Record one DATA frame of ``n`` payload bytes."""
        now = self.clock.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.bytes += n
        self.frames += 1

    def status(self) -> ConnectionStatus:
        """This connection's figures now."""
        span = (self.last or 0.0) - (self.first or 0.0)
        rate = self.bytes / span if span > 0 else 0.0
        return ConnectionStatus(self.index, self.bytes, self.frames, round(rate, 1), not self.closed)


def tune(sock: socket.socket, window: int | None = None) -> None:
    """Socket options every data connection gets: no Nagle, a bounded dead-peer detection,
    short blocking slices, and (for ``window``) a clamped send and receive buffer."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
    if window:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, window)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
    sock.settimeout(IO_TIMEOUT_S)


class DataLink:
    """The N connections of one pipe half, in index order.

    Args:
        sockets: connected, authenticated and attached sockets; the link owns them.
        peer: the other machine, for messages ("host:port" or a node name).
    """

    def __init__(self, sockets: list[socket.socket], peer: str, clock: Clock = SYSTEM) -> None:
        self.peer = peer
        self.clock = clock
        self.connections = [Connection(i, s, clock) for i, s in enumerate(sockets)]
        self._lock = threading.Lock()
        self.acked = 0  # durable stream bytes the receiving half acknowledged (sender side)
        self.remote_result: dict[str, Any] | None = None  # the DONE payload (sender side)
        self._aborted = False

    def __len__(self) -> int:
        return len(self.connections)

    def note_ack(self, durable: int) -> None:
        """Record a durable-bytes acknowledgement (called by the sending agents)."""
        with self._lock:
            self.acked = max(self.acked, durable)

    def note_done(self, result: dict[str, Any]) -> None:
        """Record the receiving half's DONE payload."""
        with self._lock:
            if self.remote_result is None:
                self.remote_result = result
            self.acked = max(self.acked, int(result.get("durable", 0)))

    def status(self) -> list[ConnectionStatus]:
        """Figures of every connection."""
        return [c.status() for c in self.connections]

    def bytes_moved(self) -> int:
        """Payload bytes over all connections."""
        return sum(c.bytes for c in self.connections)

    def finish(self, result: dict[str, Any]) -> None:
        """Receiving half's owner: the pipe completed; tell every sending agent (DONE)."""
        self._broadcast(wire.K_DONE, result)

    def abort(self, error: BaseException) -> None:
        """Either owner: this half failed; tell the other half why (ABORT), best effort.

        The following :meth:`close` then lingers (up to :data:`LINGER_S`) reading what the
        peer still sends, because closing a socket with unread data resets the connection
        and the peer would lose the ABORT before reading it.
        """
        self._aborted = True
        if isinstance(error, PipevaultError):
            data = {"code": error.code, "message": error.message, "hint": error.advice}
        else:
            data = {"code": "internal", "message": f"{type(error).__name__}: {error}", "hint": ""}
        self._broadcast(wire.K_ABORT, data)

    def _broadcast(self, kind: int, obj: dict[str, Any]) -> None:
        for conn in self.connections:
            if conn.closed or not conn.send_lock.acquire(timeout=IO_TIMEOUT_S):
                continue  # an agent is stuck mid-frame: closing the socket tells the peer
            try:
                wire.send_json(conn.sock, kind, obj)
            except PipevaultError:
                pass  # the peer is already gone; it learns from its own side
            finally:
                conn.send_lock.release()

    def close(self) -> None:
        """Close every connection (after an abort, once the peer closed or a moment passed).
        Idempotent."""
        if self._aborted:
            self._linger()
        for conn in self.connections:
            if not conn.closed:
                conn.closed = True
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already reset by the peer
                conn.sock.close()

    def _linger(self) -> None:
        open_socks = []
        for conn in self.connections:
            if conn.closed:
                continue
            try:
                conn.sock.shutdown(socket.SHUT_WR)
                open_socks.append(conn.sock)
            except OSError:
                pass  # already reset
        deadline = self.clock.monotonic() + LINGER_S
        while open_socks and (left := deadline - self.clock.monotonic()) > 0:
            ready, _, _ = select.select(open_socks, [], [], left)
            for sock in ready:
                try:
                    if not sock.recv(1 << 16):
                        open_socks.remove(sock)
                except OSError:
                    open_socks.remove(sock)
