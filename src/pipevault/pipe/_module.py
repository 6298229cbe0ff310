"""Modules: the code a stage runs, and adapters that turn plain callables into modules.

A module is any object with ``run(ctx) -> result``. It uses ``ctx``'s four primitives and
returns when its input ends (``receive_buf`` returned None) or, for a first stage, when it
has no more data. What ``run`` returns is collected in ``PipeResult.results``; for process
modules it must be picklable. The same module runs as a thread or as a process.

The adapters cover the common shapes, so a stage can be any callable on a buffer:

- :class:`Source`: ``fill(view) -> n`` writes up to ``len(view)`` bytes, 0 at the end.
- :class:`InPlace`: ``fn(view) -> None | int`` looks at or rewrites the payload in place
  (returning a new length when it changes it); the same buffer goes on.
- :class:`Transform`: ``fn(view) -> bytes-like | None`` makes new content, copied into a
  new pool buffer; the input is freed. None drops the buffer. The stage must be declared
  ``allocates=True``.
- :class:`Sink`: ``fn(view) -> None`` consumes the payload; the buffer is freed.

A callable with a ``finish()`` method has it called at the end of the data; for a
:class:`Transform` the bytes it returns (if any) go out as a last buffer; whatever the
callable's ``result()`` returns becomes the stage instance's result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipevault.pipe._context import StageContext


class Module(Protocol):
    """What a stage runs. ``run`` may block in the primitives; it must not swallow PipeStopped."""

    def run(self, ctx: StageContext) -> Any:
        """Process buffers until the input ends; return the instance's result."""
        ...


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipe.

    Attributes:
        name: unique within the pipe; shown in status.
        factory: called once per instance, in the instance's own thread or process, to make
            its module. Must be picklable for process stages (a class, or functools.partial
            of a module-level callable).
        instances: parallel instances (p); the first stage must have one.
        allocates: whether the stage calls alloc_buf (the first stage always does).
        mode: ``"thread"`` or ``"process"``.
    """

    name: str
    factory: Callable[[], Module]
    instances: int = 1
    allocates: bool = False
    mode: str = "thread"


def _finish(fn: Any) -> Any:
    finish = getattr(fn, "finish", None)
    return finish() if finish is not None else None


def _result(fn: Any) -> Any:
    result = getattr(fn, "result", None)
    return result() if result is not None else None


class Source:
    """First-stage adapter: ``fill(view) -> bytes written``; 0 ends the data."""

    def __init__(self, fill: Callable[[memoryview], int]) -> None:
        self.fill = fill

    def run(self, ctx: StageContext) -> Any:
        limit = ctx.fill_limit
        while True:
            buf = ctx.alloc_buf()
            n = self.fill(buf.data[:limit])
            if n <= 0:
                ctx.free_buf(buf)
                break
            buf.length = n
            ctx.send_buf(buf)
        _finish(self.fill)
        return _result(self.fill)


class InPlace:
    """Middle-stage adapter: ``fn(view)`` inspects or rewrites the payload in place."""

    def __init__(self, fn: Callable[[memoryview], int | None]) -> None:
        self.fn = fn

    def run(self, ctx: StageContext) -> Any:
        while (buf := ctx.receive_buf()) is not None:
            n = self.fn(buf.view)
            if n is not None:
                buf.length = n
            ctx.send_buf(buf)
        _finish(self.fn)
        return _result(self.fn)


class Transform:
    """Middle-stage adapter: ``fn(view) -> new payload`` in a new buffer (stage allocates)."""

    def __init__(self, fn: Callable[[memoryview], Any]) -> None:
        self.fn = fn

    def run(self, ctx: StageContext) -> Any:
        while (buf := ctx.receive_buf()) is not None:
            out = self.fn(buf.view)
            ctx.free_buf(buf)
            if out is not None:
                new = ctx.alloc_buf()
                new.set(out)
                ctx.send_buf(new)
        tail = _finish(self.fn)
        if tail:
            new = ctx.alloc_buf()
            new.set(tail)
            ctx.send_buf(new)
        return _result(self.fn)


class Sink:
    """Tail adapter: ``fn(view)`` consumes each payload; the buffer is then freed."""

    def __init__(self, fn: Callable[[memoryview], Any]) -> None:
        self.fn = fn

    def run(self, ctx: StageContext) -> Any:
        while (buf := ctx.receive_buf()) is not None:
            self.fn(buf.view)
            ctx.free_buf(buf)
        _finish(self.fn)
        return _result(self.fn)
