"""Errors of the data-mover jobs: backup, archive, restore, retrieve, migrate (exit codes 50-59).

::

    MoverError
      UnsafePath            a name from the catalog or media would write outside the target
      NothingMatched        no stored version matches what was asked for
      WrongPassphrase       the passphrase does not unlock the node's key
      KeyMissing            data is encrypted and no key is configured for the node
      RestoreIncomplete     some objects could not be restored intact (each one is named)
      SourceChanged         warnings-only outcome: files changed or vanished during backup
      DestinationError      the restore target cannot be written
      JobInterrupted        the job stopped before the end
      MigrationRefused      migration or reclamation cannot run on this pool as asked
        ReclaimWriteOnce    reclamation of a write-once pool
      MigrationFailed       copying to the new place failed; the catalog keeps the old copy
      RemoteStreamInvalid   a server refused a client's backup stream (bad document or data)
"""

from __future__ import annotations

from pipevault.errors import PipevaultError


class MoverError(PipevaultError):
    """An error of a backup, archive, restore or retrieve job."""

    code = "mover.error"
    exit_code = 50


class UnsafePath(MoverError):
    """A stored name would be written outside the restore target; it was refused."""

    code = "mover.unsafe_path"
    exit_code = 51
    hint = ("The name comes from the catalog or the media and may be malicious; nothing was "
            "written for it. Restore other objects by name, or inspect the volume.")


class NothingMatched(MoverError):
    """No stored version matches the names, dates or descriptions given."""

    code = "mover.nothing_matched"
    exit_code = 52
    hint = "Check the path and the date with `pipevault query`."


class WrongPassphrase(MoverError):
    """The passphrase does not unlock this node's encryption key."""

    code = "mover.wrong_passphrase"
    exit_code = 53
    hint = "Give the passphrase used when the key was created (PIPEVAULT_PASSPHRASE or --passphrase-file)."


class KeyMissing(MoverError):
    """The data is encrypted, or the class asks for encryption, and no passphrase was given."""

    code = "mover.key_missing"
    exit_code = 54
    hint = "Set PIPEVAULT_PASSPHRASE or pass --passphrase-file to unlock the node's key."


class RestoreIncomplete(MoverError):
    """Some objects could not be restored intact; every other object was restored."""

    code = "mover.restore_incomplete"
    exit_code = 55
    hint = "The files named were not restored (or only in part); restore them from another copy or version."


class DestinationError(MoverError):
    """The restore target cannot be created or written."""

    code = "mover.destination"
    exit_code = 56
    hint = "Check that the target directory is writable and has free space."


class JobInterrupted(MoverError):
    """The job stopped before the end; what was committed is complete, the rest is not kept."""

    code = "mover.interrupted"
    exit_code = 57
    hint = "Run the same command again: completed objects are not sent twice."


class MigrationRefused(MoverError):
    """Migration or reclamation cannot run on this pool as asked (no next pool, wrong media, bad thresholds)."""

    code = "mover.migrate.refused"
    exit_code = 58
    hint = "Check the pool with `pipevault pool show`; define its next pool with `pipevault pool define --next`."


class ReclaimWriteOnce(MigrationRefused):
    """Reclamation was asked of a write-once pool, whose space is never reused."""

    code = "mover.migrate.write_once"
    exit_code = 58
    hint = ("Write-once volumes are never reclaimed; their space comes back only when all their data "
            "has expired (`pipevault expire`). Migrate the data to another pool instead.")


class MigrationFailed(MoverError):
    """Copying data to its new place failed; the catalog still points at the old, intact copy."""

    code = "mover.migrate.failed"
    exit_code = 59
    hint = ("Nothing was lost: fix the named volume or device and run the command again; volumes "
            "already moved stay moved.")


class RemoteStreamInvalid(MoverError):
    """A server refused a client's backup stream: a bad document, length or unencrypted chunk."""

    code = "mover.remote_stream"
    exit_code = 50
    hint = ("The client and server must run the same pipevault version; if they do, report this "
            "with the server's log. The session was marked failed; no partial object was catalogued.")


class DemoMismatch(MoverError):
    """What the demo restored differs from what it backed up."""

    code = "demo.mismatch"
    exit_code = 50
    hint = "Please report this with the output of `pipevault demo`."
