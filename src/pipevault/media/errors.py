"""Errors of the media layer: volumes, devices, libraries, pools (exit codes 30-39).

Tree::

    PipevaultError
      MediaError                  root of this package's errors
        MediaUnsupported          the medium cannot do the operation at all (30)
        VolumeFull                no room left on the volume or in the pool (31)
        WriteOnceViolation        an overwrite or reuse of write-once space (32)
        EndOfData                 read or space past the last thing written (33)
        NotMounted                no volume in the drive, or the volume is closed (34)
        LabelMismatch             the volume is not the one asked for (35)
        MediaCorrupt              what was read back is not what was written (36)
        BadBlock                  a write that is not whole blocks, or an address that does not exist (37)
        MediaIOError              the device or file failed; may work on retry (38)
        LibraryError              slots, drives, barcodes of a tape library (39)
        PoolError                 pools, volume states, storage map, plans (39)
"""

from __future__ import annotations

from pipevault.errors import PipevaultError


class MediaError(PipevaultError):
    """A volume, device, library or pool could not do what was asked."""

    code = "media"
    exit_code = 30
    hint = "See the message; `pipevault volume show` describes the volume named in it."


class MediaUnsupported(MediaError):
    """The medium cannot perform this operation (e.g. filemarks on disk, random read on tape)."""

    code = "media.unsupported"
    exit_code = 30
    hint = "Use a medium whose capabilities include the operation, or a pool of such media."

    def __init__(self, operation: str, medium: str, *, why: str = "") -> None:
        text = f"{medium} does not support {operation}" + (f": {why}" if why else "")
        super().__init__(text, operation=operation, medium=medium)


class VolumeFull(MediaError):
    """The volume (or pool) has no room for the data being written."""

    code = "media.volume_full"
    exit_code = 31
    hint = "Continue on another volume: label a scratch volume or add one to the pool."


class WriteOnceViolation(MediaError):
    """Write-once space would be overwritten or reclaimed."""

    code = "media.write_once"
    exit_code = 32
    hint = "Write-once media only append; write the update to a new place (a new descriptor)."


class EndOfData(MediaError):
    """A read or positioning went past the last block written on the volume."""

    code = "media.end_of_data"
    exit_code = 33
    hint = "The volume holds less than the catalog expects; check the volume and its catalog entries."


class NotMounted(MediaError):
    """The drive holds no volume, or the volume was closed or unloaded."""

    code = "media.not_mounted"
    exit_code = 34
    hint = "Mount or open the volume first (`pipevault volume show` lists where it is)."


class LabelMismatch(MediaError):
    """The volume's own label names a different volume, pool or format than expected."""

    code = "media.label_mismatch"
    exit_code = 35
    hint = "A wrong volume is mounted or the file was replaced; check its barcode and label."


class MediaCorrupt(MediaError):
    """Data or a header read back does not match its checksum or layout."""

    code = "media.corrupt"
    exit_code = 36
    hint = "The volume is damaged here; restore from another copy and mark the volume read-only."


class BadBlock(MediaError):
    """A write that is not whole blocks of the volume's size, or a block address that is invalid."""

    code = "media.bad_block"
    exit_code = 37
    hint = "Write whole superblocks of the volume's block size at addresses the volume returned."


class MediaIOError(MediaError):
    """The device or its backing file failed an operation."""

    code = "media.io"
    exit_code = 38
    hint = "Check the device or file system named in the message, then retry."
    transient = True


class LibraryError(MediaError):
    """A tape library request cannot be met: unknown barcode, no free slot or drive, busy drive."""

    code = "media.library"
    exit_code = 39
    hint = "Check the library inventory (`pipevault volume list`) and free a slot or drive."


class PoolError(MediaError):
    """A pool or a volume state change is invalid."""

    code = "media.pool"
    exit_code = 39
    hint = "Check the pool and class definitions (`pipevault pool`, `pipevault class`)."
