"""Errors of the network agents and their wire protocol (exit codes 60-64).

The server daemon's own errors (65-69) are in :mod:`pipevault.server.errors`; these live
in the pipe layer because the agents, the handshake and the client of the control port do::

    NetError                 a network agent or the wire protocol failed
      ConnectionLost         a data or control connection dropped mid-transfer (transient)
      AuthRefused            the peer refused our node name or secret, or failed to prove its own
      ProtocolError          the peer sent something that is not our protocol
      RemoteFailed           the other machine's half of the pipe failed; its error is named
"""

from __future__ import annotations

from typing import Any

from pipevault.errors import PipevaultError


class NetError(PipevaultError):
    """A network agent or the wire protocol failed."""

    code = "net.error"
    exit_code = 60
    hint = "See the message; check the network path and that `pipevault serve` runs on the server."


class ConnectionLost(NetError):
    """A connection of the pipe dropped mid-transfer; nothing after the last checkpoint is kept."""

    code = "net.connection_lost"
    exit_code = 61
    transient = True
    hint = "Rerun the same command with --resume: it continues from the last durable checkpoint."


class AuthRefused(NetError):
    """Authentication failed: unknown node, wrong secret, or a server that could not prove itself."""

    code = "net.auth_refused"
    exit_code = 62
    hint = ("Check the node name and its secret (registered on the server with "
            "`pipevault serve --add-node NAME`); the server logs every refusal.")


class ProtocolError(NetError):
    """The peer sent data that is not the pipevault wire protocol (or another version of it)."""

    code = "net.protocol"
    exit_code = 63
    hint = "Check that the address is a pipevault server of the same version (docs/protocol.md)."


class RemoteFailed(NetError):
    """The other machine's half of the pipe failed; the remote error's code and message follow."""

    code = "net.remote_failed"
    exit_code = 64
    hint = "The remote side's error is quoted in the message; fix that cause and rerun."

    @classmethod
    def from_wire(cls, where: str, data: dict[str, Any]) -> RemoteFailed:
        """An error built from an ABORT frame's ``{"code", "message", "hint"}``."""
        code = str(data.get("code", "error"))
        message = str(data.get("message", "no message"))
        hint = data.get("hint")
        return cls(f"{where}: [{code}] {message}", hint=str(hint) if hint else None,
                   remote_code=code)
