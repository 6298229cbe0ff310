"""Renderers of library events for people (rich progress bars and tables) and scripts (JSON)."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from pipevault.events import Event, JobFinished, JsonLinesReporter, StageFigures
from pipevault.events import Progress as ProgressEvent


class ProgressBar:
    """A :class:`pipevault.events.Reporter` drawing one progress bar with bytes, rate and ETA.

    Redrawn by the events themselves (at most every ``REDRAW_S``), not by a thread of its
    own: a job whose only thread is its own forks its process modules instead of starting
    a fork server (see :func:`pipevault.pipe.preload_process_modules`).
    """

    REDRAW_S = 0.1

    def __init__(self, console: Console, description: str, total: int | None) -> None:
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  DownloadColumn(), TransferSpeedColumn(), TextColumn("{task.fields[items]}"),
                                  TimeRemainingColumn(), console=console, transient=False, auto_refresh=False)
        self._task = self._progress.add_task(description, total=total, items="")
        self._lock = threading.Lock()
        self._total_items: int | None = None
        self._drawn = 0.0

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def emit(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, ProgressEvent):
                self._total_items = event.total_items or self._total_items
                self._progress.update(self._task, completed=event.bytes_done,
                                      items=self._items(event.items_done))
            elif isinstance(event, JobFinished):
                # The last files are counted after the last progress event: show the final count.
                self._progress.update(self._task, completed=event.bytes_done, total=event.bytes_done,
                                      items=self._items(event.items_done))
                self._drawn = 0.0  # the final figures are always drawn
            now = time.monotonic()
            if now - self._drawn >= self.REDRAW_S:
                self._drawn = now
                self._progress.refresh()

    def _items(self, done: int) -> str:
        if self._total_items:
            return f"{done}/{self._total_items} files"
        return f"{done} files" if done else ""


def reporter_for(json_mode: bool, console: Console, description: str,
                 total: int | None) -> ProgressBar | JsonLinesReporter:
    """The progress reporter for the output mode: JSON lines or a progress bar."""
    return JsonLinesReporter() if json_mode else ProgressBar(console, description, total)


def stage_table(stages: tuple[StageFigures, ...], elapsed_s: float, bottleneck: str | None) -> Table:
    """Per-stage figures as a table; the bottleneck stage is marked."""
    mark = f", * = bottleneck ({bottleneck})" if bottleneck else ""
    table = Table(title=f"stages ({elapsed_s:.2f} s{mark})", title_justify="left")
    for col in ("stage", "inst", "bufs", "MB in", "MB out", "wait in s", "wait buf s", "cpu s"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in stages:
        name = f"[bold yellow]{s.name}*[/]" if s.name == bottleneck else s.name
        buffers = s.buffers_in or s.buffers_out
        table.add_row(name, str(s.instances), str(buffers), f"{s.bytes_in / 1e6:.1f}",
                      f"{s.bytes_out / 1e6:.1f}", f"{s.wait_input_s:.3f}", f"{s.wait_alloc_s:.3f}",
                      f"{s.cpu_s:.2f}")
    return table


def summary_line(label: str, nbytes: int, seconds: float, **extra: Any) -> str:
    """``label: 123.4 MB in 1.23 s = 100.3 MB/s`` plus ``key=value`` extras."""
    rate = nbytes / seconds / 1e6 if seconds > 0 else 0.0
    tail = "".join(f", {k}={v}" for k, v in extra.items())
    return f"{label}: {nbytes / 1e6:.1f} MB in {seconds:.2f} s = {rate:.1f} MB/s{tail}"
