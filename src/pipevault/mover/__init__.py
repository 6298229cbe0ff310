"""Data movers: backup, archive, restore and retrieve jobs wiring pipe, format, media, catalog.

Layer: facade. May import the core (pipe, media, catalog), format and the foundation.

:func:`run_backup` (also archives) and :func:`run_restore` (also retrieves and verifies) are
the jobs; :class:`Site` is the catalog, pools, classes and keys they run against.
"""

from pipevault.mover.backup import BackupOptions as BackupOptions
from pipevault.mover.backup import BackupResult as BackupResult
from pipevault.mover.backup import run_backup as run_backup
from pipevault.mover.restore import RestoreOptions as RestoreOptions
from pipevault.mover.restore import RestoreResult as RestoreResult
from pipevault.mover.restore import run_restore as run_restore
from pipevault.mover.site import Site as Site

__all__ = ["BackupOptions", "BackupResult", "RestoreOptions", "RestoreResult", "Site", "run_backup",
           "run_restore"]
