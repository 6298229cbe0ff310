"""Two test hosts on one machine: a pair of network namespaces joined by a veth pair.

For the network tests and `pipevault bench net` only: needs root and iproute2. Namespace,
interface names and the private /24 between them are derived from this process's pid, so
concurrent runs do not collide; :meth:`NetnsPair.close` deletes both namespaces (which
removes the veth pair), and stale pairs of dead processes are swept at creation.
Traffic stays between the two namespaces: neither has a route anywhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO, Any

IP_TIMEOUT_S = 10.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S,
                          check=check)


def netns_probe() -> str | None:
    """None when namespaces and veth pairs can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"pvprobe{os.getpid()}"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def sweep_stale() -> None:
    """Delete namespace pairs left by processes that no longer run."""
    listing = _ip("netns", "list", check=False).stdout
    for m in re.finditer(r"^pv[ab]-(\d+)\b", listing, re.M):
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _ip("netns", "del", m.group(0), check=False)


class NetnsPair:
    """Namespaces ``a`` (client side) and ``b`` (server side), ``addr_a`` and ``addr_b``."""

    def __init__(self, tag: int) -> None:
        self.a, self.b = f"pva-{tag}", f"pvb-{tag}"
        subnet = 20 + tag % 200
        self.addr_a, self.addr_b = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
        self._veth = (f"pva{tag}"[:15], f"pvb{tag}"[:15])

    @classmethod
    def create(cls) -> NetnsPair:
        """Make both namespaces, the veth pair and the addresses; cleans up on failure."""
        sweep_stale()
        pair = cls(os.getpid())
        try:
            va, vb = pair._veth
            _ip("netns", "add", pair.a)
            _ip("netns", "add", pair.b)
            _ip("link", "add", va, "type", "veth", "peer", "name", vb)
            _ip("link", "set", va, "netns", pair.a)
            _ip("link", "set", vb, "netns", pair.b)
            for ns, dev, addr in ((pair.a, va, pair.addr_a), (pair.b, vb, pair.addr_b)):
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            pair.close()
            raise
        return pair

    def close(self) -> None:
        """Delete both namespaces (and so the veth pair). Idempotent."""
        for ns in (self.a, self.b):
            _ip("netns", "del", ns, check=False)

    def __enter__(self) -> NetnsPair:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _cmd(self, ns: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def run_a(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in namespace a to the end; stdout captured, stderr passed through."""
        return subprocess.run(self._cmd(self.a, cmd), stdout=subprocess.PIPE, text=True,
                              timeout=timeout, check=False)

    def popen_a(self, cmd: list[str], stderr: Path | None = None) -> subprocess.Popen[str]:
        """Start ``cmd`` in namespace a with a text stdout pipe."""
        return self._popen(self.a, cmd, stderr)

    def popen_b(self, cmd: list[str], stderr: Path | None = None) -> subprocess.Popen[str]:
        """Start ``cmd`` in namespace b with a text stdout pipe (stderr to a file if given)."""
        return self._popen(self.b, cmd, stderr)

    def _popen(self, ns: str, cmd: list[str], stderr: Path | None) -> subprocess.Popen[str]:
        err: IO[Any] | int = open(stderr, "w") if stderr is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            return subprocess.Popen(self._cmd(ns, cmd), stdout=subprocess.PIPE, stderr=err, text=True)
        finally:
            if not isinstance(err, int):
                err.close()
