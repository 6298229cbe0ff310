"""``pipevault volume label``: add new empty volumes to a pool."""

from __future__ import annotations

import json

import click

from pipevault.cli._app import app
from pipevault.cli._jobs import open_site
from pipevault.cli.catalog_cmd import volume_group
from pipevault.errors import UsageError


@volume_group.command("label")
@click.argument("pool")
@click.option("--name", default=None, help="Name of the new volume (disk pools; default: the next free name).")
@click.option("--count", type=int, default=1, show_default=True, help="How many volumes to label.")
@click.pass_context
def label_command(ctx: click.Context, pool: str, name: str | None, count: int) -> None:
    """Label new empty volumes in POOL (disk: volume files; tape: cartridges in free slots)."""
    if count < 1 or (name is not None and count != 1):
        raise UsageError("--count must be at least 1, and exactly 1 with --name")
    a = app(ctx)
    with open_site(a) as site:
        labelled = [site.label_volume(pool, name) for _ in range(count)]
    if a.json:
        click.echo(json.dumps({"event": "labelled", "pool": pool, "volumes": labelled}))
    else:
        for v in labelled:
            click.echo(f"labelled {v} in pool {pool} (scratch)")
