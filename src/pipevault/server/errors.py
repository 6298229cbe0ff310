"""Errors of the storage-agent daemon (exit codes 65-69; the network agents use 60-64).

::

    ServerError              the daemon failed or refused a request
      UnknownModule          Extend_Pipe named a head or tail the server does not offer
      AccessDenied           a node asked for data or a pipe that is not its own
      NoSuchPipe             no pipe or transfer of that name on this server
      ServerConfigError      the daemon cannot start (address in use, bad node registry)
      NodeBusy               a backup of the node already runs on this server
"""

from __future__ import annotations

from pipevault.errors import PipevaultError


class ServerError(PipevaultError):
    """The storage-agent daemon failed or refused a request."""

    code = "server.error"
    exit_code = 65
    hint = "See the message and the server's log."


class UnknownModule(ServerError):
    """Extend_Pipe named a head or tail module this server does not offer."""

    code = "server.unknown_module"
    exit_code = 66
    hint = "Use one of the modules the server lists in the message."


class AccessDenied(ServerError):
    """A node asked for data or a pipe that is not its own, or for a path outside its area."""

    code = "server.access_denied"
    exit_code = 67
    hint = "A node may use only its own data: name a relative path inside its own area."


class NoSuchPipe(ServerError):
    """No pipe or transfer of that name runs on this server."""

    code = "server.no_such_pipe"
    exit_code = 68
    hint = "List pipes with `pipevault status`; it may have finished or timed out."


class ServerConfigError(ServerError):
    """The daemon cannot start: address in use, unreadable node registry or state directory."""

    code = "server.config"
    exit_code = 69
    hint = "Fix the address, permissions or file named in the message and start it again."


class NodeBusy(ServerError):
    """A backup or archive of the node already runs on this server (one at a time per node)."""

    code = "server.node_busy"
    exit_code = 65
    hint = "Wait for the running backup to end (`pipevault status` on the server) and start again."
