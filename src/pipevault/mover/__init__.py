"""Data movers: backup, archive, restore and retrieve jobs wiring pipe, format, media, catalog.

Layer: facade. May import the core (pipe, media, catalog), format and the foundation.

:func:`run_backup` (also archives) and :func:`run_restore` (also retrieves and verifies) are
the jobs; :class:`Site` is the catalog, pools, classes and keys they run against.

The names are imported on first use: a process module (the restore's scan stage, a backup's
encoders) imports its own submodule, which needs only the format and the pipe, and the
package must not make it import the catalog and SQLAlchemy too (0.9 s of CPU per process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipevault.mover.backup import BackupOptions as BackupOptions
    from pipevault.mover.backup import BackupResult as BackupResult
    from pipevault.mover.backup import run_backup as run_backup
    from pipevault.mover.restore import RestoreOptions as RestoreOptions
    from pipevault.mover.restore import RestoreResult as RestoreResult
    from pipevault.mover.restore import run_restore as run_restore
    from pipevault.mover.site import Site as Site

_HOME = {"BackupOptions": "backup", "BackupResult": "backup", "run_backup": "backup",
         "RestoreOptions": "restore", "RestoreResult": "restore", "run_restore": "restore", "Site": "site"}

__all__ = ["BackupOptions", "BackupResult", "RestoreOptions", "RestoreResult", "Site", "run_backup",
           "run_restore"]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
