"""The ``pipevault`` command (and ``python -m pipevault``): the command line, for a job with
process modules their fork server started first.

The command line imports every command and the mover with them (about a second of CPU), and
a backup's or restore's process modules come from a fork server that imports the mover too
(:func:`pipevault.pipe.preload_process_modules`). Started before the command line's own
imports rather than after them, the server's import runs beside them on another core: a
local backup or restore starts its pipe about half a second sooner.
"""

from __future__ import annotations

import sys
from typing import NoReturn

# The commands whose jobs run process modules, and the module their fork server imports.
_SERVER_MODULES = {
    "backup": "pipevault.mover.backup",
    "archive": "pipevault.mover.backup",
    "demo": "pipevault.mover.backup",
    "restore": "pipevault.mover.scan",
    "retrieve": "pipevault.mover.scan",
}
# The group's options that take a value (see pipevault.cli._app): their value is no command.
_VALUED = {"--home", "--config"}


def server_module(argv: list[str]) -> str | None:
    """The module the fork server of the job ``argv`` asks for (the arguments after the
    program name) should import; None when the command runs no process modules here (a
    restore from a remote server decodes in the server's)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            if arg in ("restore", "retrieve") and any(a == "--server" or a.startswith("--server=") for a in argv):
                return None
            return _SERVER_MODULES.get(arg)
    return None


def main() -> NoReturn:
    """Start the job's fork server when the command has one, then run the command line."""
    module = server_module(sys.argv[1:])
    if module is not None:
        from pipevault.pipe import preload_process_modules

        preload_process_modules([module])
    from pipevault.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
