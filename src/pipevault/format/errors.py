"""Errors of the stream and media format (exit codes 20-29).

Every way a stream can be unreadable has its own error: a bad checksum, a truncated
superblock or record, a wrong or missing key, tampered data, an unknown version or feature,
and misuse of the writer by its caller.
"""

from __future__ import annotations

from pipevault.errors import PipevaultError


class FormatError(PipevaultError):
    """A superblock or record does not follow the format (damaged or not a pipevault stream)."""

    code = "format.corrupt"
    exit_code = 20
    hint = ("The medium holds damaged or foreign data; run a scan to see which objects are "
            "affected and restore them from another copy.")


class ChecksumError(FormatError):
    """A superblock's checksum does not match its contents (bit rot, bad read, tampering)."""

    code = "format.checksum"
    exit_code = 21
    hint = "Re-read the medium (clean the drive) or restore the affected objects from another copy."


class TruncatedError(FormatError):
    """A superblock, record or chunk ends before the length its header announces."""

    code = "format.truncated"
    exit_code = 22
    hint = ("The stream was cut short (full or failed medium, interrupted copy); scan it to see "
            "what is intact.")


class WrongKeyError(FormatError):
    """The key given does not match the key the session was encrypted with."""

    code = "format.wrong_key"
    exit_code = 23
    hint = "Supply the encryption key that was in use when the data was written."


class KeyRequiredError(FormatError):
    """The session is encrypted and no key was given to read it."""

    code = "format.key_required"
    exit_code = 24
    hint = "Supply the session's encryption key (see the key management settings)."


class IntegrityError(FormatError):
    """Decrypted or decompressed data does not match its authentication tag or content hash."""

    code = "format.integrity"
    exit_code = 25
    hint = "The data was altered after it was written; restore the object from another copy."


class UnknownVersionError(FormatError):
    """The stream was written in a format major version this pipevault cannot read."""

    code = "format.unknown_version"
    exit_code = 26
    hint = "Read the medium with the pipevault version that wrote it, or a newer one."


class UnsupportedFeatureError(FormatError):
    """The stream uses a required feature, record type or field this pipevault does not know."""

    code = "format.unsupported_feature"
    exit_code = 27
    hint = "Read the medium with a newer pipevault that supports the feature named in the message."


class WriterStateError(PipevaultError):
    """The writer was called out of order (a chunk outside an object, a second session footer)."""

    code = "format.misuse"
    exit_code = 28
    hint = "This is a bug in the caller of the format writer; report it with the message."


class LimitError(PipevaultError):
    """A value does not fit the format (chunk over 64 MiB, superblock size not a power of two)."""

    code = "format.limit"
    exit_code = 29
    hint = "Use a value within the limits named in the message (see docs/format.md)."


class NothingToResumeError(WriterStateError):
    """A session cannot be resumed from these media: it is complete, or its start is not there."""

    code = "format.nothing_to_resume"
    exit_code = 28
    hint = ("Check that the volumes given hold the session from its first superblock; a complete "
            "session needs no restart.")
