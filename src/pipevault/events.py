"""Typed progress and status events, and the reporters that render them.

The library never prints. Long-running work (a pipe, a backup, a recall) emits events to a
:class:`Reporter`; the CLI renders them as progress bars or JSON lines, the dashboard as
pages. Each event class has a stable ``type`` used as the ``"event"`` field of its JSON form.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TextIO


@dataclass(frozen=True)
class Event:
    """Base of every event: ``type`` names it in JSON output."""

    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready mapping with an ``"event"`` key naming its type."""
        return {"event": self.type, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class StageFigures:
    """One stage's counters at an instant (see ``pipe.StageStatus`` for their meaning)."""

    name: str
    instances: int
    buffers_held: int
    queue_depth: int
    bytes_in: int
    buffers_in: int
    bytes_out: int
    buffers_out: int
    wait_input_s: float
    wait_alloc_s: float
    cpu_s: float = 0.0  # CPU seconds of its instances, known once they ended


@dataclass(frozen=True)
class Progress(Event):
    """Work done so far by a job or pipe. ``total_bytes`` is None when unknown."""

    type: ClassVar[str] = "progress"
    job: str
    bytes_done: int
    total_bytes: int | None
    items_done: int = 0
    total_items: int | None = None
    elapsed_s: float = 0.0
    stages: tuple[StageFigures, ...] = ()


@dataclass(frozen=True)
class ItemWarning(Event):
    """One item (file, object) was skipped or damaged; the job goes on."""

    type: ClassVar[str] = "warning"
    job: str
    item: str
    code: str
    message: str


@dataclass(frozen=True)
class JobFinished(Event):
    """A job or pipe ended: ``status`` is ``completed``, ``stopped``, ``failed`` or ``warnings``."""

    type: ClassVar[str] = "finished"
    job: str
    status: str
    bytes_done: int
    elapsed_s: float
    items_done: int = 0
    stages: tuple[StageFigures, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_mb_s(self) -> float:
        """Throughput in MB/s (10^6 bytes per second)."""
        return self.bytes_done / self.elapsed_s / 1e6 if self.elapsed_s > 0 else 0.0


class ItemCounter:
    """A reporter in front of another that fills in progress events' item counts.

    ``count`` and ``total`` are read when an event passes, so the job can keep counting in
    its own thread (the number of files done) while the pipe reports bytes.
    """

    def __init__(self, inner: Reporter, total: int | None = None) -> None:
        self.inner = inner
        self.count = 0
        self.total = total

    def emit(self, event: Event) -> None:
        if isinstance(event, Progress):
            event = dataclasses.replace(event, items_done=self.count, total_items=self.total)
        elif isinstance(event, JobFinished):
            event = dataclasses.replace(event, items_done=self.count)
        self.inner.emit(event)


class Reporter(Protocol):
    """Receives events. ``emit`` may be called from any thread and must not block for long."""

    def emit(self, event: Event) -> None:
        """Deliver one event."""
        ...


class NullReporter:
    """Drops every event."""

    def emit(self, event: Event) -> None:
        return None


class CollectingReporter:
    """Keeps every event in a list (for tests and for summaries at the end of a job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_type(self, cls: type[Event]) -> list[Event]:
        """The events received that are instances of ``cls``, in order."""
        with self._lock:
            return [e for e in self.events if isinstance(e, cls)]


class JsonLinesReporter:
    """Writes each event as one JSON object per line (the ``--json`` protocol)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        line = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


@dataclass(frozen=True)
class BenchResult(Event):
    """One benchmark case: our figure and the baseline's, measured in the same run.

    ``ours`` and ``baseline`` are in ``unit`` (MB/s unless the case says otherwise; for a
    latency case such as µs per handoff, lower is better and ``ratio`` is still
    ours / baseline). ``notes`` carries extra figures (CPU seconds, sizes, where time goes).
    """

    type: ClassVar[str] = "bench"
    suite: str
    case: str
    ours: float
    baseline: float
    baseline_name: str
    unit: str = "MB/s"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """ours / baseline (0 when the baseline measured 0)."""
        return self.ours / self.baseline if self.baseline else 0.0

    def to_json_line(self) -> dict[str, Any]:
        """The ``--json`` line of ``pipevault bench``: suite, case, ours, baseline, ratio."""
        line: dict[str, Any] = {
            "suite": self.suite, "case": self.case, "ours": round(self.ours, 3),
            "baseline": round(self.baseline, 3), "baseline_name": self.baseline_name,
            "ratio": round(self.ratio, 4),
        }
        if self.unit != "MB/s":
            line["unit"] = self.unit
        if self.notes:
            line["notes"] = self.notes
        return line
