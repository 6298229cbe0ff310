"""Backup and restore through a `pipevault serve` daemon: the client's half of the pipe.

A remote backup walks, plans, reads and encodes here, as a local one does, and extends the
pipe to the server, whose ``store`` tail writes the superblocks to its pool and catalogues
them under the authenticated node's name::

    client:  read -> encode (N) -> net (N connections)
    server:                           net -> admit -> store -> catalog

Compression and encryption happen here with the node's own key (``PIPEVAULT_HOME/keys``):
the server stores ciphertext and never sees the key. The incremental comparison uses the
node's active versions, which the server lists for the authenticated node only.

A remote restore asks the server to choose the versions (as ``pipevault restore`` does
locally) and extends a pull pipe to its ``restore`` head, which reads the superblocks; this
side scans, verifies, decrypts and writes them under the target exactly as a local restore::

    server:  read -> track -> net        client:  net -> restore

A backup cut by a dropped connection or a failed server keeps on the server whatever had
reached a durability point (durable, then catalogued; nothing partial); ``resume`` runs it
again as an incremental, so only the rest is sent.
"""

from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pipevault.catalog.objects import VersionInfo
from pipevault.config import Settings
from pipevault.events import ItemCounter, Reporter
from pipevault.format import SessionKeys
from pipevault.mover import backup
from pipevault.mover.backup import BUFFER, BackupOptions, BackupResult, ChunkEncode
from pipevault.mover.keys import key_path, node_key
from pipevault.mover.object_writer import ObjectWriter
from pipevault.mover.paths import TargetTree, check_filespace
from pipevault.mover.plan import filespace_of, plan_against, send_order
from pipevault.mover.remote_wire import version_from_wire
from pipevault.mover.restore import BLOCK_BUFFER, RESTORE_BUFFERS, RestoreResult, checked, sink_stages
from pipevault.mover.restore_plan import Key, RestoreOptions
from pipevault.mover.site import settings_passphrase
from pipevault.mover.source import SourceReader
from pipevault.mover.walk import from_text, to_text
from pipevault.pipe import Pipe, StageSpec, bulk_gc, preload_process_modules
from pipevault.pipe.net import ControlClient, Credentials, RemotePipe
from pipevault.pipe.net.client import DEFAULT_CONNECTIONS

REMOTE_BUFFERS = 32  # pool buffers of a remote backup, each side (see run_remote_backup)
REQUEST_BYTES = 128 << 10  # names per control request (frames are limited to 1 MiB; escapes grow them)


@dataclass(frozen=True)
class Server:
    """Where a remote job goes and how: the daemon's address, the node's credentials, the
    number of parallel data connections, an optional window clamp per connection."""

    address: str
    creds: Credentials
    connections: int = DEFAULT_CONNECTIONS
    window: int | None = None


def _listing(control: ControlClient, reply: dict[str, Any]) -> list[Any]:
    """Every item of a paged reply (asks for the next pages)."""
    items = list(reply.get("items", []))
    while reply.get("more"):
        reply = control.request("next_page", params={"token": reply["token"]})
        items.extend(reply.get("items", []))
    return items


def _send_deleted(server: Server, deleted: list[tuple[str, str, str]]) -> str:
    """Hand the server the plan's deleted objects in parts; the token naming the list."""
    token: str | None = None
    with ControlClient(server.address, server.creds) as control:
        part: list[list[str]] = []
        size = 0
        for i, k in enumerate(deleted):
            part.append(list(k))
            size += sum(len(x) for x in k) + 16
            if size >= REQUEST_BYTES or i == len(deleted) - 1:
                token = str(control.request("backup_deleted", params={"keys": part, "token": token})["token"])
                part, size = [], 0
    assert token is not None
    return token


@bulk_gc()
def run_remote_backup(settings: Settings, server: Server, opts: BackupOptions, reporter: Reporter | None = None,
                      *, resume: bool = False, sync_bytes: int | None = None) -> BackupResult:
    """Back up (or archive) ``opts.paths`` to ``server``; returns once the server has
    catalogued every object and ended the session.

    ``resume`` continues an interrupted backup: what the server holds durably is not sent
    again (an incremental comparison, also when ``opts.full``). ``sync_bytes`` sets how
    often the server makes what it received durable (default: the server's).

    Raises:
        AuthRefused, ConnectionLost, RemoteFailed: the server refused, could not be reached,
            or failed (its error quoted); the server's catalog keeps no partial object.
        KeyMissing, WrongPassphrase: the class encrypts and the node's key cannot be unlocked.
        NodeBusy: another backup of this node runs on the server.
    """
    t0 = time.perf_counter()
    if opts.store_process:
        preload_process_modules([backup.__name__])  # the encoder processes, imported while we plan
    kind = "archive" if opts.archive else "backup"
    node = server.creds.node
    filespaces = sorted({to_text(filespace_of(r)) for r in opts.paths})
    with ControlClient(server.address, server.creds) as control:
        reply = control.request("backup_prepare", params={"filespaces": filespaces, "class": opts.class_name,
                                                          "listing": not opts.archive})
        items = _listing(control, reply) if not opts.archive else []
    mc = reply["class"]
    versions = [version_from_wire(d) for d in items]
    active = {(v.filespace, v.hl, v.ll): v.attributes for v in versions}
    plan = plan_against(active, opts.paths, opts.excludes, full=opts.full and not resume, archive=opts.archive,
                        one_file_system=opts.one_file_system)
    key = node_key(settings.home, node, settings_passphrase(settings), create=True) if mc["encrypt"] else None
    sid = uuid.uuid4()
    now = time.time()
    expires = None
    if opts.archive:
        days = opts.expire_days if opts.expire_days is not None else mc["archive_days"]
        expires = now + days * 86_400.0
    params: dict[str, Any] = {"session": str(sid), "class": mc["name"], "archive": opts.archive,
                              "description": opts.description, "expire_days": opts.expire_days,
                              "host": socket.gethostname()}
    if plan.deleted and not opts.archive:
        params["deleted"] = _send_deleted(server, plan.deleted)
    if sync_bytes is not None:
        params["sync_bytes"] = sync_bytes
    if key is not None:  # the server writes it in the session header: a wrong key is then named
        params["key_check"] = SessionKeys.derive(key, sid).key_check.hex()
    # The network sets the pace: more buffers would only hold more data not yet durable on
    # the server when a connection drops (what a resume must send again).
    buffers = max(opts.max_buffers or REMOTE_BUFFERS, 8, 2 * server.connections + 4)
    remote = RemotePipe.extend(server.address, server.creds, direction="push", module="store", params=params,
                               connections=server.connections, buffer_size=BUFFER, max_buffers=buffers,
                               window=server.window)
    counter = ItemCounter(reporter, len(plan.send)) if reporter is not None else None
    stages = [
        StageSpec("read", functools.partial(SourceReader, send_order(plan.send), mc["name"], counter, kind,
                                            int(now * 1e9), int(expires * 1e9) if expires else 0,
                                            opts.description)),
        StageSpec("encode", functools.partial(ChunkEncode, sid, key, mc["compress"], mc["dedup"]),
                  instances=max(1, opts.instances), allocates=True,
                  mode="process" if opts.store_process else "thread"),
        remote.agent_stage(),
    ]
    pipe = Pipe(stages, buffer_size=BUFFER, max_buffers=buffers, reporter=counter,
                total_bytes=plan.bytes_to_send, job=kind, name=remote.pipe_name)
    result = remote.run(pipe)
    done = remote.remote_result
    warnings = list(plan.report.errors) + list(result.results["read"][0] or [])
    return BackupResult(
        session=sid, examined=len(plan.send) + plan.unchanged, sent=int(done["objects"]), unchanged=plan.unchanged,
        deleted=int(done["deleted"]), bytes_read=int(done["bytes"]), bytes_stored=int(done["stored"]),
        elapsed_s=time.perf_counter() - t0, volumes=list(done["volumes"]), warnings=warnings,
        stages=tuple(s.figures() for s in result.status.stages),
        bottleneck=result.status.bottleneck(result.elapsed_s), pipe_s=result.elapsed_s)


def _restore_params(opts: RestoreOptions) -> dict[str, Any]:
    return {"paths": [os.path.normpath(os.path.abspath(p)) for p in opts.paths], "pit": opts.point_in_time,
            "version_id": opts.version_id, "inactive": opts.inactive, "archive": opts.archive,
            "description": opts.description}


@bulk_gc()
def run_remote_restore(settings: Settings, server: Server, opts: RestoreOptions,
                       reporter: Reporter | None = None) -> RestoreResult:
    """Restore (or with ``verify_only`` check) the node's versions from ``server``.

    Paths name the client's files as they were backed up; ``opts.to`` restores under a
    directory instead of the original place. Nothing is written outside the target.

    Raises:
        NothingMatched: nothing of this node matches (the server's error).
        KeyMissing, WrongPassphrase: encrypted data and no (or a wrong) key.
        RestoreIncomplete: some objects were not restored intact (all others were).
        AuthRefused, ConnectionLost, RemoteFailed: as for a backup.
    """
    t0 = time.perf_counter()
    with ControlClient(server.address, server.creds) as control:
        reply = control.request("restore_prepare", params=_restore_params(opts))
        items = _listing(control, reply)
    wanted: dict[Key, VersionInfo] = {}
    by_index: dict[tuple[uuid.UUID, int], Key] = {}
    links: dict[Key, VersionInfo] = {}
    sources: set[Key] = set()  # read only for the chunks the others repeat (restore_plan.dedup_sources)
    for item in items:
        sid, fs, hl, ll = item["key"]
        k: Key = (uuid.UUID(sid), fs, hl, ll)
        wanted[k] = version_from_wire(item["version"])
        if item.get("index") is not None:
            by_index[(k[0], int(item["index"]))] = k
        if item.get("link") is not None:
            links[k] = version_from_wire(item["link"])
        if item.get("source"):
            sources.add(k)
    node = server.creds.node
    passphrase = settings_passphrase(settings)
    key = (node_key(settings.home, node, passphrase, create=False)
           if key_path(settings.home, node).exists() and passphrase else None)
    base = {v.filespace: () if opts.to is not None else check_filespace(from_text(v.filespace))
            for v in wanted.values()}
    target = None if opts.verify_only else TargetTree(opts.to if opts.to is not None else "/")
    asked = len(wanted) - len(sources)
    counter = ItemCounter(reporter, asked) if reporter is not None else None
    writer = ObjectWriter(wanted, by_index, key, target, base, reporter, links, counter, sources)
    buffers = max(RESTORE_BUFFERS, 2 * server.connections + 4)
    try:
        remote = RemotePipe.extend(server.address, server.creds, direction="pull", module="restore",
                                   params={"plan": reply["plan"]}, connections=server.connections,
                                   buffer_size=BLOCK_BUFFER, max_buffers=buffers, window=server.window)
        pipe = Pipe([remote.agent_stage(), *sink_stages(writer)],
                    buffer_size=BLOCK_BUFFER, max_buffers=buffers, reporter=counter,
                    total_bytes=sum(v.size for v in wanted.values()),
                    job="verify" if opts.verify_only else "restore", name=remote.pipe_name)
        result = remote.run(pipe)
    finally:
        writer.close()
        if target is not None:
            writer.drop_scratch()
            target.close()
    failed = sorted((wanted[k].path, why) for k, why in writer.failed.items())
    out = RestoreResult(len(writer.restored), writer.bytes, time.perf_counter() - t0, failed, opts.verify_only,
                        int(result.results["net"][0]["frames"]), pipe_s=result.elapsed_s)
    return checked(out, asked)
