"""The injectable clock: the only place pipevault reads time or sleeps.

Code that waits or measures takes a :class:`Clock`. Production code gets :data:`SYSTEM`;
tests and simulations (tape positioning, retention dates) pass a :class:`ManualClock` and
advance it, so nothing in the test suite sleeps to simulate time passing.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic and wall time, and sleeping, as one replaceable object."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def now(self) -> float:
        """Wall-clock seconds since the Unix epoch (for catalog dates and retention)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to; ``sleep`` advances it instantly.

    Thread-safe: several simulated devices may share one clock. ``sleep`` by any thread
    advances the time every thread sees, which models devices working one after another.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._t = float(start)

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def now(self) -> float:
        with self._lock:
            return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (negative values are refused)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._t += seconds


SYSTEM: Clock = SystemClock()
