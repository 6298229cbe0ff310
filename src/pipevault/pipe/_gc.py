"""Cyclic garbage collection paced for bulk jobs.

CPython runs its cycle collector after every 700 net allocations of container objects. A
job that plans or catalogues tens of thousands of objects keeps them all alive, so the
collector walks them again and again and finds nothing: restoring 20,000 files spent 0.15 s
of its 0.9 s of planning in it. The data movers make almost no reference cycles, so for the
length of a job the first generation is collected a hundred times less often; cycles are
still collected, later.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLD = 70_000  # allocations between first-generation collections during a job

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Pace the collector for a bulk job until the block ends (nests, and may be entered
    by several threads at once: the normal pace returns when the last one leaves)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(BULK_THRESHOLD, _saved[0]), *_saved[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
