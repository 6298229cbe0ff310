"""``pipevault bench SUITE``: our code and a baseline in the same run, with the ratio.

Each suite lives beside the code it measures (``pipevault.<package>.bench``) and exposes
``run(quick: bool, workdir: Path) -> Iterator[BenchResult]``.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import click

from pipevault.cli._app import app, cli
from pipevault.errors import UsageError
from pipevault.events import BenchResult

SUITES: dict[str, str] = {
    "pipe": "pipevault.pipe.bench",
    "format": "pipevault.format.bench",
    "catalog": "pipevault.catalog.bench",
    "backup": "pipevault.mover.bench",
    "net": "pipevault.server.bench",
}

SuiteRun = Callable[..., Iterator[BenchResult]]


def load_suite(name: str) -> SuiteRun:
    """The ``run`` function of the suite called ``name``.

    Raises:
        UsageError: no such suite, or it is not built yet in this version.
    """
    if name not in SUITES:
        raise UsageError(f"no benchmark suite {name!r}", hint="Choose one of: " + ", ".join(SUITES))
    try:
        module = importlib.import_module(SUITES[name])
    except ModuleNotFoundError as exc:
        raise UsageError(f"benchmark suite {name!r} is not part of this version") from exc
    return cast(SuiteRun, module.run)


@cli.command("bench")
@click.argument("suite", type=click.Choice(sorted(SUITES)))
@click.option("--quick", is_flag=True, help="Small data sizes (seconds, not minutes).")
@click.option("--case", "cases", multiple=True, help="Run only these cases.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where to put generated data (default: a temporary directory).")
@click.pass_context
def bench_command(ctx: click.Context, suite: str, quick: bool, cases: tuple[str, ...],
                  workdir: str | None) -> None:
    """Run a benchmark suite: our code vs a baseline in the same run.

    With --json, prints one JSON object per case:
    {"suite", "case", "ours", "baseline", "baseline_name", "ratio"}.
    """
    run = load_suite(suite)
    json_mode = app(ctx).json
    with tempfile.TemporaryDirectory(prefix="pipevault-bench-", dir=workdir) as tmp:
        for result in run(quick=quick, workdir=Path(tmp), cases=cases or None):
            if json_mode:
                click.echo(json.dumps(result.to_json_line()))
            else:
                click.echo(f"{result.suite:>8} {result.case:<20} ours {result.ours:10.2f} "
                           f"{result.unit:<6} {result.baseline_name}: {result.baseline:10.2f} "
                           f"ratio {result.ratio:6.3f}")
                for k, v in result.notes.items():
                    click.echo(f"{'':>30}{k}: {v}")
