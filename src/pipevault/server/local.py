"""Pipes initiated on this machine through the local socket (Initiate_Pipe), and the
stand-ins for their unbound head or tail modules (SEND_IDENT, seed 002 figure 3C).

An unbound module is a process the daemon did not start (an application using the client
API) that attaches itself to a running pipe as its head or its tail. The daemon builds the
pipe with shared queues and runs an :class:`Unbound` stand-in in that stage's slot: the
stand-in waits for the module's SEND_IDENT on the local socket, then for the module's
report on that same connection (its control socket): ``done`` with a result, ``failed``
with an error, or the connection closing, which means the process died and stops the
pipe. The module itself uses the primitives on the shared pool
(:func:`pipevault.pipe.net.ident.run_unbound`); the stand-in only speaks for it.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from pipevault.clock import SYSTEM
from pipevault.errors import PipevaultError, error_from_dict
from pipevault.pipe import Pipe, StageContext, StageSpec
from pipevault.pipe.errors import ModuleDied, PipeStopped
from pipevault.pipe.modules import (
    Discard,
    FileReader,
    FileWriter,
    Passthrough,
    Xxh3Hasher,
    ZstdCompress,
    ZstdDecompress,
)
from pipevault.server.errors import NoSuchPipe, ServerError, UnknownModule

IDENT_TIMEOUT_S = 30.0
POLL_S = 0.2


@dataclass
class UnboundSlot:
    """The rendezvous between a stand-in and the process that claims its slot."""

    stage: str
    instance: int
    claimed_by: int | None = None
    attached: threading.Event = field(default_factory=threading.Event)
    reported: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: PipevaultError | None = None

    def report(self, result: Any = None, error: PipevaultError | None = None) -> None:
        """The module's outcome (from the daemon's connection thread)."""
        self.result, self.error = result, error
        self.reported.set()


class Unbound:
    """Stand-in module for an unbound head or tail: returns what the attached module
    reported, raises its error, or raises ModuleDied if its process went away."""

    def __init__(self, slots: dict[tuple[str, int], UnboundSlot], stage: str,
                 ident_timeout: float = IDENT_TIMEOUT_S) -> None:
        self.slots, self.stage, self.ident_timeout = slots, stage, ident_timeout

    def run(self, ctx: StageContext) -> Any:
        slot = self.slots[(self.stage, ctx.instance)]
        waited = 0.0
        while not slot.attached.wait(POLL_S):
            waited += POLL_S
            if ctx.stopping:
                raise PipeStopped(f"pipe {ctx.pool.name} stopped before its unbound {self.stage} "
                                  "attached")
            if waited >= self.ident_timeout:
                raise ModuleDied(f"no module attached to unbound stage {self.stage} within "
                                 f"{self.ident_timeout:.0f} s (SEND_IDENT)")
        slot.reported.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result


def _stage_factory(module: str, params: dict[str, Any]) -> Any:
    makers: dict[str, Any] = {
        "discard": lambda: Discard,
        "passthrough": lambda: Passthrough,
        "xxh3": lambda: Xxh3Hasher,
        "zstd": lambda: partial(ZstdCompress, int(params.get("level", 1))),
        "unzstd": lambda: ZstdDecompress,
        "file-read": lambda: partial(FileReader, str(params["path"]), int(params.get("offset", 0))),
        "file-write": lambda: partial(FileWriter, str(params["path"]), bool(params.get("sync"))),
    }
    if module not in makers:
        raise UnknownModule(f"no local module {module!r} (offered: unbound, {', '.join(sorted(makers))})")
    try:
        return makers[module]()
    except (KeyError, ValueError, TypeError) as exc:
        raise ServerError(f"bad parameters for module {module}: {exc}") from exc


class LocalPipe:
    """A pipe of this machine run by the daemon for a local caller (Initiate_Pipe)."""

    def __init__(self, stages: list[dict[str, Any]], buffer_size: int, max_buffers: int,
                 ident_timeout: float = IDENT_TIMEOUT_S) -> None:
        self.slots: dict[tuple[str, int], UnboundSlot] = {}
        specs = []
        for st in stages:
            name, module = str(st.get("name", "")), str(st.get("module", ""))
            instances = int(st.get("instances", 1))
            allocates = bool(st.get("allocates", False))
            if module == "unbound":
                for k in range(instances):
                    self.slots[(name, k)] = UnboundSlot(name, k)
                factory: Any = partial(Unbound, self.slots, name, ident_timeout)
            else:
                factory = _stage_factory(module, dict(st.get("params") or {}))
            specs.append(StageSpec(name, factory, instances=instances, allocates=allocates))
        self.pipe = Pipe(specs, buffer_size=buffer_size, max_buffers=max_buffers, shared=True,
                         job="initiate")
        self.name = self.pipe.name
        self.state = "running"
        self.error: PipevaultError | None = None
        self.results: dict[str, list[Any]] = {}
        self.ended: float | None = None
        self.thread = threading.Thread(target=self._main, name=f"pv-local:{self.name}", daemon=True)

    def start(self) -> None:
        """Run the pipe in its own thread; returns once its pool exists."""
        self.thread.start()
        self.pipe.wait_started(10)

    def _main(self) -> None:
        try:
            self.results = self.pipe.run().results
            self.state = "finished"
        except PipevaultError as exc:
            self.state, self.error = "failed", exc
        finally:
            for slot in self.slots.values():
                if not slot.reported.is_set():
                    slot.report(error=PipeStopped(f"pipe {self.name} ended"))  # free its waiters
            self.ended = SYSTEM.monotonic()

    def claim(self, stage: str, instance: int, pid: int) -> tuple[int, UnboundSlot]:
        """SEND_IDENT: give the slot to process ``pid``; returns (stage index, slot).

        Raises:
            NoSuchPipe: no unbound slot of that stage and instance, or it is taken.
        """
        slot = self.slots.get((stage, instance))
        if slot is None or slot.claimed_by is not None or self.state != "running":
            raise NoSuchPipe(f"pipe {self.name} has no free unbound slot {stage}#{instance}")
        slot.claimed_by = pid
        index = [s.name for s in self.pipe.specs].index(stage)
        return index, slot

    def status(self) -> dict[str, Any]:
        """This pipe as a JSON-ready mapping (stages while it runs)."""
        snap = self.pipe.status() if self.state == "running" else None
        out: dict[str, Any] = {
            "pipe": self.name, "local_name": self.name, "node": None, "peer": None,
            "direction": "local", "module": "initiate", "state": self.state,
            "stages": [asdict(s.figures()) for s in snap.stages] if snap else [], "links": [],
            "unbound": [{"stage": s.stage, "instance": s.instance, "pid": s.claimed_by}
                        for s in self.slots.values()],
        }
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        return out


def rebuild_error(data: Any) -> PipevaultError:
    """An unbound module's reported error (``to_dict()`` form) as an error object."""
    if isinstance(data, dict):
        return error_from_dict(data)
    return ModuleDied(f"unbound module failed: {data!r}")
