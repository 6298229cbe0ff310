"""Challenge and response on every control and data connection (docs/protocol.md).

Each node has its own secret, registered on the server. Neither side ever sends it: the
client proves it knows the secret by an HMAC-SHA256 over both sides' fresh 32-byte nonces,
its node name and the connection's purpose; the server answers with an HMAC of its own over
the same values (with another role label), so a client also knows it reached a server that
holds its secret. An unknown node gets a challenge like any other and is refused only after
answering, so a prober learns nothing about which node names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import socket
from collections.abc import Callable

from pipevault.pipe.net import wire
from pipevault.pipe.net.errors import AuthRefused, ProtocolError

NONCE_BYTES = 32
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PURPOSES = ("control", "data")


def mac(secret: bytes, role: str, node: str, purpose: str, server_nonce: bytes,
        client_nonce: bytes) -> bytes:
    """HMAC-SHA256 over the handshake transcript; ``role`` is "client" or "server"."""
    msg = b"\0".join([b"pipevault-auth-1", role.encode(), node.encode(), purpose.encode(),
                      server_nonce, client_nonce])
    return hmac.new(secret, msg, hashlib.sha256).digest()


def valid_node_name(node: str) -> bool:
    """Node names are 1-64 characters of letters, digits, dot, dash and underscore."""
    return bool(NODE_NAME.match(node))


def client_handshake(sock: socket.socket, node: str, secret: bytes, purpose: str) -> None:
    """Authenticate this end of ``sock`` as ``node``; returns once both sides are proven.

    Raises:
        AuthRefused: the server refused us, or its proof did not match our secret.
        ConnectionLost, ProtocolError: the connection broke or the peer is not a server.
    """
    client_nonce = secrets.token_bytes(NONCE_BYTES)
    wire.send_json(sock, wire.K_HELLO, {"version": 1, "node": node, "purpose": purpose,
                                        "nonce": client_nonce.hex()})
    kind, obj = wire.expect_json(sock, wire.K_CHALLENGE, wire.K_DENIED)
    if kind == wire.K_DENIED:
        raise AuthRefused(f"server refused node {node!r}: {obj.get('message', '')}")
    server_nonce = _nonce(obj)
    wire.send_json(sock, wire.K_AUTH, {"mac": mac(secret, "client", node, purpose, server_nonce,
                                                  client_nonce).hex()})
    kind, obj = wire.expect_json(sock, wire.K_WELCOME, wire.K_DENIED)
    if kind == wire.K_DENIED:
        raise AuthRefused(f"server refused node {node!r}: {obj.get('message', 'wrong secret')}")
    proof = _hex(obj.get("mac"))
    if not hmac.compare_digest(proof, mac(secret, "server", node, purpose, server_nonce,
                                          client_nonce)):
        raise AuthRefused("the server could not prove it holds this node's secret "
                          "(wrong server, or the node's secret differs there)")


def server_handshake(sock: socket.socket, secret_of: Callable[[str], bytes | None]) -> tuple[str, str]:
    """Authenticate the client on ``sock``; returns ``(node, purpose)``.

    ``secret_of`` returns a node's secret or None for an unknown node.

    Raises:
        AuthRefused: unknown node or wrong answer (a DENIED frame was sent first).
        ConnectionLost, ProtocolError: the connection broke or the peer is not a client.
    """
    _, hello = wire.expect_json(sock, wire.K_HELLO)
    node = str(hello.get("node", ""))
    purpose = str(hello.get("purpose", ""))
    if hello.get("version") != 1 or purpose not in PURPOSES or not valid_node_name(node):
        _deny(sock, "malformed HELLO (version, purpose or node name)")
        raise AuthRefused(f"malformed HELLO for node {node[:64]!r}")
    client_nonce = _nonce(hello)
    server_nonce = secrets.token_bytes(NONCE_BYTES)
    wire.send_json(sock, wire.K_CHALLENGE, {"nonce": server_nonce.hex()})
    _, answer = wire.expect_json(sock, wire.K_AUTH)
    secret = secret_of(node)
    expected = mac(secret or b"", "client", node, purpose, server_nonce, client_nonce)
    if not hmac.compare_digest(_hex(answer.get("mac")), expected) or secret is None:
        _deny(sock, "unknown node or wrong secret")
        raise AuthRefused(f"node {node!r}: {'unknown node' if secret is None else 'wrong secret'}")
    wire.send_json(sock, wire.K_WELCOME, {"mac": mac(secret, "server", node, purpose, server_nonce,
                                                     client_nonce).hex()})
    return node, purpose


def _deny(sock: socket.socket, why: str) -> None:
    try:
        wire.send_json(sock, wire.K_DENIED, {"code": AuthRefused.code, "message": why})
    except Exception:
        pass  # the refusal stands whether or not the peer hears it


def _hex(value: object) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        return b""


def _nonce(obj: dict[str, object]) -> bytes:
    nonce = _hex(obj.get("nonce"))
    if len(nonce) != NONCE_BYTES:
        raise ProtocolError("handshake nonce missing or of the wrong size")
    return nonce
