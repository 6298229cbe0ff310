"""Type stub of the compiled superblock checksum (``_accel.c``)."""

from pipevault.format._codecs import Buffer

def checksum(buf: Buffer, start: int, end: int, /) -> int:
    """xxh3-64 of ``buf[:56]`` and of ``buf[start:end]`` without the stored bytes of DATA records."""
