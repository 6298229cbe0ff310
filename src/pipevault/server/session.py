"""One pipe half owned by the daemon: its remote peer, data link, pipe and outcome.

Life: created by Extend_Pipe (state ``waiting``) with its half built; each data connection
attaches by the transfer token; once all N are there the pipe starts (``running``) in the
session's thread; at the end the session tells the other half (DONE after a push it
received, ABORT with the error after any failure), closes the link and keeps its final
status for a while for `pipevault status`. If the connections do not all arrive within
``attach_timeout`` the session fails without ever starting.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from pipevault.clock import SYSTEM, Clock
from pipevault.errors import PipevaultError
from pipevault.pipe import Pipe, StageSpec
from pipevault.pipe.net.agents import NetReceiver, NetSender
from pipevault.pipe.net.errors import ConnectionLost
from pipevault.pipe.net.link import DataLink
from pipevault.server.halves import Half

log = logging.getLogger("pipevault.server")
ATTACH_TIMEOUT_S = 30.0


class Session:
    """A pipe half run for ``node`` at the request of the peer at ``peer``."""

    def __init__(self, name: str, node: str, peer: str, direction: str, module: str, half: Half,
                 connections: int, buffer_size: int, max_buffers: int, clock: Clock = SYSTEM,
                 attach_timeout: float = ATTACH_TIMEOUT_S) -> None:
        self.name = name
        self.node = node
        self.peer = peer
        self.direction = direction
        self.module = module
        self.half = half
        self.n_connections = connections
        self.buffer_size = buffer_size
        self.max_buffers = max_buffers
        self.clock = clock
        self.attach_timeout = attach_timeout
        self.transfer = secrets.token_hex(16)
        self.params: dict[str, Any] = {}
        self.state = "waiting"
        self.error: PipevaultError | None = None
        self.result: dict[str, Any] = {}
        self.created = clock.monotonic()
        self.ended: float | None = None
        self._socks: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._all_attached = threading.Event()
        self._stop = threading.Event()
        self.link: DataLink | None = None
        self.pipe: Pipe | None = None
        self.local_name: str | None = None
        self.thread = threading.Thread(target=self._main, name=f"pv-session:{name}", daemon=True)

    def start(self) -> None:
        """Start the session's thread (it waits for the connections, then runs the pipe)."""
        self.thread.start()

    def attach(self, index: int, sock: socket.socket, accept: Callable[[], None]) -> bool:
        """Hand over data connection ``index``; False if the slot is invalid or taken.

        ``accept`` (which answers the client) runs before the socket is handed over, so the
        pipe never starts on a connection whose answer is still being written.
        """
        with self._lock:
            if self.state != "waiting" or not 0 <= index < self.n_connections or index in self._socks:
                return False
            accept()
            self._socks[index] = sock
            if len(self._socks) == self.n_connections:
                self._all_attached.set()
            return True

    def stop(self) -> None:
        """STOP_PIPE: stop the pipe (the peer is told with an ABORT)."""
        self._stop.set()
        pipe = self.pipe
        if pipe is not None:
            pipe.stop()

    def _main(self) -> None:
        if not self._all_attached.wait(self.attach_timeout) or self._stop.is_set():
            with self._lock:
                self.state = "failed"
                socks = list(self._socks.values())
            self.error = ConnectionLost(f"pipe {self.name}: {len(socks)} of {self.n_connections} data "
                                        f"connections arrived from {self.peer} within "
                                        f"{self.attach_timeout:.0f} s")
            for s in socks:
                s.close()
            self.half.on_failure()
            self._end()
            return
        with self._lock:
            link = DataLink([self._socks[i] for i in range(self.n_connections)], self.peer, self.clock)
        self.link = link
        if self.direction == "push":
            agent = StageSpec("net", partial(NetReceiver, link, self.half.checkpoint), allocates=True)
            stages = [agent, *self.half.stages]
        else:
            agent = StageSpec("net", partial(NetSender, link), instances=self.n_connections)
            stages = [*self.half.stages, agent]
        self.pipe = Pipe(stages, buffer_size=self.buffer_size, max_buffers=self.max_buffers,
                         clock=self.clock, job=f"serve:{self.module}")
        # The pipe keeps a name of this machine (the pool's kernel objects are named after
        # it and carry this daemon's pid); the peer's name for it stays ``self.name``.
        self.local_name = self.pipe.name
        self.state = "running"
        if self._stop.is_set():
            self.pipe.stop()
        try:
            result = self.pipe.run()
            extras = self.half.succeeded(result)
        except BaseException as exc:
            self.error = exc if isinstance(exc, PipevaultError) else None
            self.state = "failed"
            try:
                # Before the peer hears of it: a client that retries at once finds the
                # half's resources (a node's job lock, its catalog session) settled.
                self.half.on_failure()
            except Exception:
                log.exception("pipe %s of node %s: cleaning up after the failure failed", self.name, self.node)
            link.abort(exc)
            log.warning("pipe %s of node %s failed: %s", self.name, self.node, exc)
        else:
            durable = self.half.checkpoint.value if self.half.checkpoint else result.bytes_moved
            self.result = {"bytes": result.bytes_moved, "durable": durable, **extras}
            if self.direction == "push":
                link.finish(self.result)
            self.state = "finished"
            log.info("pipe %s of node %s finished: %d bytes", self.name, self.node, result.bytes_moved)
        finally:
            link.close()
            self._end()

    def _end(self) -> None:
        self.ended = self.clock.monotonic()

    def status(self) -> dict[str, Any]:
        """This half as a JSON-ready mapping: pipe, peer, state, stages, connections."""
        pipe = self.pipe
        snap = pipe.status() if pipe is not None and self.state == "running" else None
        out: dict[str, Any] = {
            "pipe": self.name, "local_name": self.local_name, "node": self.node, "peer": self.peer,
            "direction": self.direction, "module": self.module, "state": self.state, "connections": self.n_connections,
            "resume_from": self.half.resume_from,
            "durable": self.half.checkpoint.value if self.half.checkpoint else None,
            "stages": [asdict(s.figures()) for s in snap.stages] if snap else [],
            "links": [asdict(c) for c in self.link.status()] if self.link else [],
        }
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        if self.result:
            out["result"] = self.result
        return out
