"""``pipevault status``: the pipes of this machine (and their remote halves) with per-stage
figures and per-connection throughput, from the local daemon, or from a remote server for
this node's own pipes (``--server``)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipevault.cli._app import app, cli
from pipevault.cli._render import stage_table
from pipevault.cli.serve_cmd import server_dir
from pipevault.events import StageFigures
from pipevault.pipe.net.client import ControlClient, load_credentials
from pipevault.pipe.net.errors import ConnectionLost
from pipevault.server.monitor import local_pipes


@cli.command("status")
@click.option("--server", metavar="HOST:PORT", help="Ask a remote server (this node's pipes only).")
@click.option("--node", metavar="NAME", help="Node name for --server (or PIPEVAULT_NODE).")
@click.option("--secret-file", metavar="FILE", help="Node secret for --server (or PIPEVAULT_SECRET_FILE).")
@click.option("--dir", "dir_", default=None, metavar="DIR", help="Local daemon directory (default HOME/server).")
@click.pass_context
def status_command(ctx: click.Context, server: str | None, node: str | None, secret_file: str | None,
                   dir_: str | None) -> None:
    """Show running pipes: stages, remote halves, per-connection throughput."""
    if server:
        with ControlClient(server, load_credentials(node, secret_file)) as control:
            pipes = control.request("status")["pipes"]
        source = server
    else:
        path = server_dir(ctx, dir_) / "pipevault.sock"
        try:
            with ControlClient(f"unix:{path}") as control:
                pipes = control.request("status")["pipes"]
            source = f"daemon at {path}"
        except ConnectionLost:
            pipes = local_pipes()
            source = "this machine (no daemon running)"
    if app(ctx).json:
        for p in pipes:
            click.echo(json.dumps({"event": "pipe", **p}))
        return
    console = Console()
    console.print(f"[bold]{len(pipes)} pipe(s)[/] on {source}")
    for p in pipes:
        _show(console, p)


def _show(console: Console, p: dict[str, Any]) -> None:
    who = f"node {p['node']} with " if p.get("node") else ""
    where = f" ({who}{p['peer']})" if p.get("peer") else ""
    head = f"{p.get('direction', '')} {p.get('module') or ''}".strip()
    console.print(f"\n[bold]{escape(p['pipe'])}[/] {escape(head)}: {escape(p['state'])}{escape(where)}")
    if p.get("local_name") and p["local_name"] != p["pipe"]:
        console.print(f"  local pipe {escape(p['local_name'])}")
    if p.get("durable") is not None:
        resumed = f" (resumed at {p['resume_from']})" if p.get("resume_from") else ""
        console.print(f"  durable on the receiving side: {p['durable']} bytes{resumed}")
    if p.get("error"):
        console.print(f"  [red]error {escape('[' + p['error']['code'] + ']')}: {escape(p['error']['message'])}[/]")
    if p.get("stages"):
        figures = tuple(StageFigures(**s) for s in p["stages"])
        console.print(stage_table(figures, 0.0, None))
    if p.get("links"):
        table = Table(title="connections", title_justify="left")
        for col in ("conn", "MB", "frames", "MB/s", "open"):
            table.add_column(col, justify="right")
        for c in p["links"]:
            table.add_row(str(c["index"]), f"{c['bytes'] / 1e6:.1f}", str(c["frames"]),
                          f"{c['rate_bytes_s'] / 1e6:.1f}", "yes" if c["open"] else "no")
        console.print(table)
