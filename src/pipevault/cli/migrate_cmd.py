"""``pipevault pool define``, ``pipevault pool migrate`` and ``pipevault volume reclaim``.

The ``pool`` and ``volume`` groups are those of :mod:`pipevault.cli.catalog_cmd`; this module
adds the commands that change where data lies.
"""

from __future__ import annotations

import json

import click
from rich.console import Console

from pipevault.cli._app import app
from pipevault.cli._jobs import open_site
from pipevault.cli._render import summary_line
from pipevault.cli.catalog_cmd import pool_group, volume_group
from pipevault.mover.migrate import MEDIA_TYPES, MoveResult, define_pool, migrate, reclaim


def _report(ctx: click.Context, event: str, result: MoveResult) -> None:
    doc = {"pool": result.pool, "target_pool": result.target_pool, "reason": result.reason,
           "extents": result.extents, "bytes": result.bytes, "elapsed_s": round(result.elapsed_s, 3),
           "volumes": [{"source": v.source, "extents": v.extents, "blocks": v.blocks, "targets": v.targets,
                        "freed": v.freed} for v in result.volumes],
           "freed": result.freed, "skipped": [list(s) for s in result.skipped]}
    if app(ctx).json:
        click.echo(json.dumps({"event": event, **doc}))
        return
    console = Console()
    console.print(summary_line(f"{event} {result.pool} -> {result.target_pool} ({result.reason})", result.bytes,
                               result.elapsed_s, pieces=result.extents, volumes=len(result.volumes)))
    for v in result.volumes:
        where = ", ".join(v.targets) or "nothing live to copy"
        console.print(f"  {v.source}: {v.extents} pieces, {v.blocks} superblocks -> {where}"
                      + ("; back to scratch" if v.freed else ""))
    for name, why in result.skipped:
        console.print(f"  [yellow]skipped[/] {name}: {why}")


@pool_group.command("define")
@click.argument("name")
@click.option("--media-type", type=click.Choice(MEDIA_TYPES), default=None,
              help="Media of the pool's volumes (needed for a new pool).")
@click.option("--next", "next_pool", default=None, metavar="POOL", help="Pool that migration moves data to.")
@click.option("--description", default=None)
@click.pass_context
def pool_define(ctx: click.Context, name: str, media_type: str | None, next_pool: str | None,
                description: str | None) -> None:
    """Create a pool, or set an existing pool's next pool (a tape pool gets its library on first use)."""
    with open_site(app(ctx)) as site:
        row = define_pool(site, name, media_type, next_pool, description)
    doc = {"name": row.name, "media_type": row.media_type, "next_pool": row.next_pool,
           "description": row.description}
    if app(ctx).json:
        click.echo(json.dumps({"event": "pool", **doc}))
    else:
        click.echo(f"pool {row.name}: {row.media_type}" + (f", migrates to {row.next_pool}" if row.next_pool else ""))


@pool_group.command("migrate")
@click.argument("pool")
@click.option("--age-days", type=click.FloatRange(0), default=None, help="Move data stored this many days ago or more.")
@click.option("--high", "high", type=click.FloatRange(0, 100), default=None,
              help="Occupancy (%% used) at which the oldest data starts moving.")
@click.option("--low", "low", type=click.FloatRange(0, 100), default=None,
              help="Occupancy (%%) to bring the pool down to (default: --high).")
@click.pass_context
def pool_migrate(ctx: click.Context, pool: str, age_days: float | None, high: float | None,
                 low: float | None) -> None:
    """Move data of POOL to its next pool, by age or occupancy; emptied volumes go back to scratch.

    \b
    EXIT STATUS
      0 done, 58 refused (no next pool, no criterion), 59 a volume failed to copy (the catalog
      still points at its intact data; volumes before it are moved)
    """
    with open_site(app(ctx)) as site:
        result = migrate(site, pool, age_days=age_days, high_pct=high, low_pct=low)
    _report(ctx, "migrate", result)


@volume_group.command("reclaim")
@click.argument("pool")
@click.option("--threshold", type=click.FloatRange(0, 100), required=True,
              help="Reclaim full volumes whose live data is below this %% of what was written.")
@click.pass_context
def volume_reclaim(ctx: click.Context, pool: str, threshold: float) -> None:
    """Compact the full volumes of POOL whose live data fell below the threshold; they go back to scratch.

    \b
    EXIT STATUS
      0 done, 58 refused (write-once pool, unknown pool), 59 a volume failed to copy
    """
    with open_site(app(ctx)) as site:
        result = reclaim(site, pool, threshold)
    _report(ctx, "reclaim", result)
