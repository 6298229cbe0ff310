"""Check pointing (seed 002, salient feature 7): how far the receiving half is durable.

The tail of a receiving pipe calls :meth:`Checkpoint.durable` with the number of stream
bytes it has made durable (written and synced, or on media), in stream order; the
receiving agent sends that figure to the sending half in ACK frames, and the owner records
it (to a state file on the server) so that a transfer cut by a dropped connection restarts
from there with ``--resume`` instead of from the start.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class Checkpoint:
    """A monotonic durable-bytes counter, optionally persisted to ``path`` as JSON.

    Thread-safe. ``durable`` is called by the tail's thread; ``value`` by anyone.
    """

    def __init__(self, path: Path | None = None, start: int = 0, **identity: Any) -> None:
        self.path = path
        self.identity = identity
        self._value = start
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        """Stream bytes known durable."""
        return self._value

    def durable(self, offset: int) -> None:
        """Record that the first ``offset`` bytes of the stream are durable; persists first."""
        with self._lock:
            if offset <= self._value:
                return
            if self.path is not None:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps({**self.identity, "durable": offset}))
                os.replace(tmp, self.path)
            self._value = offset

    @staticmethod
    def load(path: Path) -> dict[str, Any] | None:
        """The persisted record at ``path`` (``{"durable": n, ...identity}``) or None."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("durable"), int) else None
