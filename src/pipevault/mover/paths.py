"""Writing restored objects under a target directory without ever leaving it.

Names come from the catalog or from media, and either may be hostile. Every name is checked
(relative, no ``..``, ``.`` or empty parts, no NUL) and every directory on the way is opened
relative to its parent with ``O_NOFOLLOW``, so neither a crafted name nor a symlink planted
in the target (or restored earlier in the same run) can send a write elsewhere. Anything
that is not a plain directory where a directory is needed is refused with
:class:`UnsafePath`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict

from pipevault.mover.errors import DestinationError, UnsafePath

DIR_FDS = 128


def check_name(name: bytes | str) -> tuple[str, ...]:
    """The parts of a stored relative name.

    Raises:
        UnsafePath: the name is absolute, empty, has ``..``/``.``/empty parts or a NUL byte.
    """
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    if "\x00" in text:
        raise UnsafePath(f"stored name {text!r} contains a NUL byte")
    if text.startswith("/"):
        raise UnsafePath(f"stored name {text!r} is absolute")
    parts = tuple(text.split("/")) if text else ()
    for p in parts:
        if p in ("", ".", ".."):
            raise UnsafePath(f"stored name {text!r} has a {p or 'empty'!r} component")
    return parts


def check_filespace(fs: str) -> tuple[str, ...]:
    """The parts of a file space name, which must be an absolute normal path."""
    if not fs.startswith("/"):
        raise UnsafePath(f"file space {fs!r} is not absolute")
    return check_name(fs.strip("/")) if fs.strip("/") else ()


class TargetTree:
    """A directory that restored objects are written into. Not thread-safe; close it.

    Raises (from every method): UnsafePath, DestinationError.
    """

    def __init__(self, root: str) -> None:
        try:
            os.makedirs(root, exist_ok=True)
            self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise DestinationError(f"cannot open the restore target {root}: {exc.strerror}") from exc
        self.root = root
        self._dirs: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._created: set[tuple[str, ...]] = set()  # directories this run made: empty at birth

    def close(self) -> None:
        """Close every directory descriptor."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        os.close(self.root_fd)

    def dir_fd(self, parts: tuple[str, ...], create: bool = True) -> int:
        """A descriptor of directory ``parts`` under the root, creating missing directories.

        A component that exists and is not a directory (a symlink above all) is refused.
        """
        if not parts:
            return self.root_fd
        fd = self._dirs.get(parts)
        if fd is not None:
            self._dirs.move_to_end(parts)
            return fd
        parent = self.dir_fd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
                self._created.add(parts)
            except FileExistsError:
                pass
            except OSError as exc:
                raise DestinationError(f"cannot create {'/'.join(parts)}: {exc.strerror}") from exc
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{'/'.join(parts)} in the restore target is not a plain directory "
                                 "(a symlink or a file); nothing is written through it") from exc
            raise DestinationError(f"cannot open {'/'.join(parts)}: {exc.strerror}") from exc
        self._dirs[parts] = fd
        if len(self._dirs) > DIR_FDS:
            _, old = self._dirs.popitem(last=False)
            os.close(old)
        return fd

    def _clear(self, dfd: int, name: str, keep_dir: bool = False) -> None:
        """Remove whatever non-directory sits at ``name`` (never follows it)."""
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            raise DestinationError(f"{name} exists in the target as a directory")
        os.unlink(name, dir_fd=dfd)

    def create_file(self, parts: tuple[str, ...]) -> int:
        """Open a new regular file at ``parts`` for writing (replacing a non-directory)."""
        return open_new_file(self.dir_fd(parts[:-1]), parts[-1], parts[:-1] in self._created, "/".join(parts))

    def dir_slot(self, parts: tuple[str, ...]) -> tuple[int, bool]:
        """``(directory fd, fresh)`` of directory ``parts`` for creating files in it from
        another thread: the fd is a duplicate the caller must close (this tree may close its
        own meanwhile); ``fresh`` when this run made the directory (nothing can be in the way
        there)."""
        return os.dup(self.dir_fd(parts)), parts in self._created

    def read_back(self, parts: tuple[str, ...], offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of a file this run restored (for a duplicate chunk
        whose original went there).

        Raises:
            DestinationError: the file cannot be opened or read, or is shorter.
        """
        dfd = self.dir_fd(parts[:-1], create=False)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                data = os.pread(fd, length, offset)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DestinationError(f"cannot read back {'/'.join(parts)}: {exc.strerror}") from exc
        if len(data) != length:
            raise DestinationError(f"{'/'.join(parts)} is shorter than what was restored into it")
        return data

    def make_dir(self, parts: tuple[str, ...]) -> int:
        """Create (or reuse) directory ``parts``; returns its descriptor."""
        return self.dir_fd(parts)

    def make_symlink(self, parts: tuple[str, ...], target: bytes) -> None:
        """Create a symlink (its target is data: it is never followed while restoring)."""
        dfd = self.dir_fd(parts[:-1])
        self._clear(dfd, parts[-1])
        os.symlink(target, parts[-1], dir_fd=dfd)

    def make_hardlink(self, parts: tuple[str, ...], existing: tuple[str, ...]) -> None:
        """Link ``parts`` to the already restored ``existing``."""
        dfd = self.dir_fd(parts[:-1])
        self._clear(dfd, parts[-1])
        os.link(existing[-1], parts[-1], src_dir_fd=self.dir_fd(existing[:-1]), dst_dir_fd=dfd,
                follow_symlinks=False)

    def make_node(self, parts: tuple[str, ...], mode: int, rdev: int) -> None:
        """Create a FIFO or device node."""
        dfd = self.dir_fd(parts[:-1])
        self._clear(dfd, parts[-1])
        os.mknod(parts[-1], mode, rdev, dir_fd=dfd)

    def remove_dir(self, parts: tuple[str, ...]) -> None:
        """Remove directory ``parts`` if this run created it and it is empty (best effort)."""
        if parts not in self._created:
            return
        fd = self._dirs.pop(parts, None)
        if fd is not None:
            os.close(fd)
        try:
            os.rmdir(parts[-1], dir_fd=self.dir_fd(parts[:-1], create=False))
        except (OSError, UnsafePath, DestinationError):
            pass
        self._created.discard(parts)

    def remove(self, parts: tuple[str, ...]) -> None:
        """Remove a partly restored non-directory (best effort)."""
        try:
            self._clear(self.dir_fd(parts[:-1], create=False), parts[-1])
        except (OSError, UnsafePath, DestinationError):
            pass


def open_new_file(dfd: int, name: str, fresh: bool, label: str) -> int:
    """Open ``name`` in directory ``dfd`` for writing (and reading back a duplicate chunk
    restored into it), never through a link of any kind.

    Safe to call from any thread. Raises DestinationError.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
    if fresh:
        flags |= os.O_EXCL  # our own new directory: nothing can be in the way
    else:
        try:
            st = os.lstat(name, dir_fd=dfd)
            if stat.S_ISDIR(st.st_mode):
                raise DestinationError(f"{label} exists in the target as a directory")
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        flags |= os.O_TRUNC
    try:
        return os.open(name, flags, 0o600, dir_fd=dfd)
    except OSError as exc:
        raise DestinationError(f"cannot create {label}: {exc.strerror}") from exc
