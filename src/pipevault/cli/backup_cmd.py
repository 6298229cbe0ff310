"""``pipevault backup`` and ``pipevault archive``."""

from __future__ import annotations

import click
from rich.console import Console

from pipevault.cli._app import app, cli
from pipevault.cli._jobs import finish, job_reporter, open_site
from pipevault.cli._remote import remote_options, server_of
from pipevault.cli._render import summary_line
from pipevault.config import parse_size
from pipevault.errors import UsageError
from pipevault.mover import BackupOptions, run_backup
from pipevault.mover.plan import make_plan
from pipevault.mover.remote import Server, run_remote_backup
from pipevault.pipe import preload_process_modules

BACKUP_MODULE = run_backup.__module__


def _job(ctx: click.Context, opts: BackupOptions, event: str, server: Server | None = None,
         resume: bool = False, checkpoint: int | None = None) -> int:
    a = app(ctx)
    console = Console(stderr=a.json)
    if server is not None:
        with job_reporter(a, console, event, None) as rep:
            result = run_remote_backup(a.settings, server, opts, rep, resume=resume, sync_bytes=checkpoint)
    else:
        if resume:
            raise UsageError("--resume goes with --server (a local backup resumes by running again)")
        # The job's process modules come from a server that imports the mover (~0.8 s of
        # CPU): started now, that overlaps the walk below instead of following it.
        preload_process_modules([BACKUP_MODULE])
        with open_site(a) as site:
            plan = make_plan(site, opts.paths, opts.excludes, full=opts.full, archive=opts.archive,
                             one_file_system=opts.one_file_system)
            with job_reporter(a, console, event, plan.bytes_to_send) as rep:
                result = run_backup(site, opts, rep, plan=plan)
    warnings = result.warnings + [(w.item, w.message) for w in rep.warnings
                                  if (w.item, w.message) not in result.warnings]
    ratio = result.bytes_read / result.bytes_stored if result.bytes_stored else 1.0
    lines = [
        f"{event} session {result.session}: {result.sent} objects sent, {result.unchanged} unchanged, "
        f"{result.deleted} marked deleted, on {', '.join(result.volumes) or 'no volume'}",
        summary_line("data", result.bytes_read, result.elapsed_s, stored_mb=round(result.bytes_stored / 1e6, 1),
                     ratio=round(ratio, 2)),
    ]
    summary = {"session": str(result.session), "examined": result.examined, "sent": result.sent,
               "unchanged": result.unchanged, "deleted": result.deleted, "bytes": result.bytes_read,
               "stored_bytes": result.bytes_stored, "elapsed_s": round(result.elapsed_s, 3),
               "volumes": result.volumes, "bottleneck": result.bottleneck}
    return finish(a, console, event, summary, lines, warnings, result.stages, result.elapsed_s, result.bottleneck)


_common = [
    click.argument("paths", nargs=-1, required=True, type=click.Path()),
    click.option("--exclude", "excludes", multiple=True, metavar="PATTERN",
                 help="Skip names or paths matching this shell pattern (repeatable)."),
    click.option("--class", "class_name", default=None, help="Management class (default STANDARD)."),
    click.option("--instances", type=int, default=None, help="Parallel encoder instances."),
    click.option("--one-file-system", is_flag=True, help="Do not cross into other mounted file systems."),
]


def _apply(fn: click.decorators.FC) -> click.decorators.FC:
    for deco in reversed(_common):
        fn = deco(fn)
    return fn


@cli.command("backup")
@_apply
@click.option("--full", is_flag=True, help="Send every file, changed or not.")
@remote_options
@click.option("--resume", is_flag=True,
              help="With --server: continue an interrupted backup (what the server holds is not sent again).")
@click.option("--checkpoint", default=None, metavar="SIZE",
              help="With --server: the server makes what it received durable every SIZE stored (default 64M); "
                   "a cut backup resumes from the last such point.")
@click.pass_context
def backup_command(ctx: click.Context, paths: tuple[str, ...], excludes: tuple[str, ...], class_name: str | None,
                   instances: int | None, one_file_system: bool, full: bool, server: str | None,
                   connections: int, node: str | None, secret_file: str | None, resume: bool,
                   checkpoint: str | None) -> int:
    """Back up PATHS: incremental by default (unchanged files are not read again).

    With --server the data goes to a `pipevault serve` daemon: this machine reads, compresses
    and encrypts (with its own key), the server stores and catalogues it under this node.

    \b
    EXIT STATUS
      0 everything backed up, 1 some files skipped (named), others: docs/exit-codes.md
    """
    settings = app(ctx).settings
    opts = BackupOptions(list(paths), excludes, full=full, class_name=class_name,
                         instances=instances or settings["instances"], one_file_system=one_file_system)
    remote = server_of(settings, server, connections, node, secret_file)
    if checkpoint is not None and remote is None:
        raise UsageError("--checkpoint goes with --server")
    return _job(ctx, opts, "backup", remote, resume, parse_size(checkpoint) if checkpoint else None)


@cli.command("archive")
@_apply
@click.option("--description", "-d", default="", help="Description to find the archive by.")
@click.option("--expire-days", type=int, default=None, help="Keep this many days (default: the class's).")
@remote_options
@click.pass_context
def archive_command(ctx: click.Context, paths: tuple[str, ...], excludes: tuple[str, ...], class_name: str | None,
                    instances: int | None, one_file_system: bool, description: str, expire_days: int | None,
                    server: str | None, connections: int, node: str | None, secret_file: str | None) -> int:
    """Archive PATHS: a full copy kept for the class's archive retention, with a description."""
    settings = app(ctx).settings
    opts = BackupOptions(list(paths), excludes, archive=True, description=description, class_name=class_name,
                         expire_days=expire_days, instances=instances or settings["instances"],
                         one_file_system=one_file_system)
    return _job(ctx, opts, "archive", server_of(settings, server, connections, node, secret_file))
