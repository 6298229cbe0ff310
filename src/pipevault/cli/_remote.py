"""The options of jobs that run through a `pipevault serve` daemon (``--server`` and friends)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pipevault.config import Settings
from pipevault.errors import UsageError
from pipevault.mover.remote import Server
from pipevault.pipe.net.client import DEFAULT_CONNECTIONS, load_credentials

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--server", default=None, metavar="HOST:PORT",
                 help="Run through the pipevault daemon there (its pools and catalog keep the data)."),
    click.option("--connections", type=int, default=DEFAULT_CONNECTIONS, show_default=True,
                 help="With --server: parallel data connections."),
    click.option("--node", "node", default=None, metavar="NAME",
                 help="With --server: this machine's node name there (default PIPEVAULT_NODE, else the "
                      "configured node)."),
    click.option("--secret-file", default=None, metavar="FILE",
                 help="With --server: the node's secret (hex; default PIPEVAULT_SECRET_FILE)."),
]


def remote_options(fn: F) -> F:
    """Add --server, --connections, --node and --secret-file to a command."""
    for deco in reversed(_OPTIONS):
        fn = deco(fn)
    return fn


def server_of(settings: Settings, server: str | None, connections: int, node: str | None,
              secret_file: str | None) -> Server | None:
    """The daemon a job goes to (None: run locally).

    Raises:
        UsageError: --connections outside 1..64, or remote options without --server.
        NetError: no secret file, or it holds no secret.
    """
    if server is None:
        if node or secret_file or connections != DEFAULT_CONNECTIONS:
            raise UsageError("--node, --secret-file and --connections go with --server")
        return None
    if not 1 <= connections <= 64:
        raise UsageError(f"--connections {connections}: use 1 to 64")
    name = node or os.environ.get("PIPEVAULT_NODE") or str(settings["node"])
    return Server(server, load_credentials(name, secret_file), connections)
