"""Remote backup and restore on the server: the ``store`` tail, the ``restore`` head and the
control requests that prepare them (the mover's side is :mod:`pipevault.mover.serving`).

Control requests (``{"op": ..., "params": {...}}``, answered for the authenticated node only):

- ``backup_prepare`` ``{filespaces, class, listing}``: the class's encoding (name,
  compress, encrypt, dedup) and, with ``listing``, the node's active versions in those file
  spaces, paged;
- ``restore_prepare`` ``{paths, pit, version_id, inactive, archive, description}``: the
  objects to restore (key, version, object index, hard-link redirect), paged, and a
  ``plan`` token for the ``restore`` head;
- ``next_page`` ``{token}``: the next page of a listing;
- ``backup_deleted`` ``{keys, token}``: objects the coming backup found deleted, sent in
  parts before Extend_Pipe; the ``store`` module's ``deleted`` parameter names the list.

Pages hold at most :data:`PAGE_BYTES` of JSON (control frames are limited to 1 MiB). A
listing or restore plan not used within :data:`KEEP_S` is forgotten.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from pipevault.clock import SYSTEM
from pipevault.config import Settings
from pipevault.errors import PipevaultError
from pipevault.mover import backup, serving
from pipevault.mover.remote_wire import version_to_wire
from pipevault.mover.restore import RestoreOptions
from pipevault.mover.site import Site
from pipevault.pipe import preload_process_modules
from pipevault.server import halves
from pipevault.server.errors import AccessDenied, NodeBusy, NoSuchPipe, ServerConfigError, ServerError

PAGE_BYTES = 512 << 10
KEEP_S = 600.0


def open_site_once(settings: Settings) -> None:
    """Open (creating on first use) and close the site, so a bad configuration shows at start;
    start the server process modules are forked from.

    Raises:
        ServerConfigError: the catalog or the default pool cannot be opened.
    """
    try:
        Site.open(settings).close()
    except PipevaultError as exc:
        raise ServerConfigError(f"the server's site cannot be opened: {exc.message}") from exc
    # Each backup's store and catalog run as process modules: forked from a server that
    # imported them once, instead of a fresh interpreter (about a second of CPU) each (never
    # from this process, whose other threads serve other clients meanwhile).
    preload_process_modules([backup.__name__], server=True)


@dataclass
class _Held:
    node: str
    items: list[str]  # JSON of each item, sent in pages
    pos: int
    expires: float
    plan: serving.RestorePlan | None = None


_held: dict[str, _Held] = {}
_lock = threading.Lock()


def _settings(req: halves.HalfRequest) -> Settings:
    if req.settings is None:
        raise ServerError("this server keeps no pools or catalog (started without settings)",
                          hint="Run `pipevault serve` (it opens the site of its settings).")
    return req.settings


def _page(token: str, held: _Held) -> dict[str, Any]:
    """The next page of ``held`` as a reply (the JSON items are spliced, not re-encoded)."""
    size, end = 0, held.pos
    while end < len(held.items) and (end == held.pos or size + len(held.items[end]) < PAGE_BYTES):
        size += len(held.items[end]) + 1
        end += 1
    page = [json.loads(item) for item in held.items[held.pos:end]]
    held.pos = end
    return {"token": token, "items": page, "more": end < len(held.items), "total": len(held.items)}


def _hold(node: str, items: list[Any], plan: serving.RestorePlan | None = None) -> tuple[str, _Held]:
    token = secrets.token_hex(16)
    held = _Held(node, [json.dumps(i, separators=(",", ":")) for i in items], 0, SYSTEM.monotonic() + KEEP_S, plan)
    with _lock:
        now = SYSTEM.monotonic()
        for t in [t for t, h in _held.items() if h.expires < now]:
            del _held[t]
        _held[token] = held
    return token, held


def _take(node: str, token: str) -> _Held:
    with _lock:
        held = _held.get(token)
    if held is None or held.expires < SYSTEM.monotonic():
        raise NoSuchPipe("no listing or restore plan with that token (it may have expired)",
                         hint="Start the backup or restore again.")
    if held.node != node:
        raise AccessDenied(f"that listing is not node {node}'s")
    return held


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ServerError(f"{what} must be a list of text")
    return value


def backup_prepare(req: halves.HalfRequest) -> dict[str, Any]:
    """The class's encoding and (paged) the node's active versions in the given file spaces."""
    settings = _settings(req)
    class_name = req.params.get("class")
    reply: dict[str, Any] = {"class": serving.class_of(settings, req.node, str(class_name) if class_name else None)}
    if req.params.get("listing", True):
        filespaces = _strings(req.params.get("filespaces", []), "filespaces")
        versions = serving.active_versions_of(settings, req.node, filespaces)
        token, held = _hold(req.node, [version_to_wire(v) for v in versions])
        reply.update(_page(token, held))
    return reply


def restore_prepare(req: halves.HalfRequest) -> dict[str, Any]:
    """Plan a restore of the node's own versions; the objects (paged) and the plan's token."""
    settings = _settings(req)
    p = req.params
    paths = _strings(p.get("paths", []), "paths")
    if not all(path.startswith("/") for path in paths):
        raise ServerError("restore paths must be absolute (the client's own names)")
    try:
        opts = RestoreOptions(paths, point_in_time=float(p["pit"]) if p.get("pit") is not None else None,
                              version_id=int(p["version_id"]) if p.get("version_id") is not None else None,
                              inactive=bool(p.get("inactive")), archive=bool(p.get("archive")),
                              description=str(p["description"]) if p.get("description") is not None else None)
    except (TypeError, ValueError) as exc:
        raise ServerError(f"bad restore_prepare parameters: {exc}") from exc
    plan = serving.plan_restore(settings, req.node, opts)
    items = [{"key": [str(k[0]), k[1], k[2], k[3]], "version": version_to_wire(v), "index": plan.index.get(k),
              "link": version_to_wire(plan.links[k]) if k in plan.links else None, "source": k in plan.sources}
             for k, v in plan.wanted.items()]
    token, held = _hold(req.node, items, plan)
    return {"plan": token, **_page(token, held)}


def next_page(req: halves.HalfRequest) -> dict[str, Any]:
    """The next page of a listing of this node."""
    token = str(req.params.get("token", ""))
    held = _take(req.node, token)
    with _lock:
        return _page(token, held)


def backup_deleted(req: halves.HalfRequest) -> dict[str, Any]:
    """Hold (part of) the list of objects a coming backup found deleted; its token goes in
    the ``store`` module's ``deleted`` parameter. Pass ``token`` to add to a list."""
    keys = req.params.get("keys", [])
    if not isinstance(keys, list) or not all(
            isinstance(k, list) and len(k) == 3 and all(isinstance(x, str) for x in k) for k in keys):
        raise ServerError("deleted objects must be [file space, high name, low name] lists")
    token = req.params.get("token")
    if token is None:
        token, _held = _hold(req.node, [])
    held = _take(req.node, str(token))
    with _lock:
        held.items.extend(json.dumps(k) for k in keys)
    return {"token": token, "count": len(held.items)}


def _deleted_list(node: str, token: Any) -> list[tuple[str, str, str]]:
    if token is None:
        return []
    held = _take(node, str(token))
    with _lock:
        _held.pop(str(token), None)
    return [tuple(json.loads(k)) for k in held.items]


def _push_store(req: halves.HalfRequest) -> halves.Half:
    settings = _settings(req)
    deleted = _deleted_list(req.node, req.params.get("deleted"))
    try:
        service = serving.begin_backup(settings, req.node, req.params, deleted)
    except (TypeError, ValueError) as exc:
        raise ServerError(f"bad store parameters: {exc}") from exc
    if service is None:
        raise NodeBusy(f"a backup of node {req.node} already runs on this server")
    return halves.Half(service.stages(), on_result=service.succeeded, on_failure=service.failed)


def _pull_restore(req: halves.HalfRequest) -> halves.Half:
    settings = _settings(req)
    held = _take(req.node, str(req.params.get("plan", "")))
    if held.plan is None:
        raise NoSuchPipe("that token names no restore plan")
    head = serving.RestoreHead(settings, req.node, held.plan)

    def success() -> dict[str, Any]:
        head.close()
        return {}

    return halves.Half(head.stages(), on_success=success, on_failure=head.close)


halves.register("push", "store", _push_store)
halves.register("pull", "restore", _pull_restore)
halves.register_operation("backup_prepare", backup_prepare)
halves.register_operation("restore_prepare", restore_prepare)
halves.register_operation("next_page", next_page)
halves.register_operation("backup_deleted", backup_deleted)
