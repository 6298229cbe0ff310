"""``pipevault catalog rebuild --from-media``: recreate the catalog from the pools' volumes."""

from __future__ import annotations

import json

import click

from pipevault.cli._app import app
from pipevault.cli._jobs import open_site
from pipevault.cli.catalog_cmd import catalog_group
from pipevault.errors import EXIT_WARNINGS, UsageError
from pipevault.mover.rebuild import rebuild_from_media


@catalog_group.command("rebuild")
@click.option("--from-media", "from_media", is_flag=True, help="Scan every volume of every disk pool.")
@click.pass_context
def rebuild_command(ctx: click.Context, from_media: bool) -> int:
    """Recreate nodes, sessions, objects, versions and locations, with their original times,
    from the media alone (sessions already in the catalog are left alone).

    \b
    EXIT STATUS
      0 everything catalogued, 1 some objects were damaged or incomplete (listed)
    """
    if not from_media:
        raise UsageError("say where to rebuild from", hint="Use --from-media.")
    a = app(ctx)
    with open_site(a) as site:
        report = rebuild_from_media(site)
    doc = {"sessions": report.sessions, "objects": report.objects, "blocks": report.blocks,
           "already_catalogued": report.known, "skipped": report.skipped, "damage": report.damage}
    if a.json:
        click.echo(json.dumps({"event": "rebuild", **doc}))
    else:
        click.echo(f"rebuilt {report.sessions} sessions, {report.objects} objects from {report.blocks} blocks"
                   + (f"; {len(report.known)} sessions were already catalogued" if report.known else ""))
        for line in report.skipped + report.damage:
            click.echo(f"  not catalogued: {line}")
    return EXIT_WARNINGS if report.skipped or report.damage else 0
