"""The wire protocol's frames (docs/protocol.md has the byte tables).

Every message on a control or data connection is one frame: a 20-byte header, then
``length`` bytes of payload. Control payloads are UTF-8 JSON objects; a DATA frame's payload
is the raw content of one pool buffer, sent from it and received into one.

Header (network byte order)::

    0  4  magic   b"PVN1"
    4  1  kind    one of the K_* constants
    5  1  flags   0 (reserved, must be 0)
    6  2  channel 0 (reserved, must be 0)
    8  4  length  payload bytes
    12 8  seq     DATA: stream sequence number; END: frames this connection carried;
                  ACK: durable stream bytes; otherwise 0

Functions here block on the socket (which carries the caller's timeout) and raise the
errors of :mod:`pipevault.pipe.net.errors`; none keeps state between calls.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

from pipevault.pipe.net.errors import ConnectionLost, ProtocolError

MAGIC = b"PVN1"
HEADER = struct.Struct("!4sBBHIQ")
HEADER_SIZE = HEADER.size  # 20
MAX_CONTROL = 1 << 20  # a JSON payload larger than this is refused as not our protocol
MAX_DATA = 16 << 20  # the largest pool buffer

# Handshake (docs/protocol.md, "Authentication")
K_HELLO = 0x01
K_CHALLENGE = 0x02
K_AUTH = 0x03
K_WELCOME = 0x04
K_DENIED = 0x05
# Control port
K_REQUEST = 0x10
K_REPLY = 0x11
K_ERROR = 0x12
# Data connections
K_DATA = 0x21
K_END = 0x22
K_ACK = 0x23
K_DONE = 0x24
K_ABORT = 0x25

KIND_NAMES = {K_HELLO: "HELLO", K_CHALLENGE: "CHALLENGE", K_AUTH: "AUTH", K_WELCOME: "WELCOME",
              K_DENIED: "DENIED", K_REQUEST: "REQUEST", K_REPLY: "REPLY", K_ERROR: "ERROR",
              K_DATA: "DATA", K_END: "END", K_ACK: "ACK", K_DONE: "DONE",
              K_ABORT: "ABORT"}


def header(kind: int, length: int = 0, seq: int = 0) -> bytes:
    """The 20 header bytes of a frame."""
    return HEADER.pack(MAGIC, kind, 0, 0, length, seq)


def parse_header(raw: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """``(kind, length, seq)`` of a header.

    Raises:
        ProtocolError: wrong magic, unknown kind, reserved bits set or an oversized payload.
    """
    magic, kind, flags, channel, length, seq = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {bytes(magic)!r}: the peer does not speak pipevault "
                            "protocol 1")
    if kind not in KIND_NAMES or flags or channel:
        raise ProtocolError(f"unknown frame kind {kind:#x} or reserved bits set")
    limit = MAX_DATA if kind == K_DATA else MAX_CONTROL
    if length > limit:
        raise ProtocolError(f"{KIND_NAMES[kind]} frame of {length} bytes exceeds {limit}")
    return kind, length, seq


def send_all(sock: socket.socket, parts: list[Any]) -> int:
    """Send every byte of ``parts`` (bytes-likes) with ``sendmsg``, no copies; returns bytes sent.

    Raises:
        ConnectionLost: the connection broke or stayed blocked past the socket's timeout.
    """
    views = [memoryview(p).cast("B") for p in parts]
    total = sum(v.nbytes for v in views)
    left = total
    try:
        while left:
            n = sock.sendmsg(views)
            left -= n
            while n:
                head = views[0]
                if n >= head.nbytes:
                    n -= head.nbytes
                    views.pop(0)
                else:
                    views[0] = head[n:]
                    n = 0
    except (TimeoutError, OSError) as exc:
        raise ConnectionLost(f"sending to {_peer(sock)} failed: {exc}") from exc
    return total


def recv_into_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from the socket.

    Raises:
        ConnectionLost: the peer closed, the connection broke, or the socket's timeout passed.
    """
    got, n = 0, len(view)
    try:
        while got < n:
            k = sock.recv_into(view[got:], n - got)
            if k == 0:
                raise ConnectionLost(f"{_peer(sock)} closed the connection "
                                     f"({got} of {n} bytes of a frame received)")
            got += k
    except (TimeoutError, OSError) as exc:
        raise ConnectionLost(f"receiving from {_peer(sock)} failed: {exc}") from exc


def read_frame(sock: socket.socket) -> tuple[int, int, bytes]:
    """One whole frame ``(kind, seq, payload)``; for control frames and small data frames."""
    raw = bytearray(HEADER_SIZE)
    recv_into_exact(sock, memoryview(raw))
    kind, length, seq = parse_header(raw)
    payload = bytearray(length)
    if length:
        recv_into_exact(sock, memoryview(payload))
    return kind, seq, bytes(payload)


def send_json(sock: socket.socket, kind: int, obj: dict[str, Any], seq: int = 0) -> None:
    """Send a frame whose payload is ``obj`` as JSON."""
    payload = json.dumps(obj, separators=(",", ":")).encode()
    send_all(sock, [header(kind, len(payload), seq), payload])


def decode_json(kind: int, payload: bytes) -> dict[str, Any]:
    """The JSON object of a control payload.

    Raises:
        ProtocolError: not a JSON object.
    """
    try:
        obj = json.loads(payload.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{KIND_NAMES.get(kind, kind)} frame does not carry JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{KIND_NAMES.get(kind, kind)} frame carries {type(obj).__name__}, "
                            "not an object")
    return obj


def expect_json(sock: socket.socket, *kinds: int) -> tuple[int, dict[str, Any]]:
    """Read one frame that must be one of ``kinds`` with a JSON payload.

    Raises:
        ProtocolError: another kind of frame arrived.
    """
    kind, _, payload = read_frame(sock)
    if kind not in kinds:
        want = "/".join(KIND_NAMES[k] for k in kinds)
        raise ProtocolError(f"expected {want} from {_peer(sock)}, got {KIND_NAMES[kind]}")
    return kind, decode_json(kind, payload)


def _peer(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "the peer"
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return str(peer) or "the local peer"
