"""``pipevault catalog``, ``pipevault class``, ``pipevault pool`` and ``pipevault volume``.

Commands over the catalog tables: information and checks, backup and restore of the catalog,
management classes, and listings of pools and volumes as the catalog records them.
Expiration is ``pipevault expire``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pipevault.catalog import chunks, classes, migrations, pools, volumes
from pipevault.catalog.backup import backup, restore
from pipevault.catalog.check import check
from pipevault.catalog.database import Catalog, catalog_url
from pipevault.catalog.errors import CatalogInconsistent, CatalogNotFound
from pipevault.catalog.schema import VOLUME_STATES
from pipevault.cli._app import app, cli
from pipevault.config import format_size
from pipevault.errors import EXIT_WARNINGS


@contextmanager
def _open(ctx: click.Context, url: str | None = None) -> Iterator[Catalog]:
    catalog = Catalog.open(url or catalog_url(app(ctx).settings))
    try:
        yield catalog
    finally:
        catalog.close()


def _date(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _emit(ctx: click.Context, event: str, doc: dict[str, Any], lines: list[str]) -> None:
    if app(ctx).json:
        click.echo(json.dumps({"event": event, **doc}, default=str))
    else:
        for line in lines:
            click.echo(line)


def _table(ctx: click.Context, event: str, columns: list[str], rows: list[dict[str, Any]],
           render: dict[str, Any] | None = None) -> None:
    """Rows as JSON lines (--json) or a table; ``render`` formats a column for the table."""
    if app(ctx).json:
        for row in rows:
            click.echo(json.dumps({"event": event, **row}, default=str))
        return
    table = Table()
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str((render or {}).get(c, lambda v: "" if v is None else v)(row[c])) for c in columns])
    Console().print(table)


# -- pipevault catalog ---------------------------------------------------------------------


@cli.group("catalog")
def catalog_group() -> None:
    """The catalog database: information, checks, backup and restore."""


@catalog_group.command("info")
@click.pass_context
def info_command(ctx: click.Context) -> None:
    """Where the catalog is, its schema version and the rows in each table."""
    with _open(ctx) as catalog:
        counts = catalog.counts()
        with catalog.read() as conn:
            version = migrations.current_version(conn)
            n_chunks, refs, chunk_bytes = chunks.total(conn)
    doc = {"url": catalog.url, "database": catalog.dialect, "schema_version": version, "rows": counts,
           "chunk_references": refs, "chunk_bytes": chunk_bytes}
    lines = [f"catalog: {catalog.url} ({catalog.dialect}, schema version {version})"]
    lines += [f"  {name:<12} {n:>12,}" for name, n in counts.items()]
    lines.append(f"  duplicate discard: {n_chunks:,} chunks, {refs:,} references, "
                 f"{format_size(chunk_bytes)} stored once")
    _emit(ctx, "catalog_info", doc, lines)


@catalog_group.command("check")
@click.pass_context
def check_command(ctx: click.Context) -> int:
    """Check the catalog's consistency.

    \b
    EXIT STATUS
      0 consistent, 1 warnings only, 48 errors found (catalog.inconsistent).
    """
    with _open(ctx) as catalog:
        findings = check(catalog)
    for f in findings:
        _emit(ctx, "catalog_check", dataclasses.asdict(f), [f"{f.severity}: {f.message}: {f.count}"])
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise CatalogInconsistent(f"the catalog check found {len(errors)} kinds of error",
                                  findings=[f.code for f in errors])
    if not findings and not app(ctx).json:
        click.echo("catalog consistent")
    return EXIT_WARNINGS if findings else 0


@catalog_group.command("backup")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup_command(ctx: click.Context, dest: Path) -> None:
    """Write a consistent copy of the catalog to DEST (an SQLite file), while it is in use."""
    with _open(ctx) as catalog:
        result = backup(catalog, dest)
    total = sum(result.rows.values())
    _emit(ctx, "catalog_backup", dataclasses.asdict(result),
          [f"catalog backed up to {result.path}: {total:,} rows, schema version {result.schema_version}"])


@catalog_group.command("restore")
@click.argument("source", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--to", "target", default=None, metavar="URL",
              help="Catalog to restore into (default: the configured one); it must be empty.")
@click.pass_context
def restore_command(ctx: click.Context, source: Path, target: str | None) -> None:
    """Load the catalog backup SOURCE into an empty catalog."""
    with _open(ctx, target) as catalog:
        result = restore(source, catalog)
        url = catalog.url
    total = sum(result.rows.values())
    _emit(ctx, "catalog_restore", {**dataclasses.asdict(result), "target": url},
          [f"restored {total:,} rows from {source} into {url}"])


# -- pipevault class -----------------------------------------------------------------------

_CLASS_FIELDS = [f.name for f in dataclasses.fields(classes.ManagementClass)]


@cli.group("class")
def class_group() -> None:
    """Management classes: destination pool, versions and retention, compress/encrypt/dedup."""


@class_group.command("define")
@click.argument("name")
@click.option("--pool", "destination_pool", default=None, help="Destination pool.")
@click.option("--versions-exists", type=click.IntRange(1), default=None,
              help="Backup versions kept while the file exists.")
@click.option("--versions-deleted", type=click.IntRange(0), default=None,
              help="Backup versions kept after the file was deleted.")
@click.option("--retain-extra", "retain_extra_days", type=click.IntRange(0), default=None,
              help="Days an inactive version is kept.")
@click.option("--retain-only", "retain_only_days", type=click.IntRange(0), default=None,
              help="Days the last version of a deleted file is kept.")
@click.option("--archive-days", type=click.IntRange(0), default=None, help="Days an archive is kept.")
@click.option("--compress/--no-compress", default=None)
@click.option("--encrypt/--no-encrypt", default=None)
@click.option("--dedup/--no-dedup", default=None)
@click.option("--description", default=None)
@click.pass_context
def class_define(ctx: click.Context, /, name: str, **given: Any) -> None:
    """Create management class NAME, or change the options given of an existing one."""
    with _open(ctx) as catalog, catalog.write() as conn:
        try:
            base = classes.get_class(conn, name)
        except CatalogNotFound:
            base = classes.ManagementClass(name)
        mc = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
        classes.define_class(conn, mc, now=catalog.clock.now())
    _emit(ctx, "class", dataclasses.asdict(mc), [f"class {name} defined"])


@class_group.command("list")
@click.pass_context
def class_list(ctx: click.Context) -> None:
    """Every management class."""
    with _open(ctx) as catalog, catalog.read() as conn:
        rows = [dataclasses.asdict(mc) for mc in classes.list_classes(conn)]
    _table(ctx, "class", [*_CLASS_FIELDS[:8], "dedup"], rows)


@class_group.command("show")
@click.argument("name")
@click.pass_context
def class_show(ctx: click.Context, name: str) -> None:
    """One management class."""
    with _open(ctx) as catalog, catalog.read() as conn:
        mc = classes.get_class(conn, name)
    doc = dataclasses.asdict(mc)
    _emit(ctx, "class", doc, [f"{k}: {v}" for k, v in doc.items()])


# -- pipevault pool / volume ---------------------------------------------------------------


@cli.group("pool")
def pool_group() -> None:
    """Storage pools as the catalog records them."""


@pool_group.command("list")
@click.pass_context
def pool_list(ctx: click.Context) -> None:
    """Every pool with its volumes by state and its capacity."""
    with _open(ctx) as catalog, catalog.read() as conn:
        rows = [{"name": u.pool.name, "media_type": u.pool.media_type, "next_pool": u.pool.next_pool,
                 "volumes": u.volumes_by_state, "capacity": u.capacity, "used": u.used}
                for u in pools.list_pools(conn)]
    _table(ctx, "pool", ["name", "media_type", "next_pool", "volumes", "capacity", "used"], rows,
           {"capacity": format_size, "used": format_size,
            "volumes": lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items()))})


@pool_group.command("show")
@click.argument("name")
@click.pass_context
def pool_show(ctx: click.Context, name: str) -> None:
    """One pool and its volumes."""
    with _open(ctx) as catalog, catalog.read() as conn:
        pool = pools.get_pool(conn, name)
        vols = volumes.list_volumes(conn, pool=name)
    _emit(ctx, "pool", dataclasses.asdict(pool), [f"{k}: {v}" for k, v in dataclasses.asdict(pool).items()])
    _volume_table(ctx, vols)


def _volume_table(ctx: click.Context, vols: list[volumes.Volume]) -> None:
    _table(ctx, "volume", ["name", "pool", "media_type", "state", "capacity", "used", "last_written"],
           [dataclasses.asdict(v) for v in vols],
           {"capacity": format_size, "used": format_size, "last_written": _date})


@cli.group("volume")
def volume_group() -> None:
    """Volumes as the catalog records them, and what they hold."""


@volume_group.command("list")
@click.option("--pool", default=None, help="Only the volumes of this pool.")
@click.option("--state", type=click.Choice(VOLUME_STATES), default=None, help="Only volumes in this state.")
@click.pass_context
def volume_list(ctx: click.Context, pool: str | None, state: str | None) -> None:
    """Volumes by name."""
    with _open(ctx) as catalog, catalog.read() as conn:
        vols = volumes.list_volumes(conn, pool=pool, state=state)
    _volume_table(ctx, vols)


@volume_group.command("show")
@click.argument("name")
@click.option("--contents", is_flag=True, help="Also list the object versions stored on it.")
@click.pass_context
def volume_show(ctx: click.Context, name: str, contents: bool) -> None:
    """One volume, and with --contents what lies on it in position order."""
    with _open(ctx) as catalog, catalog.read() as conn:
        vol = volumes.get_volume(conn, name)
        entries = volumes.contents(conn, name) if contents else []
    doc = dataclasses.asdict(vol)
    _emit(ctx, "volume", doc, [f"{k}: {v}" for k, v in doc.items()])
    if contents:
        _table(ctx, "volume_entry", ["superblock", "offset", "length", "node", "filespace", "hl", "ll", "state"],
               [dataclasses.asdict(e) for e in entries])
