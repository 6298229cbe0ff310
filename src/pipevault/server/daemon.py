"""`pipevault serve`: the daemon's listeners (a TCP control port and a local unix socket).

Every TCP connection is authenticated first (:func:`server_handshake`: a registered node,
HMAC challenge and response); refusals are logged with the peer's address and the
connection is closed. An authenticated ``control`` connection then carries any number of
requests to the :class:`Monitor`; a ``data`` connection carries one ``attach`` and is then
handed to its pipe. The local socket (mode 0600 in the daemon's directory) takes requests
from processes of the daemon's own user (or root), checked with SO_PEERCRED.

One thread per connection; the pipes run in threads of their own. :meth:`Daemon.stop`
stops every pipe (the peers are told) and closes the listeners.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from pipevault.clock import SYSTEM, Clock
from pipevault.config import Settings
from pipevault.errors import InternalError, PipevaultError
from pipevault.pipe.errors import ModuleDied
from pipevault.pipe.net import wire
from pipevault.pipe.net.auth import server_handshake
from pipevault.pipe.net.client import parse_address
from pipevault.pipe.net.errors import AuthRefused, NetError
from pipevault.pipe.net.link import tune
from pipevault.server import store_half  # also registers the store and restore modules
from pipevault.server.errors import AccessDenied, ServerConfigError
from pipevault.server.local import rebuild_error
from pipevault.server.monitor import LOCAL, Monitor
from pipevault.server.nodes import NodeRegistry

log = logging.getLogger("pipevault.server")
HANDSHAKE_TIMEOUT_S = 10.0
IDENT_POLL_S = 0.5
IDLE_TIMEOUT_S = 600.0  # a control connection with no request for this long is closed


class Daemon:
    """The storage-agent daemon of one machine.

    Args:
        home: the daemon's directory (node registry, node areas, the local socket).
        listen: "host:port" for the control port (port 0 picks a free one; see ``port``).
        window: clamp every accepted data connection's socket buffers to this many bytes.
        settings: the site (catalog, pools, classes) remote backups of registered nodes go to
            (opened once here, so a bad configuration stops the daemon at start); without
            it the daemon refuses the ``store`` and ``restore`` modules.
    """

    def __init__(self, home: Path, listen: str = "127.0.0.1:7070", *, clock: Clock = SYSTEM,
                 window: int | None = None, socket_path: Path | None = None,
                 attach_timeout: float | None = None, settings: Settings | None = None) -> None:
        self.home = home
        self.nodes = NodeRegistry(home / "nodes.json")
        if settings is not None:
            store_half.open_site_once(settings)  # fails now, not at the first backup
        kwargs = {} if attach_timeout is None else {"attach_timeout": attach_timeout}
        self.monitor = Monitor(home, clock, settings=settings, **kwargs)
        self.window = window
        self.socket_path = socket_path or home / "pipevault.sock"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        host, port = parse_address(listen, listen=True)
        try:
            self.tcp = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                            else socket.AF_INET, reuse_port=False)
            if window:
                # Accepted sockets inherit the receive buffer, which sets the window they offer.
                self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
            home.mkdir(parents=True, exist_ok=True)
            self.socket_path.unlink(missing_ok=True)
            self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                self.unix.bind(str(self.socket_path))
            finally:
                os.umask(old)
            self.unix.listen()
        except OSError as exc:
            raise ServerConfigError(f"cannot listen on {listen} / {self.socket_path}: {exc}") from exc
        self.port = self.tcp.getsockname()[1]
        self.address = f"{host}:{self.port}"

    def start(self) -> None:
        """Accept connections in background threads; returns at once."""
        for sock, handler in ((self.tcp, self._serve_tcp), (self.unix, self._serve_local)):
            t = threading.Thread(target=self._accept_loop, args=(sock, handler),
                                 name="pv-accept", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("pipevault serving on %s and %s", self.address, self.socket_path)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` was called (True) or ``timeout`` passed (False)."""
        return self._stop.wait(timeout)

    def stop(self) -> None:
        """Stop every pipe and close the listeners. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        for sock in (self.tcp, self.unix):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # a listening socket that was never connected
            sock.close()
        self.monitor.stop_all()
        self.socket_path.unlink(missing_ok=True)
        for t in self._threads:
            t.join(2)

    def _accept_loop(self, listener: socket.socket, handler: Any) -> None:
        while not self._stop.is_set():
            try:
                sock, addr = listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else "local"
            threading.Thread(target=self._guard, args=(handler, sock, peer), name=f"pv-conn:{peer}",
                             daemon=True).start()

    def _guard(self, handler: Any, sock: socket.socket, peer: str) -> None:
        keep = False
        try:
            keep = bool(handler(sock, peer))
        except AuthRefused as exc:
            log.warning("refused connection from %s: %s", peer, exc.message)
        except (NetError, OSError) as exc:
            log.info("connection from %s ended: %s", peer, exc)
        except Exception:
            log.exception("connection from %s failed", peer)
        finally:
            if not keep:
                sock.close()

    def _serve_tcp(self, sock: socket.socket, peer: str) -> bool:
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        node, purpose = server_handshake(sock, self.nodes.secret_of)
        if purpose == "data":
            _, req = wire.expect_json(sock, wire.K_REQUEST)
            if req.get("op") != "attach":
                raise AccessDenied("a data connection must attach to a pipe first")
            def accept() -> None:
                tune(sock, self.window)
                wire.send_json(sock, wire.K_REPLY, {"index": req["index"]})

            try:
                self.monitor.attach(node, req, sock, accept)
            except PipevaultError as exc:
                wire.send_json(sock, wire.K_ERROR, exc.to_dict())
                return False
            return True  # the session owns the socket now
        self._requests(sock, node, peer)
        return False

    def _serve_local(self, sock: socket.socket, peer: str) -> bool:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        if uid not in (0, os.getuid()):
            log.warning("refused local connection from pid %d uid %d", pid, uid)
            wire.send_json(sock, wire.K_ERROR, AccessDenied(
                f"uid {uid} may not control this daemon").to_dict())
            return False
        self._requests(sock, LOCAL, f"local pid {pid}")
        return False

    def _ident(self, sock: socket.socket, req: dict[str, Any]) -> None:
        """SEND_IDENT: this connection becomes the unbound module's control socket."""
        pipe, index, slot = self.monitor.send_ident(req)
        wire.send_json(sock, wire.K_REPLY, {"pipe": pipe.name, "local_name": pipe.name, "stage": index,
                                            "instance": slot.instance})
        slot.attached.set()
        sock.settimeout(IDENT_POLL_S)
        while not slot.reported.is_set():
            try:
                _, report = wire.expect_json(sock, wire.K_REQUEST)
            except NetError as exc:
                if isinstance(exc.__cause__, TimeoutError):
                    continue
                slot.report(error=ModuleDied(f"unbound module {slot.stage}#{slot.instance} (pid "
                                             f"{slot.claimed_by}) went away: {exc.message}"))
                return
            if report.get("op") == "done":
                slot.report(result=report.get("result"))
            elif report.get("op") == "failed":
                slot.report(error=rebuild_error(report.get("error")))
            else:
                continue
            wire.send_json(sock, wire.K_REPLY, {"ok": True})

    def _requests(self, sock: socket.socket, node: str, peer: str) -> None:
        sock.settimeout(IDLE_TIMEOUT_S)
        while not self._stop.is_set():
            try:
                _, req = wire.expect_json(sock, wire.K_REQUEST)
            except NetError:
                return  # the client closed its control connection
            try:
                if req.get("op") == "send_ident" and node == LOCAL:
                    self._ident(sock, req)
                    return
                reply = self.monitor.handle(node, peer, req)
            except PipevaultError as exc:
                wire.send_json(sock, wire.K_ERROR, exc.to_dict())
            except Exception as exc:
                log.exception("request %r from %s failed", req.get("op"), peer)
                wire.send_json(sock, wire.K_ERROR, InternalError(
                    f"the server failed on {req.get('op')!r}: {type(exc).__name__}: {exc}").to_dict())
            else:
                wire.send_json(sock, wire.K_REPLY, reply)
