"""``pipevault restore`` and ``pipevault retrieve``."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime

import click
from rich.console import Console

from pipevault.cli._app import app, cli
from pipevault.cli._jobs import finish, job_reporter, open_site
from pipevault.cli._remote import remote_options, server_of
from pipevault.cli._render import summary_line
from pipevault.errors import UsageError
from pipevault.mover import RestoreOptions, run_restore
from pipevault.mover.errors import RestoreIncomplete
from pipevault.mover.remote import Server, run_remote_restore


def parse_when(text: str | None) -> float | None:
    """A point in time: ISO 8601 date or date-time (local time), or Unix seconds."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise UsageError(f"{text!r} is not a date", hint="Write 2026-11-23 or 2026-11-23T14:30:00.") from exc


def _job(ctx: click.Context, opts: RestoreOptions, event: str, server: Server | None = None) -> int:
    a = app(ctx)
    console = Console(stderr=a.json)
    with ExitStack() as stack:
        site = stack.enter_context(open_site(a)) if server is None else None
        rep = stack.enter_context(job_reporter(a, console, event, None))
        try:
            result = (run_restore(site, opts, rep) if site is not None
                      else run_remote_restore(a.settings, server, opts, rep))  # type: ignore[arg-type]
        except RestoreIncomplete as exc:
            partial = getattr(exc, "result", None)
            if partial is not None and not a.json:
                console.print(summary_line(f"{event} (incomplete)", partial.bytes, partial.elapsed_s,
                                           objects=partial.restored))
                for path, why in partial.failed:
                    console.print(f"[red]not restored[/]: {path}: {why}")
            raise
    verb = "verified" if opts.verify_only else "restored"
    lines = [summary_line(f"{verb} {result.restored} objects", result.bytes, result.elapsed_s,
                          blocks=result.blocks_read)]
    summary = {"restored": result.restored, "bytes": result.bytes, "elapsed_s": round(result.elapsed_s, 3),
               "verify_only": opts.verify_only, "blocks_read": result.blocks_read}
    return finish(a, console, event, summary, lines, [])


@cli.command("restore")
@click.argument("paths", nargs=-1, required=True)
@click.option("--to", "to", default=None, type=click.Path(file_okay=False),
              help="Restore under this directory (names relative to their file space); default: original place.")
@click.option("--pit", "pit", default=None, help="Point in time: the versions active then.")
@click.option("--version-id", type=int, default=None, help="Restore exactly this version (see `query`).")
@click.option("--inactive", is_flag=True, help="Also consider inactive versions (newest wins).")
@click.option("--verify", is_flag=True, help="Read and check everything; write nothing.")
@remote_options
@click.pass_context
def restore_command(ctx: click.Context, paths: tuple[str, ...], to: str | None, pit: str | None,
                    version_id: int | None, inactive: bool, verify: bool, server: str | None, connections: int,
                    node: str | None, secret_file: str | None) -> int:
    """Restore files, subtrees or whole file spaces from backups.

    With --server the versions come from a `pipevault serve` daemon (this node's only) and
    are decrypted, checked and written here.

    \b
    EXIT STATUS
      0 everything restored, 55 some objects not restored intact (named), others: docs/exit-codes.md
    """
    opts = RestoreOptions(list(paths), to=to, point_in_time=parse_when(pit), version_id=version_id,
                          inactive=inactive, verify_only=verify)
    return _job(ctx, opts, "restore", server_of(app(ctx).settings, server, connections, node, secret_file))


@cli.command("retrieve")
@click.argument("paths", nargs=-1, required=True)
@click.option("--to", "to", default=None, type=click.Path(file_okay=False), help="Retrieve under this directory.")
@click.option("--description", "-d", default=None, help="Only archives whose description matches (pattern).")
@click.option("--verify", is_flag=True, help="Read and check everything; write nothing.")
@remote_options
@click.pass_context
def retrieve_command(ctx: click.Context, paths: tuple[str, ...], to: str | None, description: str | None,
                     verify: bool, server: str | None, connections: int, node: str | None,
                     secret_file: str | None) -> int:
    """Retrieve archived files (the newest archive of each matching object)."""
    opts = RestoreOptions(list(paths), to=to, archive=True, description=description, verify_only=verify)
    return _job(ctx, opts, "retrieve", server_of(app(ctx).settings, server, connections, node, secret_file))
