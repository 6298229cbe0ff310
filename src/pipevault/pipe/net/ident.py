"""An unbound head or tail module attaching to a pipe of the local daemon (SEND_IDENT).

The daemon has initiated a pipe (Initiate_Pipe on its local socket) with a stage declared
``unbound``. A process of the machine then runs that stage itself::

    result = run_unbound("/var/lib/pipevault/server/pipevault.sock", pipe_name, "head",
                         MySource())

It identifies itself (SEND_IDENT: pipe, stage, instance, pid) on the local socket, attaches
to the pipe's shared pool by name, runs the module with the four primitives like any other
stage, and reports ``done`` (with the module's result) or ``failed`` (with its error) on
the same connection, which stays open meanwhile as the module's control socket: if the
process dies, the daemon sees the connection close and stops the pipe.
"""

from __future__ import annotations

import os
from typing import Any

from pipevault.clock import SYSTEM
from pipevault.errors import PipevaultError
from pipevault.pipe import _pool as P
from pipevault.pipe._context import StageContext
from pipevault.pipe._module import Module
from pipevault.pipe.errors import ModuleFailed, PipeStopped
from pipevault.pipe.net.client import connect, request


def run_unbound(socket_path: str, pipe: str, stage: str, module: Module, instance: int = 0) -> Any:
    """Attach ``module`` as instance ``instance`` of unbound stage ``stage`` of ``pipe``.

    Blocks until the module returns; returns its result.

    Raises:
        PipevaultError: the daemon refused (no such pipe or slot), or the module's own error
            (ModuleFailed wrapping it if it was not a PipevaultError), after the pipe was
            told to stop.
    """
    sock = connect(f"unix:{socket_path}")
    try:
        reply = request(sock, "send_ident", pipe=pipe, stage=stage, instance=instance, pid=os.getpid())
        sock.settimeout(None)
        pool = P.BufferPool.attach(str(reply["local_name"]), SYSTEM.monotonic)
        try:
            ctx = StageContext(pool, int(reply["stage"]), instance)
            try:
                result = module.run(ctx)
            except BaseException as exc:
                if not (isinstance(exc, PipeStopped) and pool.state != P.RUNNING):
                    pool.set_state(P.FAILED, ctx.slot)
                err = exc if isinstance(exc, PipevaultError) else ModuleFailed(
                    f"unbound {stage}#{instance}: {type(exc).__name__}: {exc}")
                request(sock, "failed", error=err.to_dict())
                if err is exc:
                    raise
                raise err from exc
            # The daemon's stand-in ends the stage (ctx.finish) once it hears "done".
            request(sock, "done", result=result)
            return result
        finally:
            pool.close()
    finally:
        sock.close()
