"""The server's side of remote backups and restores (what `pipevault serve` runs for a node).

Everything runs against a :class:`Site` opened for the authenticated node, never a name the
client gives, so a node stores under and reads from its own name only. The client walks,
plans, reads and encodes (its key never leaves it); the server:

- lists the node's active versions in the file spaces a backup will compare with
  (:func:`active_versions_of`);
- runs the tail of a backup pipe (:class:`BackupService`): Admit (checks the stream) ->
  store -> catalog (pool volumes, durable-then-catalogued as locally, with a durability
  point every ``sync_bytes`` so a cut backup keeps most of what crossed), then marks the deleted
  objects and ends the catalog session; a failure ends it ``failed`` and nothing that was
  not durable is catalogued;
- plans a restore (:func:`plan_restore`: versions, their session and index) and runs its
  head (:class:`RestoreHead`): BlockReader over the node's volumes, with a structure-only
  scanner that tells the reader when the wanted objects have ended.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from pipevault.catalog import objects as object_rows
from pipevault.catalog import sessions as session_rows
from pipevault.catalog.objects import VersionInfo
from pipevault.catalog.rebuild import split_name
from pipevault.clock import SystemClock
from pipevault.config import Settings
from pipevault.errors import PipevaultError
from pipevault.format import ObjectEnded, ObjectStarted, Scanner, SessionHeader
from pipevault.mover.backup import StoreParams, StoreStage, _fail_stale_sessions
from pipevault.mover.catalogue import CatalogStage
from pipevault.mover.errors import NothingMatched
from pipevault.mover.remote_wire import Admit
from pipevault.mover.restore import BlockReader
from pipevault.mover.restore_plan import (
    Key,
    RestoreOptions,
    link_primaries,
    plan_with_sources,
    select_versions,
)
from pipevault.mover.site import Site
from pipevault.mover.tapes import try_lock
from pipevault.pipe import PipeResult, StageContext, StageSpec

MIN_SYNC = 1 << 20
KEY_CHECK_LEN = 16
DEFAULT_SYNC = 64 << 20  # a remote backup cut by the network resumes from its last durable point


@dataclass
class BackupService:
    """One remote backup or archive session on the server, from Extend_Pipe to its end.

    Holds the node's job lock (the same lock local jobs take) until :meth:`succeeded` or
    :meth:`failed`; exactly one of them must be called.
    """

    site: Site
    lock: int
    catalog_session: int
    params: StoreParams
    encrypt: bool
    deleted: list[tuple[str, str, str]]
    ended: bool = field(default=False)

    def stages(self) -> list[StageSpec]:
        """The server's stages after its network agent: admit, store, catalog."""
        p = self.params
        # As locally: store and catalog run as processes with interpreter locks of their own
        # when the site can be reopened there (from settings, on the real clock).
        if p.settings is not None and isinstance(self.site.clock, SystemClock):
            tail = [StageSpec("store", functools.partial(StoreStage, p), mode="process", allocates=True),
                    StageSpec("catalog", functools.partial(CatalogStage, p), mode="process")]
        else:
            tail = [StageSpec("store", functools.partial(StoreStage, p, self.site), allocates=True),
                    StageSpec("catalog", functools.partial(CatalogStage, p, self.site))]
        return [StageSpec("admit", functools.partial(Admit, self.encrypt)), *tail]

    def succeeded(self, result: PipeResult) -> dict[str, Any]:
        """Mark the deleted objects, end the session ``completed``; the client's DONE extras."""
        stored = {**result.results["store"][0], **result.results["catalog"][0]}
        deleted = self.deleted
        now = self.site.clock.now()
        try:
            with self.site.catalog.write() as conn:
                if not self.params.archive:
                    for fs, hl, ll in deleted:
                        object_rows.mark_deleted(conn, self.site.node, fs, hl, ll, when=now)
                session_rows.end_session(conn, self.catalog_session, "completed", ended=now)
        finally:
            self._release()
        return {"session": str(self.params.session_id), "objects": stored["objects"], "bytes": stored["bytes"],
                "stored": stored["stored"], "volumes": stored["volumes"], "deleted": len(deleted)}

    def failed(self) -> None:
        """End the session ``failed`` (its durable objects stay catalogued, nothing else)."""
        if self.ended:
            return
        try:
            with self.site.catalog.write() as conn:
                session_rows.end_session(conn, self.catalog_session, "failed", ended=self.site.clock.now())
        finally:
            self._release()

    def _release(self) -> None:
        if not self.ended:
            self.ended = True
            os.close(self.lock)
            self.site.close()


def begin_backup(settings: Settings, node: str, params: dict[str, Any],
                 deleted: list[tuple[str, str, str]]) -> BackupService | None:
    """Open the node's site, take its job lock and begin a catalog session for a remote
    backup described by the client's ``params`` (``session``, ``class``, ``archive``,
    ``description``, ``expire_days``, ``host``, ``sync_bytes``); ``deleted``: the objects
    the client's plan found deleted, marked at success. None when another backup of the
    node holds the lock.

    Raises:
        CatalogNotFound: no such class. PipevaultError: the catalog cannot be written.
        ValueError: a malformed parameter.
    """
    sid = uuid.UUID(str(params.get("session")))
    archive = bool(params.get("archive", False))
    class_name = params.get("class")
    description = str(params.get("description") or "")
    expire_days = params.get("expire_days")
    sync_bytes = max(MIN_SYNC, int(params.get("sync_bytes") or DEFAULT_SYNC))
    host = str(params.get("host") or "")[:255]
    key_check = bytes.fromhex(str(params.get("key_check") or ""))
    if len(key_check) not in (0, KEY_CHECK_LEN):
        raise ValueError(f"a key check has {KEY_CHECK_LEN} bytes, not {len(key_check)}")
    site = Site.open(settings, node=node)
    try:
        mc = site.management_class(str(class_name) if class_name else None)
        lock_path = site.home / "locks" / f"{node}.job"  # the lock local jobs of the node take
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = try_lock(lock_path)
        if lock is None:
            site.close()
            return None
    except BaseException:
        site.close()
        raise
    try:
        _fail_stale_sessions(site)
        kind = "archive" if archive else "backup"
        now = site.clock.now()
        expires = None
        if archive:
            days = int(expire_days) if expire_days is not None else mc.archive_days
            expires = now + days * 86_400.0
        with site.catalog.write() as conn:
            # The media session id is the client's (its chunk keys derive from it), so it must
            # be new: superblocks of two sessions with one id would mix in a restore.
            if any(s.media_session == str(sid) for s in session_rows.list_sessions(conn)):
                raise ValueError(f"session id {sid} is already in use")
            cat_session = session_rows.begin_session(conn, node, kind, started=now, media_session=str(sid))
    except BaseException:
        os.close(lock)
        site.close()
        raise
    store = StoreParams(
        site.settings, None, node, site.tape, sid, cat_session, mc.destination_pool, None,
        SessionHeader(node=node, job=kind, kind=kind, host=host or socket.gethostname(), software="pipevault"),
        mc.compress, mc.dedup, archive, description, expires, mc.name, stored=now,
        sync_bytes=sync_bytes, deleted=() if archive else tuple(deleted),  # noted on media, as locally
        key_check=key_check, background_sync=False)  # a resumed backup starts from the last checkpoint
    return BackupService(site, lock, cat_session, store, mc.encrypt, deleted)


def class_of(settings: Settings, node: str, class_name: str | None) -> dict[str, Any]:
    """What a client needs to encode for the class: name, compress, encrypt, dedup, archive days."""
    with Site.open(settings, node=node) as site:
        mc = site.management_class(class_name)
    return {"name": mc.name, "compress": mc.compress, "encrypt": mc.encrypt, "dedup": mc.dedup,
            "archive_days": mc.archive_days}


def active_versions_of(settings: Settings, node: str, filespaces: list[str]) -> list[VersionInfo]:
    """The node's active versions in ``filespaces`` (what an incremental plan compares with)."""
    out: list[VersionInfo] = []
    with Site.open(settings, node=node) as site, site.catalog.read() as conn:
        for fs in sorted(set(filespaces)):
            out.extend(object_rows.query_versions(conn, node, fs, state="active"))
    return out


@dataclass
class RestorePlan:
    """A restore planned on the server: what the client must recognise, where the reader goes.

    ``wanted``: every object to restore; ``index``: its object index in its session when the
    catalog recorded it; ``links``: hard links that receive a not-restored first link's data.
    """

    wanted: dict[Key, VersionInfo]
    index: dict[Key, int]
    links: dict[Key, VersionInfo]
    starts: list[tuple[str, list[tuple[int, Key]]]]
    sources: set[Key] = field(default_factory=set)  # read only for the chunks others repeat


def plan_restore(settings: Settings, node: str, opts: RestoreOptions) -> RestorePlan:
    """Choose the node's versions as a local restore would, and where they lie.

    Raises:
        NothingMatched: nothing of this node matches (also a version id of another node).
    """
    with Site.open(settings, node=node) as site:
        versions = select_versions(site, opts)
        if any(v.node != node for v in versions):
            raise NothingMatched(f"node {node} has no version {opts.version_id}")
        links = link_primaries(site, versions)
        plan, extra = plan_with_sources(site, versions)
    by_version = {v.version_id: k for k, v in plan.wanted.items()}
    return RestorePlan(plan.wanted, {k: i for (_sid, i), k in plan.by_index.items()},
                       {by_version[p.version_id]: link for p, link in links.items() if p.version_id in by_version},
                       plan.starts, {by_version[v.version_id] for v in extra if v.version_id in by_version})


class EndTracker:
    """Middle stage of a restore head: forwards the superblocks and reads their structure
    (no decoding, no key) to tell the reader, through ``done``, which wanted objects have
    ended, so it skips what lies between them. Damage stops the tracking, not the restore:
    the reader then reads on to the end of each volume and the client's scanner reports."""

    def __init__(self, plan: RestorePlan, done: set[Key]) -> None:
        self.plan, self.done = plan, done

    def run(self, ctx: StageContext) -> None:
        scanner: Scanner | None = Scanner(sessions={k[0] for k in self.plan.wanted}, decode=False)
        slots = {(k[0], i): k for k, i in self.plan.index.items()}
        while (buf := ctx.receive_buf()) is not None:
            if scanner is not None:
                try:
                    events = scanner.feed(buf.view)
                except PipevaultError:
                    scanner, events = None, []
                for ev in events:
                    if isinstance(ev, ObjectStarted):
                        slot = (ev.session_id, ev.header.object_index)
                        hl, ll = split_name(ev.header.name)
                        key = (ev.session_id, ev.header.filespace, hl, ll)
                        if slot not in slots and key in self.plan.wanted:
                            slots[slot] = key
                    elif isinstance(ev, ObjectEnded):
                        ended = slots.get((ev.session_id, ev.footer.object_index))
                        if ended is not None:
                            self.done.add(ended)
            ctx.send_buf(buf)


class RestoreHead:
    """The server's stages of a restore pipe, on the node's own site (closed by :meth:`close`)."""

    def __init__(self, settings: Settings, node: str, plan: RestorePlan) -> None:
        self.site = Site.open(settings, node=node)
        self.plan = plan

    def stages(self) -> list[StageSpec]:
        """read (BlockReader) -> track (EndTracker)."""
        done: set[Key] = set()
        return [StageSpec("read", functools.partial(BlockReader, self.site, self.plan.starts, done)),
                StageSpec("track", functools.partial(EndTracker, self.plan, done))]

    def close(self) -> None:
        """Release the site."""
        self.site.close()
