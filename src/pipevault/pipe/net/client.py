"""Client side of the control port: extend a pipe to a server and run the local half.

Typical push (local data to a server-side tail; see docs/protocol.md for the messages)::

    creds = Credentials("node1", secret)
    remote = RemotePipe.extend("server:7070", creds, direction="push", module="file",
                               params={"path": "backup.img"}, connections=4)
    pipe = Pipe([StageSpec("read", partial(FileReader, src, remote.resume_from)),
                 remote.agent_stage()], buffer_size=remote.buffer_size,
                max_buffers=remote.max_buffers, name=remote.pipe_name)
    remote.run(pipe)

A pull is the mirror image: the server runs the head (``module`` names a head) and the
local pipe starts with ``remote.agent_stage()``, the pseudo-head.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipevault.errors import PipevaultError, error_from_dict
from pipevault.pipe._module import StageSpec
from pipevault.pipe._names import new_pipe_name
from pipevault.pipe._pipe import Pipe, PipeResult
from pipevault.pipe.net import wire
from pipevault.pipe.net.agents import NetReceiver, NetSender
from pipevault.pipe.net.auth import client_handshake
from pipevault.pipe.net.checkpoint import Checkpoint
from pipevault.pipe.net.errors import ConnectionLost, NetError, RemoteFailed
from pipevault.pipe.net.link import DataLink, tune

DEFAULT_CONNECTIONS = 4
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Credentials:
    """A node's name and its secret (the same bytes as registered on the server)."""

    node: str
    secret: bytes


def load_credentials(node: str | None = None, secret_file: str | None = None) -> Credentials:
    """A node's credentials from arguments or ``PIPEVAULT_NODE`` / ``PIPEVAULT_SECRET_FILE``.

    The secret file holds the secret as hex digits (as printed by ``pipevault serve
    --add-node``); it should be readable by its owner only.

    Raises:
        NetError: no node or secret file given, or the file holds no hex secret.
    """
    node = node or os.environ.get("PIPEVAULT_NODE")
    secret_file = secret_file or os.environ.get("PIPEVAULT_SECRET_FILE")
    if not node or not secret_file:
        raise NetError("a node name and its secret file are needed to reach a server",
                       hint="Pass --node NAME --secret-file FILE (or set PIPEVAULT_NODE and "
                            "PIPEVAULT_SECRET_FILE); the server prints the secret at --add-node.")
    try:
        secret = bytes.fromhex(Path(secret_file).read_text().strip())
    except (OSError, ValueError) as exc:
        raise NetError(f"cannot read a hex secret from {secret_file}: {exc}") from exc
    if len(secret) < 16:
        raise NetError(f"the secret in {secret_file} is shorter than 16 bytes")
    return Credentials(node, secret)


def parse_address(address: str, listen: bool = False) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` to ``(host, port)``; port 0 only to ``listen``.

    Raises:
        NetError: not of that form.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not int(not listen) <= int(port) < 65536:
        raise NetError(f"bad server address {address!r}", hint="Write HOST:PORT, e.g. 10.0.0.2:7070.")
    return host.strip("[]"), int(port)


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S, window: int | None = None) -> socket.socket:
    """A TCP connection to ``address`` ("host:port"), or a unix socket ("unix:/path").

    Raises:
        ConnectionLost: nothing listens there or the network refused (transient).
    """
    if address.startswith("unix:"):
        sock, target = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), address[5:]
    else:
        host, port = parse_address(address)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        target = (host, port)  # type: ignore[assignment]
        if window:
            tune(sock, window)  # buffer sizes must be set before connect to bound the window
    try:
        sock.settimeout(timeout)
        sock.connect(target)
        return sock
    except OSError as exc:
        sock.close()
        raise ConnectionLost(f"cannot reach pipevault server at {address}: {exc}",
                             hint="Check the address and that `pipevault serve` runs there.") from exc


def request(sock: socket.socket, op: str, **args: Any) -> dict[str, Any]:
    """Send one REQUEST and return the REPLY's object.

    Raises:
        PipevaultError: the server's error, rebuilt with its own class when known here.
    """
    wire.send_json(sock, wire.K_REQUEST, {"op": op, **args})
    kind, obj = wire.expect_json(sock, wire.K_REPLY, wire.K_ERROR)
    if kind == wire.K_ERROR:
        raise error_from_dict(obj)
    return obj


class ControlClient:
    """An authenticated control connection (TCP with a node's credentials, or the local
    unix socket, authenticated by the caller's user id). Close it, or use it as a context."""

    def __init__(self, address: str, creds: Credentials | None = None,
                 timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.address = address
        self.sock = connect(address, timeout)
        try:
            if not address.startswith("unix:"):
                if creds is None:
                    raise NetError(f"{address} is a network address: a node name and secret are needed")
                client_handshake(self.sock, creds.node, creds.secret, "control")
        except BaseException:
            self.sock.close()
            raise

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """One request and its reply (see :func:`request`)."""
        return request(self.sock, op, **args)

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DataConnections:
    """Opens ``n`` data connections at once, and authenticates them while Extend_Pipe is
    still being answered (each costs round trips that would otherwise add up on a long
    link); :meth:`attach` then attaches them to the transfer, :meth:`cancel` drops them."""

    def __init__(self, server: str, creds: Credentials, n: int, window: int | None) -> None:
        self.server, self.creds, self.window = server, creds, window
        self.socks: list[socket.socket | None] = [None] * n
        self.errors: list[BaseException] = []
        self._transfer: str | None = None
        self._go = threading.Event()
        self._threads = [threading.Thread(target=self._open, args=(i,), name=f"pv-connect#{i}")
                         for i in range(n)]
        for t in self._threads:
            t.start()

    def _open(self, index: int) -> None:
        try:
            sock = connect(self.server, window=self.window)
            self.socks[index] = sock
            client_handshake(sock, self.creds.node, self.creds.secret, "data")
            self._go.wait()
            if self._transfer is not None:
                request(sock, "attach", transfer=self._transfer, index=index)
                tune(sock, self.window)
        except BaseException as exc:
            self.errors.append(exc)

    def _finish(self, transfer: str | None) -> list[socket.socket]:
        self._transfer = transfer
        self._go.set()
        for t in self._threads:
            t.join()
        return [s for s in self.socks if s is not None]

    def attach(self, transfer: str) -> list[socket.socket]:
        """Attach every connection to ``transfer``; all or none (the error of the first)."""
        opened = self._finish(transfer)
        if self.errors or len(opened) != len(self.socks):
            for s in opened:
                s.close()
            raise self.errors[0] if self.errors else NetError("a data connection did not open")
        return opened

    def cancel(self) -> None:
        """Close every connection (Extend_Pipe failed)."""
        for s in self._finish(None):
            s.close()


class RemotePipe:
    """A pipe extended to a server (Extend_Pipe): the remote half runs there, ready for data.

    Attributes:
        pipe_name: the pipe's name on both machines.
        transfer: the server's token for this pipe's data connections.
        resume_from: for a push with ``resume``, the stream bytes the server already holds
            durably: the local head must start the stream there. 0 otherwise.
        link: the data connections, connected and authenticated.
    """

    def __init__(self, server: str, direction: str, reply: Mapping[str, Any], link: DataLink,
                 buffer_size: int, max_buffers: int, pipe_name: str) -> None:
        self.server = server
        self.direction = direction
        self.transfer = str(reply["transfer"])
        self.resume_from = int(reply.get("resume_from", 0))
        self.link = link
        self.buffer_size = buffer_size
        self.max_buffers = max_buffers
        self.pipe_name = pipe_name
        self.checkpoint: Checkpoint | None = None

    @classmethod
    def extend(cls, server: str, creds: Credentials, *, direction: str, module: str,
               params: Mapping[str, Any] | None = None, connections: int = DEFAULT_CONNECTIONS,
               resume: bool = False, buffer_size: int = 1 << 20, max_buffers: int = 64,
               window: int | None = None, pipe_name: str | None = None) -> RemotePipe:
        """Ask the server at ``server`` to build the remote half, then open the connections.

        ``direction`` is "push" (``module`` names a tail the server runs after its
        pseudo-head) or "pull" (``module`` names a head the server runs before its
        pseudo-tail). ``window`` clamps each connection's socket buffers.

        Raises:
            AuthRefused: unknown node or wrong secret (on any connection).
            ConnectionLost: the server cannot be reached.
            PipevaultError: the server's refusal (unknown module, access denied, ...).
        """
        if direction not in ("push", "pull"):
            raise NetError(f"direction must be push or pull, not {direction!r}")
        if not 1 <= connections <= 64:
            raise NetError(f"{connections} connections: use 1 to 64")
        name = pipe_name or new_pipe_name()
        data = _DataConnections(server, creds, connections, window)
        try:
            with ControlClient(server, creds) as control:
                reply = control.request("extend_pipe", pipe=name, direction=direction, module=module,
                                        params=dict(params or {}), connections=connections,
                                        resume=resume, buffer_size=buffer_size, max_buffers=max_buffers)
        except BaseException:
            data.cancel()
            raise
        socks = data.attach(str(reply["transfer"]))
        return cls(server, direction, reply, DataLink(socks, server), buffer_size, max_buffers, name)

    def agent_stage(self, name: str = "net") -> StageSpec:
        """The local network agent: the pseudo-tail (push, one instance per connection) or
        the pseudo-head (pull, one instance multiplexing them)."""
        if self.direction == "push":
            return StageSpec(name, lambda: NetSender(self.link), instances=len(self.link))
        return StageSpec(name, lambda: NetReceiver(self.link, self.checkpoint), allocates=True)

    def run(self, pipe: Pipe) -> PipeResult:
        """Run the local half to the end, then end the link (DONE on a pull) and close it.

        Raises:
            RemoteFailed: the server's half failed (its error is quoted).
            ConnectionLost: a connection dropped; the message says how far the server is
                durable, and ``--resume`` continues from there.
            PipevaultError: the local half failed; the server was told (ABORT).
        """
        publisher = LinkPublisher(self)
        publisher.start()
        try:
            result = pipe.run()
        except PipevaultError as exc:
            self.link.abort(exc)
            if isinstance(exc, ConnectionLost):
                exc.add_note(f"the server holds {self.link.acked} bytes of this stream durably")
                exc.details["durable"] = self.link.acked
            raise
        except BaseException as exc:
            self.link.abort(exc)
            raise
        else:
            if self.direction == "pull":
                durable = self.checkpoint.value if self.checkpoint else result.bytes_moved
                self.link.finish({"bytes": result.bytes_moved, "durable": durable})
            return result
        finally:
            publisher.stop()
            self.link.close()

    @property
    def remote_result(self) -> dict[str, Any]:
        """The server's DONE payload after a push (bytes, durable, and the module's extras)."""
        if self.link.remote_result is None:
            raise RemoteFailed(f"{self.server} did not confirm the transfer")
        return self.link.remote_result


LINKS_DIR = Path("/dev/shm")
PUBLISH_S = 0.5


def link_file(pipe_name: str) -> Path:
    """Where the local half of a remote pipe publishes its connections for `pipevault status`."""
    return LINKS_DIR / f"pvlink-{pipe_name}.json"


class LinkPublisher:
    """Writes a running RemotePipe's peer and per-connection figures to :func:`link_file`
    every half second (the pipe's stages are read from its pool), and removes it at the end."""

    def __init__(self, remote: RemotePipe) -> None:
        self.remote = remote
        self.path = link_file(remote.pipe_name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="pv-link-status", daemon=True)

    def start(self) -> None:
        """Begin publishing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and remove the file."""
        self._stop.set()
        self._thread.join(2)
        self.path.unlink(missing_ok=True)

    def _main(self) -> None:
        while True:
            r = self.remote
            data = {"peer": r.server, "direction": r.direction, "transfer": r.transfer,
                    "durable": r.link.acked, "resume_from": r.resume_from,
                    "links": [asdict(c) for c in r.link.status()]}
            tmp = self.path.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(data))
                os.replace(tmp, self.path)
            except OSError:
                return  # no /dev/shm here: status shows the stages without the connections
            if self._stop.wait(PUBLISH_S):
                return
