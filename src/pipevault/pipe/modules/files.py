"""File reader (first stage) and file writer (tail): data goes straight into and out of pool
buffers with ``readinto`` and ``write`` on memoryviews, never through an intermediate copy."""

from __future__ import annotations

import os
from typing import Any

from pipevault.pipe._context import StageContext


class FileReader:
    """First stage: reads ``path`` (``"-"`` for standard input) into pool buffers.

    Each buffer is filled to ``ctx.fill_limit`` bytes (the last one with the remainder).
    Result: the number of bytes read.
    """

    def __init__(self, path: str, offset: int = 0, length: int | None = None) -> None:
        self.path, self.offset, self.length = path, offset, length

    def run(self, ctx: StageContext) -> int:
        fd = 0 if self.path == "-" else os.open(self.path, os.O_RDONLY)
        try:
            if self.path != "-":
                os.posix_fadvise(fd, self.offset, self.length or 0, os.POSIX_FADV_SEQUENTIAL)
                if self.offset:
                    os.lseek(fd, self.offset, os.SEEK_SET)
            f = os.fdopen(fd, "rb", buffering=0, closefd=False)
            left = self.length
            total = 0
            limit = ctx.fill_limit
            while left is None or left > 0:
                buf = ctx.alloc_buf()
                want = limit if left is None else min(limit, left)
                n = _read_full(f, buf.data[:want])
                if n == 0:
                    ctx.free_buf(buf)
                    break
                buf.length = n
                ctx.send_buf(buf)
                total += n
                if left is not None:
                    left -= n
            return total
        finally:
            if self.path != "-":
                os.close(fd)


def _read_full(f: Any, view: memoryview) -> int:
    """Fill ``view`` unless the file ends first (pipes and sockets return short reads)."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


class FileWriter:
    """Tail: writes every payload, in order, to ``path`` (``"-"`` for standard output).

    With ``sync`` the file is fsynced before the stage reports success, so a completed pipe
    means durable data. Result: the number of bytes written.
    """

    def __init__(self, path: str, sync: bool = False, append: bool = False) -> None:
        self.path, self.sync, self.append = path, sync, append

    def run(self, ctx: StageContext) -> int:
        if self.path == "-":
            fd = 1
        else:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self.append else os.O_TRUNC)
            fd = os.open(self.path, flags, 0o644)
        total = 0
        try:
            while (buf := ctx.receive_buf()) is not None:
                view = buf.view
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done:])
                total += done
                ctx.free_buf(buf)
            if self.sync and self.path not in ("-", os.devnull):
                os.fsync(fd)
            return total
        finally:
            if fd != 1:
                os.close(fd)
