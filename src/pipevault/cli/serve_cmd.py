"""``pipevault serve``: the storage-agent daemon (master monitor and network agents).

Runs in the foreground until SIGTERM or Ctrl-C (systemd: contrib/pipevault.service). The
daemon's directory (default ``HOME/server``) holds the node registry, each node's own data
area (``nodes/NAME/``) and the local control socket (``pipevault.sock``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from pipevault.cli._app import app, cli
from pipevault.config import parse_size
from pipevault.errors import Interrupted, UsageError
from pipevault.server.daemon import Daemon
from pipevault.server.nodes import NodeRegistry


def server_dir(ctx: click.Context, given: str | None) -> Path:
    """The daemon's directory: ``--dir`` or ``HOME/server``."""
    return Path(given) if given else app(ctx).settings.home / "server"


@cli.command("serve")
@click.option("--listen", default="127.0.0.1:7070", show_default=True, metavar="HOST:PORT",
              help="Control and data port (port 0 picks a free one and prints it).")
@click.option("--dir", "dir_", default=None, metavar="DIR", help="Daemon directory (default HOME/server).")
@click.option("--window", default=None, metavar="SIZE",
              help="Clamp each data connection's socket buffers (e.g. 256K), bounding its window.")
@click.option("--add-node", metavar="NAME", help="Register a node, print its secret (hex) and exit.")
@click.option("--secret-file", metavar="FILE", help="With --add-node: take the secret from FILE (hex).")
@click.option("--remove-node", metavar="NAME", help="Forget a node and exit.")
@click.option("--list-nodes", is_flag=True, help="List registered nodes and exit.")
@click.pass_context
def serve_command(ctx: click.Context, listen: str, dir_: str | None, window: str | None,
                  add_node: str | None, secret_file: str | None, remove_node: str | None,
                  list_nodes: bool) -> None:
    """Run the storage-agent daemon: pipes extended from other machines, status, stop."""
    home = server_dir(ctx, dir_)
    nodes = NodeRegistry(home / "nodes.json")
    json_mode = app(ctx).json
    if add_node:
        secret = None
        if secret_file:
            try:
                secret = bytes.fromhex(Path(secret_file).read_text().strip())
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read a hex secret from {secret_file}: {exc}") from exc
        secret = nodes.add(add_node, secret)
        click.echo(json.dumps({"node": add_node, "secret": secret.hex()}) if json_mode else secret.hex())
        return
    if remove_node:
        if not nodes.remove(remove_node):
            raise UsageError(f"no node {remove_node!r} is registered")
        return
    if list_nodes:
        names = nodes.names()
        click.echo(json.dumps({"nodes": names}) if json_mode else "\n".join(names))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    daemon = Daemon(home, listen, window=parse_size(window) if window else None, settings=app(ctx).settings)
    try:
        daemon.start()
        if json_mode:
            click.echo(json.dumps({"event": "listening", "address": daemon.address,
                                   "socket": str(daemon.socket_path)}))
        else:
            click.echo(f"pipevault serve: listening on {daemon.address} and {daemon.socket_path}")
        daemon.wait()
    except (Interrupted, KeyboardInterrupt):
        logging.getLogger("pipevault.server").info("stopping on signal")
    finally:
        daemon.stop()
