"""A TCP relay that behaves like a long, window-limited link (for tests and `bench net`).

Each accepted connection is joined to a new connection to ``target``. Every chunk read in
either direction is forwarded ``delay_s`` later (the one-way delay) and counts against the
connection's ``window`` until one round trip (2 x ``delay_s``) after it was read, the way
a TCP sender's window waits for the acknowledgement. One connection therefore moves at
most ``window / (2 * delay_s)`` bytes per second, and N connections N times that.

``cut_after`` (bytes client->target on one connection: number ``cut_conn`` in accept
order, or any connection when None) resets both sides of that connection there, like a
connection dropped by the network. The relay stops by itself after
``lifetime_s``. Run: ``python -m pipevault.server.relay LISTEN TARGET [--delay-ms MS]
[--window BYTES] [--cut-after BYTES] [--cut-conn N] [--lifetime S]``; it prints the address
it listens on.
"""

from __future__ import annotations

import argparse
import collections
import socket
import struct
import threading

from pipevault.clock import SYSTEM, Clock
from pipevault.pipe.net.client import parse_address

CHUNK = 64 << 10


class _Direction:
    """One direction of one relayed connection: read, hold ``delay``, write."""

    def __init__(self, relay: Relay, src: socket.socket, dst: socket.socket, cut_after: int | None) -> None:
        self.relay, self.src, self.dst, self.cut_after = relay, src, dst, cut_after
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.inflight: collections.deque[tuple[float, int]] = collections.deque()
        self.inflight_bytes = 0
        self.moved = 0
        self.cond = threading.Condition()
        self.closed = False
        self.cut = False

    def reader(self) -> None:
        clock, delay, window = self.relay.clock, self.relay.delay_s, self.relay.window
        try:
            while not self.relay.stopped:
                with self.cond:
                    while self.inflight and self.inflight[0][0] <= clock.monotonic():
                        self.inflight_bytes -= self.inflight.popleft()[1]
                    wait = (self.inflight[0][0] - clock.monotonic()
                            if window and self.inflight_bytes >= window and self.inflight else 0.0)
                if wait > 0:
                    clock.sleep(wait)
                    continue
                want = CHUNK if not window else max(1, min(CHUNK, window - self.inflight_bytes))
                data = self.src.recv(want)
                if not data:
                    break
                now = clock.monotonic()
                with self.cond:
                    self.queue.append((now + delay, data))
                    self.inflight.append((now + 2 * delay, len(data)))
                    self.inflight_bytes += len(data)
                    self.cond.notify()
                self.moved += len(data)
                if self.cut_after is not None and self.moved >= self.cut_after:
                    self.cut = True  # the writer resets both sides once this much is through
                    break
        except OSError:
            pass  # the other side or a cut closed the socket
        with self.cond:
            self.closed = True
            self.cond.notify()

    def writer(self) -> None:
        clock = self.relay.clock
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.closed:
                        self.cond.wait(0.5)
                    if not self.queue:
                        break
                    due, data = self.queue[0]
                wait = due - clock.monotonic()
                if wait > 0:
                    clock.sleep(wait)
                with self.cond:
                    self.queue.popleft()
                self.dst.sendall(data)
            if self.cut:
                self.relay.reset(self.src, self.dst)
            else:
                self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # reset by a cut, or the peer went away


class Relay:
    """Listens on ``listen`` and relays every connection to ``target`` (see module doc)."""

    def __init__(self, listen: str, target: str, delay_s: float = 0.025, window: int | None = None,
                 cut_after: int | None = None, cut_conn: int | None = None, clock: Clock = SYSTEM) -> None:
        self.target = parse_address(target)
        self.delay_s, self.window, self.clock = delay_s, window, clock
        self.cut_after, self.cut_conn = cut_after, cut_conn
        self.stopped = False
        self.accepted = 0
        self.listener = socket.create_server(parse_address(listen, listen=True))
        host, port = self.listener.getsockname()[:2]
        self.address = f"{host}:{port}"
        self._socks: list[socket.socket] = []

    def serve(self, lifetime_s: float) -> None:
        """Relay connections for ``lifetime_s`` seconds, then close everything."""
        threading.Thread(target=self._accept, daemon=True).start()
        self.clock.sleep(lifetime_s)
        self.stop()

    def start(self) -> None:
        """Relay in background threads until :meth:`stop`."""
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        self.stopped = True
        self.listener.close()
        for s in list(self._socks):
            s.close()

    def reset(self, *socks: socket.socket) -> None:
        """Abort connections with RST (SO_LINGER 0), as a broken network path would."""
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Wakes a thread blocked reading it, so the close below really happens (RST).
                s.shutdown(socket.SHUT_RD)
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            n = self.accepted
            self.accepted += 1
            self._socks += [client, server]
            cut = self.cut_after if self.cut_conn in (None, n) else None
            for d in (_Direction(self, client, server, cut), _Direction(self, server, client, None)):
                threading.Thread(target=d.reader, daemon=True).start()
                threading.Thread(target=d.writer, daemon=True).start()


def main() -> None:
    """Command-line entry (see module doc)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("listen")
    ap.add_argument("target")
    ap.add_argument("--delay-ms", type=float, default=25.0)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--cut-after", type=int, default=None)
    ap.add_argument("--cut-conn", type=int, default=None)
    ap.add_argument("--lifetime", type=float, default=300.0)
    args = ap.parse_args()
    relay = Relay(args.listen, args.target, args.delay_ms / 1000, args.window, args.cut_after,
                  args.cut_conn)
    print(relay.address, flush=True)
    relay.serve(args.lifetime)


if __name__ == "__main__":
    main()
