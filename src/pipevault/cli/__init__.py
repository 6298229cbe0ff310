"""The ``pipevault`` command line: one module per command, all rendering library events.

Layer: presentation. :func:`main` is the one place where an exception becomes a message and an
exit code (see ``docs/exit-codes.md``).
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType
from typing import NoReturn

import click

from pipevault.cli._app import cli  # the commands are imported when used (see _app.COMMANDS)
from pipevault.errors import EXIT_INTERRUPTED, Interrupted, PipevaultError

__all__ = ["cli", "main"]


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI and exit with the documented exit code of whatever happened."""
    signal.signal(signal.SIGTERM, _sigterm)
    json_mode = "--json" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="pipevault", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except PipevaultError as exc:
        _report(exc, json_mode)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _report(Interrupted("interrupted by the user"), json_mode)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.Abort:
        _report(Interrupted("aborted"), json_mode)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _report(exc: PipevaultError, json_mode: bool) -> None:
    if json_mode:
        print(json.dumps({"event": "error", **exc.to_dict()}), flush=True)
    else:
        click.secho(f"pipevault: error [{exc.code}]: {exc.message}", fg="red", err=True)
        if exc.advice:
            click.echo(f"  what to do: {exc.advice}", err=True)
