"""Frames and the challenge-response handshake, over real socket pairs."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipevault.pipe.net import wire
from pipevault.pipe.net.auth import client_handshake, server_handshake
from pipevault.pipe.net.errors import AuthRefused, ConnectionLost, ProtocolError

KINDS = sorted(wire.KIND_NAMES)


@given(st.sampled_from(KINDS), st.integers(0, wire.MAX_CONTROL), st.integers(0, 2**64 - 1))
def test_header_round_trip(kind: int, length: int, seq: int) -> None:
    raw = wire.header(kind, length, seq)
    assert len(raw) == wire.HEADER_SIZE == 20
    assert wire.parse_header(raw) == (kind, length, seq)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\n\r\n\0",
    wire.HEADER.pack(wire.MAGIC, 0x7F, 0, 0, 0, 0),
    wire.HEADER.pack(wire.MAGIC, wire.K_DATA, 1, 0, 0, 0),
    wire.HEADER.pack(wire.MAGIC, wire.K_REQUEST, 0, 0, wire.MAX_CONTROL + 1, 0),
    wire.HEADER.pack(wire.MAGIC, wire.K_DATA, 0, 0, wire.MAX_DATA + 1, 0),
])
def test_bad_headers_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.parse_header(raw[: wire.HEADER_SIZE])


def test_json_frames_and_truncation() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(2)
        b.settimeout(2)
        wire.send_json(a, wire.K_REQUEST, {"op": "ping", "n": [1, 2]})
        assert wire.expect_json(b, wire.K_REQUEST) == (wire.K_REQUEST, {"op": "ping", "n": [1, 2]})
        wire.send_all(a, [wire.header(wire.K_REPLY, 3), b"[1]"])
        with pytest.raises(ProtocolError, match="not an object"):
            wire.expect_json(b, wire.K_REPLY)
        wire.send_all(a, [wire.header(wire.K_REPLY, 100), b"{}"])
        a.close()
        with pytest.raises(ConnectionLost, match="closed"):
            wire.read_frame(b)


def _handshake(client_node: str, client_secret: bytes, known: dict[str, bytes]) -> dict[str, Any]:
    a, b = socket.socketpair()
    out: dict[str, Any] = {}

    def server() -> None:
        try:
            out["server"] = server_handshake(b, known.get)
        except AuthRefused as exc:
            out["server_error"] = exc

    t = threading.Thread(target=server)
    with a, b:
        a.settimeout(5)
        b.settimeout(5)
        t.start()
        try:
            client_handshake(a, client_node, client_secret, "control")
            out["client"] = "ok"
        except AuthRefused as exc:
            out["client_error"] = exc
        t.join(5)
    return out


def test_handshake_accepts_the_right_secret() -> None:
    out = _handshake("n1", b"s" * 32, {"n1": b"s" * 32})
    assert out == {"server": ("n1", "control"), "client": "ok"}


def test_handshake_refuses_wrong_secret_and_unknown_node_alike() -> None:
    wrong = _handshake("n1", b"x" * 32, {"n1": b"s" * 32})
    unknown = _handshake("ghost", b"s" * 32, {"n1": b"s" * 32})
    assert "wrong secret" in wrong["server_error"].message
    assert "unknown node" in unknown["server_error"].message
    # The client is told the same thing in both cases.
    assert wrong["client_error"].message == unknown["client_error"].message.replace("ghost", "n1")


def test_client_refuses_a_server_that_cannot_prove_the_secret() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(5)
        b.settimeout(5)

        def fake_server() -> None:
            wire.expect_json(b, wire.K_HELLO)
            wire.send_json(b, wire.K_CHALLENGE, {"nonce": "00" * 32})
            wire.expect_json(b, wire.K_AUTH)
            wire.send_json(b, wire.K_WELCOME, {"mac": "11" * 32})

        t = threading.Thread(target=fake_server)
        t.start()
        with pytest.raises(AuthRefused, match="could not prove"):
            client_handshake(a, "n1", b"s" * 32, "data")
        t.join(5)


def test_malformed_hello_is_refused() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(5)
        b.settimeout(5)
        wire.send_json(a, wire.K_HELLO, {"version": 1, "node": "../etc", "purpose": "control",
                                         "nonce": "00" * 32})
        with pytest.raises(AuthRefused, match="malformed"):
            server_handshake(b, lambda n: b"x")
        _, obj = wire.expect_json(a, wire.K_DENIED)
        assert obj["code"] == "net.auth_refused"
