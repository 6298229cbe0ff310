"""``pipevault query`` (stored versions) and ``pipevault expire`` (apply retention policy)."""

from __future__ import annotations

import json
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table

from pipevault.cli._app import app, cli
from pipevault.cli._jobs import open_site
from pipevault.cli.restore_cmd import parse_when
from pipevault.mover.query import query, run_expire


def _date(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


@cli.command("query")
@click.argument("pattern", default="*")
@click.option("--state", type=click.Choice(["active", "inactive", "backup", "archive", "any"]), default="backup",
              help="Which versions (default: active and inactive backups).")
@click.option("--pit", default=None, help="Only the versions active at this point in time.")
@click.option("--description", "-d", default=None, help="Archive description pattern.")
@click.pass_context
def query_command(ctx: click.Context, pattern: str, state: str, pit: str | None, description: str | None) -> int:
    """List stored versions whose full path matches PATTERN (shell style: *, ?)."""
    a = app(ctx)
    with open_site(a) as site:
        rows = query(site, pattern, state=state, point_in_time=parse_when(pit), description=description)
    if a.json:
        for v in rows:
            click.echo(json.dumps({"version_id": v.version_id, "path": v.path, "state": v.state, "size": v.size,
                                   "stored": v.stored, "deactivated": v.deactivated, "class": v.class_name,
                                   "description": v.description}))
        return 0
    table = Table()
    for col in ("id", "path", "state", "size", "stored", "deactivated", "class", "description"):
        table.add_column(col)
    for v in rows:
        table.add_row(str(v.version_id), v.path, v.state, str(v.size), _date(v.stored), _date(v.deactivated),
                      v.class_name, v.description)
    Console().print(table)
    return 0


@cli.command("expire")
@click.pass_context
def expire_command(ctx: click.Context) -> int:
    """Apply the management classes: delete expired versions, return emptied volumes to scratch."""
    a = app(ctx)
    with open_site(a) as site:
        report = run_expire(site)
    doc = {"versions_expired": report.versions_expired, "versions_held": report.versions_held,
           "objects_removed": report.objects_removed,
           "chunks_released": len(report.chunks_released), "volumes_to_scratch": list(report.volumes_to_scratch),
           "volumes_expired": list(report.volumes_expired)}
    if a.json:
        click.echo(json.dumps({"event": "expire", **doc}))
    else:
        for k, v in doc.items():
            click.echo(f"{k}: {v}")
    return 0
