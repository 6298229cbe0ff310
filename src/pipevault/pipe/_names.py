"""Pipe names and the POSIX shared-memory and semaphore names derived from them.

A pipe is named, as in seed 002, from its initiator's process id, a timestamp and the host
name: ``pv-<pid>-<ns>-<host>``. Every kernel object of the pipe (the segment and each
semaphore) is named from it, so any process on the machine can attach by the pipe's name,
and leftovers of a crashed initiator can be found and removed (:func:`sweep_stale`).
"""

from __future__ import annotations

import os
import re
import socket
import time

import posix_ipc

PREFIX = "pv-"
_HOST_SAFE = re.compile(r"[^A-Za-z0-9_.]")


def new_pipe_name() -> str:
    """A fresh pipe name from this process's pid, the time and the host name."""
    host = _HOST_SAFE.sub("_", socket.gethostname())[:40]
    return f"{PREFIX}{os.getpid()}-{time.time_ns()}-{host}"


def shm_name(pipe: str) -> str:
    """The POSIX name of the pipe's shared-memory segment."""
    return f"/{pipe}"


def sem_name(pipe: str, what: str) -> str:
    """The POSIX name of one of the pipe's semaphores (``what`` is e.g. ``q1.items``)."""
    return f"/{pipe}.{what}"


def _owner_pid(pipe: str) -> int | None:
    m = re.match(rf"^{PREFIX}(\d+)-", pipe)
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_segments() -> list[str]:
    """Names of the pipe segments present in /dev/shm (running or stale)."""
    try:
        entries = os.listdir("/dev/shm")
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if e.startswith(PREFIX) and not e.startswith("sem."))


def sweep_stale() -> list[str]:
    """Unlink the segments and semaphores of pipes whose initiator process is gone.

    Returns the names of the pipes cleaned. Safe to call at any time: a pipe whose initiator
    still runs is never touched.
    """
    cleaned: set[str] = set()
    try:
        entries = os.listdir("/dev/shm")
    except FileNotFoundError:
        return []
    for entry in entries:
        name = entry[4:] if entry.startswith("sem.") else entry
        if not name.startswith(PREFIX):
            continue
        pipe = name.split(".", 1)[0]
        pid = _owner_pid(pipe)
        if pid is None or pid_alive(pid):
            continue
        try:
            if entry.startswith("sem."):
                posix_ipc.unlink_semaphore("/" + name)
            else:
                posix_ipc.unlink_shared_memory("/" + name)
        except posix_ipc.ExistentialError:
            pass
        cleaned.add(pipe)
    return sorted(cleaned)
