"""The root ``pipevault`` command group and its global options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from pipevault import __version__, config


@dataclass
class AppContext:
    """What every command receives: output mode and the resolved settings."""

    json: bool
    settings: config.Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
