"""Choosing what a restore brings back, and planning where to read it.

Versions are chosen in the catalog (latest, a point in time, a version id, archives by
description, hard links' first links); the plan names each version's object in its media
session and the superblock it starts at on each volume, the volumes in an order that reads
every session forwards.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pipevault.catalog import locations as location_rows
from pipevault.catalog import nodes as node_rows
from pipevault.catalog import objects as object_rows
from pipevault.catalog import sessions as session_rows
from pipevault.catalog.objects import VersionInfo
from pipevault.format import (
    ObjectType,
)
from pipevault.media import SUPERBLOCK_SIZE
from pipevault.mover.errors import (
    NothingMatched,
)
from pipevault.mover.site import Site
from pipevault.mover.walk import to_text

Key = tuple[uuid.UUID, str, str, str]  # media session, file space, high-level name, low-level name


@dataclass
class RestoreOptions:
    """What to restore and where."""

    paths: list[str]
    to: str | None = None
    point_in_time: float | None = None
    version_id: int | None = None
    inactive: bool = False
    verify_only: bool = False
    archive: bool = False
    description: str | None = None


def rel_path(v: VersionInfo) -> str:
    """The version's path relative to its file space (``""`` for the file space itself)."""
    if not v.hl and not v.ll:
        return ""
    return (v.hl.strip("/") + "/" + v.ll).lstrip("/")


def select_versions(site: Site, opts: RestoreOptions) -> list[VersionInfo]:
    """The versions to restore, one per object, in name order.

    Raises:
        NothingMatched: nothing stored matches.
    """
    with site.catalog.read() as conn:
        if opts.version_id is not None:
            return [object_rows.get_version(conn, opts.version_id)]
        spaces = next((n.filespaces for n in node_rows.list_nodes(conn) if n.name == site.node), ())
        chosen: dict[tuple[str, str, str], VersionInfo] = {}
        which: dict[str, Any]  # the versions asked for, as query_versions takes them
        if opts.archive:
            which = {"state": "archive", "description": opts.description}
        elif opts.point_in_time is not None:
            which = {"point_in_time": opts.point_in_time}
        else:
            which = {"state": "backup" if opts.inactive else "active"}
        for path in opts.paths:
            ap = os.path.normpath(os.path.abspath(path))
            fs = max((f for f in spaces if ap == f or ap.startswith(f.rstrip("/") + "/")), key=len, default=None)
            if fs is None:
                raise NothingMatched(f"{ap} is in no file space of node {site.node}")
            want = to_text(ap[len(fs):].strip("/"))
            for hl, ll in name_patterns(want):
                found = object_rows.query_versions(conn, site.node, fs, hl, ll, **which)
                for v in found:  # newest first within an object
                    if want:
                        rel = rel_path(v)
                        if rel != want and not rel.startswith(want + "/"):
                            continue  # a pattern's wildcards (a name with "*" or "?") matched more
                    chosen.setdefault((v.filespace, v.hl, v.ll), v)
    if not chosen:
        raise NothingMatched("no stored version matches " + ", ".join(opts.paths))
    return [chosen[k] for k in sorted(chosen)]


def name_patterns(want: str) -> list[tuple[str, str]]:
    """(high-level, low-level) name patterns finding the object at ``want`` (catalog text,
    relative to its file space; "" for all of it) and every object under it.

    A file or a subtree is looked up by name, not by reading the whole file space: restoring
    one file of a million took as long as restoring the catalog's rows of all of them. Names
    that hold "*" or "?" act as wildcards here and find more: the caller checks each name.
    """
    if not want:
        return [("*", "*")]
    head, _, name = want.rpartition("/")
    return [("/" + head if head else "/", name), ("/" + want + "*", "*")]


@dataclass
class ReadPlan:
    wanted: dict[Key, VersionInfo]
    by_index: dict[tuple[uuid.UUID, int], Key]
    starts: list[tuple[str, list[tuple[int, Key]]]]  # per volume, in read order: (first block, object)
    stored: int = 0  # bytes of the wanted objects on media (what the progress bar counts: blocks read)
    ends: dict[tuple[str, Key], int] = field(default_factory=dict)  # see last_blocks


def plan_reads(site: Site, versions: list[VersionInfo]) -> ReadPlan:
    """Which object of which session each version is, and where each starts on which volume."""
    wanted: dict[Key, VersionInfo] = {}
    by_index: dict[tuple[uuid.UUID, int], Key] = {}
    key_of: dict[int, Key] = {}  # version id -> key (ints hash in C; keys hold a UUID)
    with site.catalog.read() as conn:
        media: dict[int, tuple[uuid.UUID, str] | None] = {}
        for v in versions:
            if v.session_id is None:
                continue
            if v.session_id not in media:
                text = session_rows.get_session(conn, v.session_id).media_session
                media[v.session_id] = (uuid.UUID(text), text) if text is not None else None
            ms = media[v.session_id]
            if ms is None:
                continue
            key = (ms[0], v.filespace, v.hl, v.ll)
            wanted[key] = v
            key_of[v.version_id] = key
            index = object_rows.object_index(v.attributes, ms[1])
            if index is not None:
                by_index[(ms[0], index)] = key
        pieces = location_rows.restore_plan(conn, key_of)
    per_volume: dict[str, list[tuple[int, Key]]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for p in pieces:  # in volume and superblock order: each list comes out sorted by block
        at = (p.volume, p.version_id)
        if at not in seen:  # the version's first piece on this volume
            seen.add(at)
            per_volume[p.volume].append((p.superblock, key_of[p.version_id]))
    order = _read_order(pieces, {vid: k[0] for vid, k in key_of.items()})
    starts = [(vol, per_volume[vol]) for vol in order]
    return ReadPlan(wanted, by_index, starts, sum(p.length for p in pieces), last_blocks(pieces, key_of))


# A superblock's payload, less what framing may take from it (its header, continuation
# records); what an object's own records add to its stored bytes (headers and footers: a
# fixed part, and a part per chunk, allowed for generously as 1/512 of the bytes).
_PAYLOAD = SUPERBLOCK_SIZE - (4 << 10)
_RECORDS = 8 << 10


def last_blocks(pieces: list[location_rows.Location], key_of: dict[int, Key]) -> dict[tuple[str, Key], int]:
    """For each object on each volume, the last block its data can reach there, when its session
    wrote it in one run of blocks: from its pieces' first blocks and stored lengths.

    The block reader waits there for the object to be done instead of reading on (a restore of
    a few files used to read on to the end of the volume). An
    estimate, never a limit: between a session's blocks lie other sessions' on a multiplexed
    tape, and an object on several volumes is catalogued with an even share on each; the
    reader reads on when the object is not done in time, and objects on several volumes get
    no end at all.
    """
    # Keyed by version id while computing (a Key holds a UUID, whose hash is Python code).
    last: dict[int, tuple[str, int] | None] = {}  # None: the version lies on several volumes
    for p in pieces:
        need = p.length + _RECORDS + p.length // 512
        end = p.superblock + -(-need // _PAYLOAD)  # it may start at the end of its first block
        if p.version_id not in last:
            last[p.version_id] = (p.volume, end)
        elif (had := last[p.version_id]) is not None:
            last[p.version_id] = None if had[0] != p.volume else (p.volume, max(had[1], end))
    return {(at[0], key_of[vid]): at[1] for vid, at in last.items() if at is not None}


def _read_order(pieces: list[location_rows.Location], session_of: dict[int, uuid.UUID]) -> list[str]:
    """The volumes in an order that reads each session's superblocks forwards.

    The scanner ignores a superblock older than one of its session already seen, and after
    migration or reclamation a session's data can lie on volumes whose names sort against
    the order it was written in. Within a session, (version id, part) is that order; volumes
    are otherwise taken by name (also when two sessions want opposite orders).
    """
    first: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
    for vid, part, volume, *_ in pieces:
        sid = session_of.get(vid)
        if sid is not None:
            k = (sid, volume)
            at = first.get(k)
            if at is None or (vid, part) < at:
                first[k] = (vid, part)
    chains: dict[uuid.UUID, list[tuple[tuple[int, int], str]]] = defaultdict(list)
    for (sid, vol), pos in first.items():
        chains[sid].append((pos, vol))
    before: dict[str, set[str]] = defaultdict(set)
    for chain in chains.values():
        chain.sort()
        for (_, a), (_, b) in itertools.pairwise(chain):
            if a != b:
                before[b].add(a)
    names = sorted({p.volume for p in pieces})
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(names):
        left = [v for v in names if v not in done]
        vol = next((v for v in left if before[v] <= done), left[0])
        order.append(vol)
        done.add(vol)
    return order


def link_primaries(site: Site, versions: list[VersionInfo]) -> dict[VersionInfo, VersionInfo]:
    """For hard links whose first link (the one holding the data) is not being restored: the
    first link's version, mapped to the link that should receive its data instead."""
    links = [v for v in versions if v.obj_type == ObjectType.HARDLINK]
    if not links:
        return {}
    selected = {(v.filespace, rel_path(v)) for v in versions}
    redirect: dict[VersionInfo, VersionInfo] = {}
    with site.catalog.read() as conn:
        for v in links:
            primary = json.loads(v.attributes).get("hardlink_of") or ""
            head, name = os.path.dirname(primary), os.path.basename(primary)
            hl, ll = ("/" + to_text(head) if head else "/"), to_text(name)
            if not primary or (v.filespace, (hl.strip("/") + "/" + ll).lstrip("/")) in selected:
                continue
            for p in object_rows.query_versions(conn, site.node, v.filespace, hl, ll, state="any"):
                if p.session_id == v.session_id:
                    redirect[p] = v
                    versions.append(p)
                    break
    return redirect


def dedup_sources(site: Site, plan: ReadPlan) -> list[VersionInfo]:
    """The versions whose chunks the planned ones repeat and that are not planned
    themselves, and theirs in turn: a restore reads them, for their data only (plan them
    with the rest).

    A backup stores a chunk once per session and writes later copies as references to it
    (discarded duplicates); the catalog stage records in a version's attributes which of
    the session's objects it refers to (``objects.REFS_FIELD``). Restoring a copy alone
    needs those. A source no longer catalogued (expired) is not found here: the restore of
    the copy then fails with a clear error, naming it.
    """
    marker = f'"{object_rows.REFS_FIELD}":['
    todo = [(key[0], v) for key, v in plan.wanted.items() if marker in v.attributes]
    if not todo:
        return []  # nothing planned repeats another object (no catalog work)
    have = set(plan.by_index)  # (media session, object index) of everything planned
    found: list[VersionInfo] = []
    with site.catalog.read() as conn:
        while todo:
            missing: dict[tuple[uuid.UUID, int | None], set[int]] = defaultdict(set)
            for media, v in todo:
                for ref in object_rows.repeated_objects(v.attributes):
                    if (media, ref) not in have:
                        missing[(media, v.session_id)].add(ref)
            todo = []
            for (media, sid), refs in missing.items():
                if sid is None:
                    continue
                for v in object_rows.session_versions(conn, sid, [f'%"object":{r}}}' for r in sorted(refs)]):
                    index = object_rows.object_index(v.attributes, str(media))
                    if index in refs and (media, index) not in have:
                        have.add((media, index))
                        found.append(v)
                        todo.append((media, v))  # what it repeats in turn is needed too
                have.update((media, r) for r in refs)  # asked once: not found now, not found later
    return found


def plan_with_sources(site: Site, versions: list[VersionInfo]) -> tuple[ReadPlan, list[VersionInfo]]:
    """The read plan of ``versions`` and of the versions whose chunks they repeat
    (:func:`dedup_sources`, planned too), and those sources: planned once more only when
    there are any (a whole tree has none to add)."""
    plan = plan_reads(site, versions)
    extra = dedup_sources(site, plan)
    return (plan_reads(site, versions + extra) if extra else plan), extra


def locations_of(site: Site, versions: list[VersionInfo]) -> list[location_rows.Location]:
    """The catalogued pieces of ``versions`` in the order a restore reads them."""
    with site.catalog.read() as conn:
        return location_rows.restore_plan(conn, [v.version_id for v in versions])

