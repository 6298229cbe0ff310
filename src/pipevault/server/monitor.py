"""The Master_Monitor of seed 002: the pipes this machine runs for remote peers.

Requests arrive already authenticated (a node over TCP, or the machine's own user on the
local socket) as ``{"op": ..., ...}`` objects; :meth:`Monitor.handle` answers with a reply
object or raises a :class:`PipevaultError` that goes back as an ERROR frame.

Operations (docs/protocol.md has every field): ``extend_pipe`` (Extend_Pipe: build this
machine's half and wait for its data connections), ``stop_pipe`` (STOP_PIPE), ``status``
and ``ping``; data connections send ``attach``. On the local socket only:
``initiate_pipe`` (Initiate_Pipe, possibly with unbound stages) and ``send_ident``
(SEND_IDENT, handled with the connection by the daemon). A node sees and stops only its own pipes;
the local socket sees every pipe, including pipes of this machine the daemon does not own.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipevault.clock import SYSTEM, Clock
from pipevault.config import Settings
from pipevault.pipe import sweep_stale
from pipevault.pipe._names import list_segments
from pipevault.pipe._pool import BufferPool
from pipevault.pipe._status import read_status
from pipevault.pipe.errors import PipeNotFound
from pipevault.pipe.net.client import link_file
from pipevault.pipe.net.errors import ProtocolError
from pipevault.server import halves
from pipevault.server.errors import AccessDenied, NoSuchPipe, ServerError
from pipevault.server.local import IDENT_TIMEOUT_S, LocalPipe, UnboundSlot
from pipevault.server.session import ATTACH_TIMEOUT_S, Session

log = logging.getLogger("pipevault.server")
LINGER_S = 300.0  # how long an ended session stays in status
PIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
LOCAL = "(local)"  # the node name of requests on the local socket


class Monitor:
    """Owns this machine's remote pipe halves. Thread-safe: one thread per connection calls in."""

    def __init__(self, home: Path, clock: Clock = SYSTEM, attach_timeout: float = ATTACH_TIMEOUT_S,
                 settings: Settings | None = None) -> None:
        self.home = home
        self.settings = settings
        self.clock = clock
        self.attach_timeout = attach_timeout
        self._sessions: dict[str, Session] = {}
        self._by_transfer: dict[str, Session] = {}
        self._local: dict[str, LocalPipe] = {}
        self._lock = threading.Lock()

    def node_root(self, node: str) -> Path:
        """The node's own data area."""
        return self.home / "nodes" / node

    def handle(self, node: str, peer: str, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request from ``node`` (or :data:`LOCAL`)."""
        op = req.get("op")
        self._prune()
        if op == "ping":
            return {"ok": True}
        if op == "extend_pipe":
            return self._extend(node, peer, req)
        if op == "stop_pipe":
            return self._stop(node, str(req.get("pipe", "")))
        if op == "status":
            return {"pipes": self.status(None if node == LOCAL else node)}
        if op == "initiate_pipe":
            return self._initiate(node, req)
        handler = halves.operation(str(op))
        if handler is not None:
            if node == LOCAL:
                raise AccessDenied(f"{op} comes from a node over the network, not the local socket")
            params = req.get("params") or {}
            if not isinstance(params, dict):
                raise ServerError(f"bad {op}: params must be an object")
            return handler(halves.HalfRequest(node, self.node_root(node), params, False, "", self.settings))
        raise ProtocolError(f"unknown control operation {op!r}")

    def _extend(self, node: str, peer: str, req: dict[str, Any]) -> dict[str, Any]:
        if node == LOCAL:
            raise AccessDenied("Extend_Pipe comes from a node over the network, not the local socket")
        name = str(req.get("pipe", ""))
        direction = str(req.get("direction", ""))
        module = str(req.get("module", ""))
        params = req.get("params") or {}
        try:
            connections = int(req.get("connections", 4))
            buffer_size = int(req.get("buffer_size", 1 << 20))
            max_buffers = int(req.get("max_buffers", 64))
        except (TypeError, ValueError) as exc:
            raise ServerError(f"bad Extend_Pipe numbers: {exc}") from exc
        if not PIPE_NAME.match(name) or not isinstance(params, dict) or direction not in ("push", "pull"):
            raise ServerError("bad Extend_Pipe: pipe name, direction or params")
        if not 1 <= connections <= 64 or max_buffers < 2 * connections:
            raise ServerError(f"bad Extend_Pipe: {connections} connections with {max_buffers} buffers")
        hreq = halves.HalfRequest(node, self.node_root(node), params, bool(req.get("resume")), name, self.settings)
        with self._lock:
            old = self._sessions.get(name)
            if old is not None and old.ended is None:
                raise ServerError(f"pipe {name} already runs on this server")
            target = params.get("path")
            busy = [s.name for s in self._sessions.values()
                    if s.ended is None and target is not None and s.node == node
                    and s.direction == direction == "push" and s.module == module
                    and s.params.get("path") == target]
            if busy:
                raise ServerError(f"{target!r} of node {node} is being written by pipe {busy[0]}",
                                  hint="Wait for it to end (pipevault status) or stop it first.")
            try:
                half = halves.build(direction, module, hreq)
            except OSError as exc:
                raise ServerError(f"cannot prepare {direction} module {module}: {exc}") from exc
            session = Session(name, node, peer, direction, module, half, connections, buffer_size,
                              max_buffers, self.clock, self.attach_timeout)
            session.params = dict(params)
            self._sessions[name] = session
            self._by_transfer[session.transfer] = session
        session.start()
        log.info("node %s from %s extended pipe %s: %s %s over %d connections%s", node, peer, name,
                 direction, module, connections,
                 f", resuming at {half.resume_from}" if half.resume_from else "")
        return {"pipe": name, "transfer": session.transfer, "resume_from": half.resume_from}

    def attach(self, node: str, req: dict[str, Any], sock: socket.socket,
               accept: Callable[[], None]) -> Session:
        """A data connection's ``attach``: hand ``sock`` to its session (``accept`` answers
        the client first).

        Raises:
            NoSuchPipe: unknown transfer token, or the slot is invalid or taken.
            AccessDenied: the transfer belongs to another node.
        """
        with self._lock:
            session = self._by_transfer.get(str(req.get("transfer", "")))
        if session is None:
            raise NoSuchPipe("no transfer with that token is waiting for connections")
        if session.node != node:
            log.warning("node %s tried to attach to pipe %s of node %s", node, session.name, session.node)
            raise AccessDenied(f"pipe {session.name} is not node {node}'s")
        index = req.get("index")
        if not isinstance(index, int) or not session.attach(index, sock, accept):
            raise NoSuchPipe(f"pipe {session.name} takes no data connection {index!r}")
        return session

    def _initiate(self, node: str, req: dict[str, Any]) -> dict[str, Any]:
        if node != LOCAL:
            raise AccessDenied("Initiate_Pipe is taken on the local socket only")
        stages = req.get("stages")
        if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
            raise ServerError("Initiate_Pipe needs a list of stage objects")
        try:
            pipe = LocalPipe(stages, int(req.get("buffer_size", 1 << 20)), int(req.get("max_buffers", 64)),
                             float(req.get("ident_timeout", IDENT_TIMEOUT_S)))
        except (TypeError, ValueError) as exc:
            raise ServerError(f"bad Initiate_Pipe: {exc}") from exc
        with self._lock:
            self._local[pipe.name] = pipe
        pipe.start()
        log.info("initiated local pipe %s: %s", pipe.name, " -> ".join(str(s.get("name")) for s in stages))
        return {"pipe": pipe.name, "unbound": [f"{s}#{k}" for s, k in pipe.slots]}

    def send_ident(self, req: dict[str, Any]) -> tuple[LocalPipe, int, UnboundSlot]:
        """SEND_IDENT of an unbound module: claim its slot in a local pipe.

        Raises:
            NoSuchPipe: no such pipe, or the slot is unknown or taken.
        """
        with self._lock:
            pipe = self._local.get(str(req.get("pipe", "")))
        if pipe is None:
            raise NoSuchPipe(f"no local pipe {req.get('pipe')!r} on this machine")
        index, slot = pipe.claim(str(req.get("stage", "")), int(req.get("instance", 0)),
                                 int(req.get("pid", 0)))
        log.info("pid %s attached to pipe %s as unbound %s#%d", req.get("pid"), pipe.name, slot.stage,
                 slot.instance)
        return pipe, index, slot

    def _stop(self, node: str, name: str) -> dict[str, Any]:
        with self._lock:
            local = self._local.get(name)
        if local is not None and node == LOCAL:
            local.pipe.stop()
            return {"pipe": name, "stopping": True}
        with self._lock:
            session = self._sessions.get(name)
        if session is None:
            raise NoSuchPipe(f"no pipe {name} on this server")
        if node not in (LOCAL, session.node):
            raise AccessDenied(f"pipe {name} is not node {node}'s")
        session.stop()
        log.info("pipe %s stopped on request of %s", name, node)
        return {"pipe": name, "stopping": True}

    def status(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every session (only ``node``'s if given); for the local view also the other pipes
        running on this machine (by their shared segments)."""
        with self._lock:
            sessions = [s for s in self._sessions.values() if node is None or s.node == node]
        out = [s.status() for s in sessions]
        if node is None:
            with self._lock:
                local = list(self._local.values())
            out.extend(p.status() for p in local)
            owned = {s.local_name or s.name for s in sessions} | {p.name for p in local}
            out.extend(local_pipes(exclude=owned))
        return out

    def stop_all(self) -> None:
        """Stop every running session and wait (briefly) for their threads."""
        with self._lock:
            sessions = list(self._sessions.values())
            local = list(self._local.values())
        for s in sessions:
            s.stop()
        for p in local:
            p.pipe.stop()
        for t in [s.thread for s in sessions] + [p.thread for p in local]:
            if t.is_alive():
                t.join(5)

    def _prune(self) -> None:
        now = self.clock.monotonic()
        with self._lock:
            for name, s in list(self._sessions.items()):
                if s.ended is not None and now - s.ended > LINGER_S:
                    del self._sessions[name]
                    self._by_transfer.pop(s.transfer, None)
            for name, p in list(self._local.items()):
                if p.ended is not None and now - p.ended > LINGER_S:
                    del self._local[name]


def local_pipes(exclude: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Status of the pipes running on this machine that the daemon does not own (read by
    attaching to their shared segments for status only)."""
    sweep_stale()
    out = []
    for name in list_segments():
        if name in exclude:
            continue
        try:
            pool = BufferPool.attach(name, SYSTEM.monotonic, status_only=True)
        except PipeNotFound:
            continue
        try:
            snap = read_status(pool)
        finally:
            pool.close()
        entry = {"pipe": name, "node": None, "peer": None, "direction": "local", "module": None,
                 "state": snap.state, "stages": [asdict(s.figures()) for s in snap.stages],
                 "links": []}
        entry.update(_published_link(name))
        out.append(entry)
    return out


def _published_link(pipe: str) -> dict[str, Any]:
    """The peer and connections a client-side half publishes (see ``LinkPublisher``)."""
    try:
        data = json.loads(link_file(pipe).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

