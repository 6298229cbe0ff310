"""Type stub of the compiled superblock checksum (``_accel.c``)."""

from pipevault.format._codecs import Buffer

def checksum(buf: Buffer, start: int, end: int, /) -> int:
    """xxh3-64 of ``buf[:56]`` and of ``buf[start:end]`` without the stored bytes of DATA records."""

def fill_sole(buf: Buffer, session_id: bytes, seq: int, size_log2: int, required: int, optional: int,
              object_index: int, chunk_seq: int, object_offset: int, stored: Buffer, done: int, /) -> int:
    """Write a whole sealed superblock holding one DATA record of ``stored[done:]``; returns its length."""

def sole_data(buf: Buffer, /) -> tuple[bytes, int, int, int, int, int, int, int, int] | None:
    """``(session_id, seq, checksum, object_index, chunk_seq, object_offset, stored_offset, start,
    end)`` of a valid superblock holding nothing but one DATA record; None for anything else."""
