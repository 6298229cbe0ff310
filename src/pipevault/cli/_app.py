"""The root ``pipevault`` command group and its global options.

The commands are imported when one is used: their modules import the catalog and the
mover (about a second of CPU), which ``pipevault --help`` and ``--version`` need not pay.
:data:`COMMANDS` names each command's modules and the first paragraph of its help (a test
checks it against the commands themselves).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import click

from pipevault import __version__, config

# command -> (the modules of pipevault.cli that define it and its subcommands, the first
# paragraph of its help)
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "archive": (("backup_cmd",), "Archive PATHS: a full copy kept for the class's archive retention, with a "
                                 "description."),
    "backup": (("backup_cmd",), "Back up PATHS: incremental by default (unchanged files are not read again)."),
    "bench": (("bench_cmd",), "Run a benchmark suite: our code vs a baseline in the same run."),
    "catalog": (("catalog_cmd", "rebuild_cmd"), "The catalog database: information, checks, backup and restore."),
    "class": (("catalog_cmd",), "Management classes: destination pool, versions and retention, "
                                "compress/encrypt/dedup."),
    "demo": (("demo_cmd",), "Back up a tree, restore it elsewhere, verify it, print the throughput."),
    "errors": (("errors_cmd",), "List every error code with its exit code and advice."),
    "expire": (("query_cmd",), "Apply the management classes: delete expired versions, return emptied volumes to "
                               "scratch."),
    "pipe": (("pipe_cmd",), "Run ad-hoc DataPipes and look at running ones."),
    "pool": (("catalog_cmd", "migrate_cmd"), "Storage pools as the catalog records them."),
    "query": (("query_cmd",), "List stored versions whose full path matches PATTERN (shell style: *, ?)."),
    "restore": (("restore_cmd",), "Restore files, subtrees or whole file spaces from backups."),
    "retrieve": (("restore_cmd",), "Retrieve archived files (the newest archive of each matching object)."),
    "serve": (("serve_cmd",), "Run the storage-agent daemon: pipes extended from other machines, status, stop."),
    "status": (("status_cmd",), "Show running pipes: stages, remote halves, per-connection throughput."),
    "volume": (("catalog_cmd", "label_cmd", "migrate_cmd"), "Volumes as the catalog records them, and what they "
                                                            "hold."),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when used (see :data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands.keys() | COMMANDS.keys())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in COMMANDS.get(cmd_name, ((), ""))[0]:
            importlib.import_module(f"pipevault.cli.{module}")  # registers it (cached after the first)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, the help of commands not imported yet taken from COMMANDS."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is not None and cmd.hidden:
                continue
            if cmd is None:  # shortened as the command would shorten its own help
                cmd = click.Command(name, help=COMMANDS[name][1])
            rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@dataclass
class AppContext:
    """What every command receives: output mode and the resolved settings."""

    json: bool
    settings: config.Settings


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="pipevault")
@click.option("--json", "json_", is_flag=True, help="Machine-readable JSON lines on stdout.")
@click.option("--home", default=None, help=config.option("home").help, metavar="DIR")
@click.option("--config", "config_file", default=None, help=config.option("config").help,
              metavar="FILE")
@click.pass_context
def cli(ctx: click.Context, json_: bool, home: str | None, config_file: str | None) -> None:
    """pipevault: move data fast, keep track of where it is.

    \b
    EXIT STATUS
      0 success, 1 completed with warnings, 2 usage or generic error,
      3-99 specific errors (see docs/exit-codes.md), 130 interrupted.
    """
    flags: dict[str, Any] = {"home": home, "config": config_file}
    ctx.obj = AppContext(json=json_, settings=config.load(flags))


def app(ctx: click.Context) -> AppContext:
    """The :class:`AppContext` of the running command."""
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj
