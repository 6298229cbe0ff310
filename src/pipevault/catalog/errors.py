"""Errors of the catalog (exit codes 40-49).

Tree::

    PipevaultError
      CatalogError                 base of every catalog failure
        CatalogUnavailable         the database cannot be opened or reached (transient)
        CatalogSchemaTooNew        the database was written by a newer pipevault
        CatalogMigrationFailed     a schema migration step failed and was rolled back
        CatalogNotFound            a named node, object, volume, pool or class does not exist
        CatalogConflict            a write contradicts what the catalog already holds
        CatalogBackupFailed        a catalog backup or restore could not be completed
        CatalogRebuildFailed       records from media could not be turned into catalog rows
        CatalogInconsistent        a catalog check found rows that contradict each other

Database driver exceptions never leave the package: :mod:`pipevault.catalog.database`
translates them into these at the seam.
"""

from __future__ import annotations

from pipevault.errors import PipevaultError


class CatalogError(PipevaultError):
    """The catalog database failed."""

    code = "catalog.error"
    exit_code = 40
    hint = "Run `pipevault catalog check`; restore from `pipevault catalog backup` if it is damaged."


class CatalogUnavailable(CatalogError):
    """The catalog database cannot be opened or reached."""

    code = "catalog.unavailable"
    exit_code = 41
    hint = "Check catalog_url (PIPEVAULT_CATALOG_URL), that the server runs and the file is writable."
    transient = True


class CatalogSchemaTooNew(CatalogError):
    """The catalog was created or upgraded by a newer pipevault than this one."""

    code = "catalog.schema_too_new"
    exit_code = 42
    hint = "Upgrade pipevault to the version that last wrote this catalog."


class CatalogMigrationFailed(CatalogError):
    """A schema migration step failed; the catalog stays at its previous version."""

    code = "catalog.migration_failed"
    exit_code = 43
    hint = "Restore the catalog from a backup, or report the failing step with the message above."


class CatalogNotFound(CatalogError):
    """A named node, object, volume, pool or management class is not in the catalog."""

    code = "catalog.not_found"
    exit_code = 44
    hint = "Check the name; list what exists with `pipevault catalog info` or the list commands."


class CatalogConflict(CatalogError):
    """A write contradicts the catalog: a duplicate name or a reference to a missing row."""

    code = "catalog.conflict"
    exit_code = 45
    hint = "Use another name, or create the referenced pool, volume or class first."


class CatalogBackupFailed(CatalogError):
    """A catalog backup or restore could not be completed; nothing partial was kept."""

    code = "catalog.backup_failed"
    exit_code = 46
    hint = "Check the destination's free space and permissions, and that a restore target is empty."


class CatalogRebuildFailed(CatalogError):
    """Records scanned from media could not be turned into catalog rows."""

    code = "catalog.rebuild_failed"
    exit_code = 47
    hint = "Rebuild into an empty catalog, and scan every volume of the pools in write order."


class CatalogInconsistent(CatalogError):
    """A catalog check found rows that contradict each other."""

    code = "catalog.inconsistent"
    exit_code = 48
    hint = "Restore the latest catalog backup, or rebuild the catalog from media."
