"""Commands are imported when used; ``pipevault --help`` lists them without importing them."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import click
import pytest

from pipevault.cli._app import COMMANDS, cli


def _load_all() -> None:
    for modules, _help in COMMANDS.values():
        for module in modules:
            importlib.import_module(f"pipevault.cli.{module}")


def test_the_table_names_every_command_with_its_own_help() -> None:
    _load_all()
    assert set(cli.commands) == set(COMMANDS)
    for name, (_modules, head) in COMMANDS.items():
        command = cli.commands[name]
        for limit in (30, 45, 80, 200):
            assert click.Command(name, help=head).get_short_help_str(limit) == command.get_short_help_str(limit), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_brings_its_subcommands(name: str) -> None:
    _load_all()  # every subcommand registered, so one from a module the table leaves out shows
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    if isinstance(command, click.Group):
        # Subcommands registered by other modules (volume label, pool migrate, catalog rebuild)
        # are there as soon as the group is asked for.
        defined = {c.callback.__module__.rsplit(".", 1)[1] for c in command.commands.values() if c.callback}
        assert defined <= set(COMMANDS[name][0])
        assert set(COMMANDS[name][0]) <= defined | {command.callback.__module__.rsplit(".", 1)[1]}


_HELP = """
import importlib, json, sys
from pipevault.cli._app import COMMANDS
if PRELOAD:
    for modules, _ in COMMANDS.values():
        for m in modules:
            importlib.import_module("pipevault.cli." + m)
from pipevault.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
heavy = ("sqlalchemy", "pipevault.catalog", "pipevault.mover", "pipevault.cli.")
print("IMPORTED" + json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def _help(preload: bool) -> tuple[str, list[str]]:
    """``pipevault --help`` in a fresh interpreter, and the heavy modules imported by then."""
    out = subprocess.run([sys.executable, "-c", _HELP.replace("PRELOAD", str(preload))], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "COLUMNS": "100"})
    text, imported = out.stdout.split("IMPORTED")
    return text, json.loads(imported)


def test_help_lists_the_same_whether_commands_are_imported_or_not() -> None:
    lazy, imported = _help(preload=False)
    assert imported == ["pipevault.cli._app"]  # nothing heavy for the help
    loaded, imported = _help(preload=True)
    assert "sqlalchemy" in imported
    assert lazy == loaded and "Commands:" in lazy and all(name in lazy for name in COMMANDS)
