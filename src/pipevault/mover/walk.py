"""Walking source trees: every entry with the attributes a backup keeps, in parallel.

Directories are listed in the walking thread while listings are quick, and by a pool of
threads once they turn out to wait on the device or the network (``os.scandir`` and
``lstat`` release the GIL, so a tree on a slow file system is not walked one system call at
a time). Threads only cost where the metadata is at hand: they then contend for the GIL at
every system call (20,247 entries: 0.30 s in one thread against 0.53 s in eight with the
metadata cached, 0.53 s against 1.03-1.29 s right after dropping the caches, on this
machine's virtual disk). Entries come out in the same deterministic breadth-first order
either way: a directory's entries sorted by name, directories in the order they were found.

Names: an entry belongs to a *file space* (the root given, or the directory holding a root
that is a file); its *high-level name* is its directory relative to the file space (``/`` at
the top, ``/a/b`` below) and its *low-level name* its own name. The file space's own root
directory is the entry with high-level name ``/`` and an empty low-level name. On media an
object's name is ``/`` + its path relative to the file space, which splits back into the same
two names (``pipevault.catalog.rebuild.split_name``), so a catalog rebuilt from media alone
names every object as the backup did.
"""

from __future__ import annotations

import fnmatch
import grp
import os
import pwd
import stat
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import cast

from pipevault.catalog.rebuild import name_text
from pipevault.format import ObjectType

WALK_THREADS = 8
# Listings slower than this per entry (on average, once PROBE_ENTRIES were listed) wait on
# the device or the network: the rest of the walk lists directories on WALK_THREADS threads.
SLOW_ENTRY_S = 100e-6
PROBE_ENTRIES = 512

_Listing = tuple[list["Entry"], list[tuple[str, str]]]


def to_text(name: str) -> str:
    """A file name (as the OS gives it, undecodable bytes as surrogate escapes) as catalog
    text: the catalog's own reversible form, ``\\xNN`` per undecodable byte and backslashes
    doubled (:func:`pipevault.catalog.rebuild.name_text`); :func:`from_text` reverses it."""
    if name.isascii() and "\\" not in name:
        return name  # most names: an ASCII name has no undecodable bytes (three calls per entry)
    return name_text(os.fsencode(name))


def from_text(text: str) -> str:
    """Inverse of :func:`to_text` (back to the OS's surrogate-escaped name)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and text[i + 1: i + 2] == "\\":
            out.append("\\")
            i += 2
        elif c == "\\" and text[i + 1: i + 2] == "x":
            out.append(chr(0xDC00 + int(text[i + 2: i + 4], 16)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Entry:
    """One file-system entry to back up.

    ``rel`` is the path relative to the file space (``""`` for its root); ``link_target``
    is a symlink's target; ``hardlink_of`` names the ``rel`` of an earlier entry of this
    walk that is the same inode (the later ones store no data).
    """

    path: str
    filespace: str
    rel: str
    st: os.stat_result
    kind: int
    link_target: bytes = b""
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    hardlink_of: str | None = None

    @property
    def hl(self) -> str:
        """High-level name: the directory part of ``rel``, rooted at ``/``."""
        return high_name(self.rel)

    @property
    def ll(self) -> str:
        """Low-level name: the entry's own name (as catalog text)."""
        return low_name(self.rel)


def high_name(rel: str) -> str:
    """The catalog's high-level name of path ``rel`` in its file space: its directory, from ``/``."""
    head = rel.rpartition("/")[0]  # rel is relative and has no doubled or trailing "/": its dirname
    return "/" + to_text(head) if head else "/"


def low_name(rel: str) -> str:
    """The catalog's low-level name of path ``rel``: its own name, as catalog text."""
    return to_text(rel.rpartition("/")[2])  # its basename (see high_name)


@dataclass
class WalkReport:
    """Entries that could not be read (the walk goes on without them)."""

    errors: list[tuple[str, str]] = field(default_factory=list)


def _kind(mode: int) -> int:
    if stat.S_ISREG(mode):
        return ObjectType.FILE
    if stat.S_ISDIR(mode):
        return ObjectType.DIRECTORY
    if stat.S_ISLNK(mode):
        return ObjectType.SYMLINK
    if stat.S_ISFIFO(mode):
        return ObjectType.FIFO
    if stat.S_ISSOCK(mode):
        return ObjectType.SOCKET
    return ObjectType.DEVICE


def read_xattrs(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The extended attributes of ``path`` (not following a symlink), sorted by name."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    if not names:
        return ()  # most files
    out = []
    for name in sorted(names):
        try:
            out.append((name.encode(), os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


@cache
def user_name(uid: int) -> str:
    """The name of user ``uid``, or "" when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@cache
def group_name(gid: int) -> str:
    """The name of group ``gid``, or "" when it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


class Excluder:
    """Exclude patterns (shell style) matched against an entry's full path and its name."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)

    def __call__(self, path: str) -> bool:
        if not self.patterns:
            return False  # the usual case, asked once per entry of a walk
        name = os.path.basename(path)
        return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(name, p) for p in self.patterns)


def _entry(path: str, filespace: str, rel: str, st: os.stat_result) -> Entry:
    kind = _kind(st.st_mode)
    target = os.readlink(os.fsencode(path)) if kind == ObjectType.SYMLINK else b""
    return Entry(path, filespace, rel, st, kind, target, read_xattrs(path))


def _list(path: str, filespace: str, rel: str, excluded: Excluder,
          report: WalkReport) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Entries of one directory (sorted) and its subdirectories to walk next."""
    entries: list[Entry] = []
    subdirs: list[tuple[str, str]] = []
    try:
        with os.scandir(path) as it:
            items = sorted(it, key=lambda d: d.name)
    except OSError as exc:
        report.errors.append((path, exc.strerror or str(exc)))
        return entries, subdirs
    for d in items:
        child = d.path
        if excluded(child):
            continue
        child_rel = f"{rel}/{d.name}" if rel else d.name
        try:
            entry = _entry(child, filespace, child_rel, d.stat(follow_symlinks=False))
        except OSError as exc:
            report.errors.append((child, exc.strerror or str(exc)))
            continue
        entries.append(entry)
        if entry.kind == ObjectType.DIRECTORY:
            subdirs.append((child, child_rel))
    return entries, subdirs


def walk(roots: Iterable[str], excludes: Iterable[str] = (), report: WalkReport | None = None,
         one_file_system: bool = False) -> Iterator[Entry]:
    """Every entry under ``roots`` (each root itself first), hard links marked.

    Unreadable entries are skipped and listed in ``report``. With ``one_file_system`` the walk
    does not descend into other mounted file systems.
    """
    report = report if report is not None else WalkReport()
    excluded = Excluder(excludes)
    seen_inodes: dict[tuple[int, int], str] = {}

    def mark(e: Entry) -> Entry:
        if e.kind == ObjectType.FILE and e.st.st_nlink > 1:
            key = (e.st.st_dev, e.st.st_ino)
            first = seen_inodes.setdefault(key, e.rel)
            if first != e.rel:
                return Entry(e.path, e.filespace, e.rel, e.st, ObjectType.HARDLINK, b"", e.xattrs, first)
        return e

    pool: ThreadPoolExecutor | None = None
    listed_s, listed = 0.0, 0
    try:
        for root in roots:
            root = os.path.abspath(root)
            try:
                st = os.lstat(root)
            except OSError as exc:
                report.errors.append((root, exc.strerror or str(exc)))
                continue
            if not stat.S_ISDIR(st.st_mode):
                yield mark(_entry(root, os.path.dirname(root), os.path.basename(root), st))
                continue
            yield _entry(root, root, "", st)
            # Directories to list, in order: (path, rel) to list here, or a pool's listing.
            pending: deque[tuple[str, str] | Future[_Listing]] = deque([(root, "")])
            while pending:
                item = pending.popleft()
                if isinstance(item, Future):
                    entries, subdirs = item.result()
                else:
                    t = time.perf_counter()
                    entries, subdirs = _list(item[0], root, item[1], excluded, report)
                    if pool is None:
                        listed_s += time.perf_counter() - t
                        listed += len(entries) + 1
                        if listed >= PROBE_ENTRIES and listed_s > SLOW_ENTRY_S * listed:
                            pool = ThreadPoolExecutor(WALK_THREADS, thread_name_prefix="pv-walk")
                            # Only directories to list are pending: nothing was submitted yet.
                            pending = deque(pool.submit(_list, path, root, rel, excluded, report)
                                            for path, rel in cast(deque[tuple[str, str]], pending))
                for e in entries:
                    yield mark(e)
                for sub_path, sub_rel in subdirs:
                    if one_file_system and os.lstat(sub_path).st_dev != st.st_dev:
                        continue
                    pending.append((sub_path, sub_rel) if pool is None
                                   else pool.submit(_list, sub_path, root, sub_rel, excluded, report))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def data_extents(fd: int, size: int, st: os.stat_result) -> list[tuple[int, int]]:
    """The (offset, length) ranges of ``fd`` that hold data; holes are left out.

    Only files with fewer allocated blocks than their size can have holes, so others are
    one extent without any extra system call.
    """
    if size == 0:
        return []
    if st.st_blocks * 512 >= size:
        return [(0, size)]
    extents: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        end = min(end, size)
        if end > start:
            extents.append((start, end - start))
        pos = end
    return extents
