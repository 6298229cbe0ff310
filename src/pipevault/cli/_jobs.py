"""Shared plumbing of the job commands: opening the site, progress, results and exit status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console

from pipevault.cli._app import AppContext
from pipevault.cli._render import reporter_for, stage_table
from pipevault.errors import EXIT_WARNINGS
from pipevault.events import Event, ItemWarning, JsonLinesReporter, Reporter
from pipevault.mover import Site


class WarningTap:
    """Passes events on and remembers item warnings (printed after the progress bar)."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.warnings: list[ItemWarning] = []

    def emit(self, event: Event) -> None:
        if isinstance(event, ItemWarning):
            self.warnings.append(event)
            if isinstance(self.inner, JsonLinesReporter):
                self.inner.emit(event)
            return
        self.inner.emit(event)


@contextmanager
def job_reporter(app: AppContext, console: Console, label: str, total: int | None) -> Iterator[WarningTap]:
    """A progress reporter for the job (a bar, or JSON lines with --json)."""
    inner = reporter_for(app.json, console, label, total)
    tap = WarningTap(inner)
    if app.json:
        yield tap
        return
    with inner:  # type: ignore[union-attr]
        yield tap


def open_site(app: AppContext) -> Site:
    """The site of the settings (catalog, pools, keys)."""
    return Site.open(app.settings)


def finish(app: AppContext, console: Console, event: str, summary: dict[str, Any], lines: list[str],
           warnings: list[tuple[str, str]], stages: tuple[Any, ...] = (), elapsed: float = 0.0,
           bottleneck: str | None = None) -> int:
    """Print the job's result; the exit status is 1 when items were skipped, else 0."""
    if app.json:
        click.echo(json.dumps({"event": event, **summary, "warnings": [list(w) for w in warnings]},
                              default=str))
    else:
        if stages:
            console.print(stage_table(stages, elapsed, bottleneck))
        for line in lines:
            console.print(line)
        for path, why in warnings:
            console.print(f"[yellow]warning[/]: {path}: {why}")
    return EXIT_WARNINGS if warnings else 0
