"""Deciding what a backup sends: the incremental comparison with the catalog.

A file is sent again when it is new, or when its size, modification time, change time
(which moves on chmod, chown, xattr changes and renames into place) or type differ from its
active version; everything else is unchanged and not read. Active versions under a walked
directory that the walk did not meet were deleted (or renamed away) on the node.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipevault.catalog import objects as object_rows
from pipevault.format import ObjectType
from pipevault.mover.site import Site
from pipevault.mover.walk import Entry, WalkReport, to_text, walk

Key = tuple[str, str, str]  # file space, high-level name, low-level name
LARGE = 256 << 10  # data bytes above which a file counts as large for the send order


@dataclass
class Plan:
    """What to send, what is unchanged, what was deleted."""

    send: list[Entry] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[Key] = field(default_factory=list)
    report: WalkReport = field(default_factory=WalkReport)

    @property
    def bytes_to_send(self) -> int:
        """Logical bytes of the regular files to send."""
        return sum(e.st.st_size for e in self.send if e.kind == ObjectType.FILE)


def send_order(entries: list[Entry]) -> list[Entry]:
    """``entries`` in the order a backup sends them: small entries spread between the large
    files in proportion to the large files' data, hard links last, each kind otherwise in
    walk order.

    A restore reads objects in the order they were sent, in two processes: decoding many
    small objects is the scanning process's work, writing large files mostly the writer's.
    A run of twenty thousand small files kept one process busy and the other waiting; spread
    out, the two overlap. Hard links go last because each names an entry that must be
    restored before it (its first link).
    """
    links = [e for e in entries if e.kind == ObjectType.HARDLINK]
    large = [e for e in entries if e.kind == ObjectType.FILE and _data_bytes(e) > LARGE]
    if not large:
        return [e for e in entries if e.kind != ObjectType.HARDLINK] + links
    chosen = {id(e) for e in large}
    small = [e for e in entries if e.kind != ObjectType.HARDLINK and id(e) not in chosen]
    total = sum(_data_bytes(e) for e in large)
    out: list[Entry] = []
    done = given = 0
    for e in large:
        # Before each large file, as many small entries as its share of the data calls for.
        due = len(small) * done // total
        out += small[given:due]
        given = due
        out.append(e)
        done += _data_bytes(e)
    return out + small[given:] + links


def _data_bytes(e: Entry) -> int:
    """Bytes of data the entry's file holds (a sparse file's holes are not read)."""
    st = e.st
    return min(st.st_size, st.st_blocks * 512) if e.kind == ObjectType.FILE else 0


def unchanged(attributes: str, e: Entry) -> bool:
    """Whether the entry matches its active version (its catalogued ``attributes``) closely
    enough not to send it again."""
    st = e.st
    # The attributes a backup wrote (mover.objmeta.attributes_text) start with these fields in
    # this order: when the text starts so, none of the fields compared differs. Otherwise (a
    # change, uid or gid in the way, attributes written by something else) the parse decides.
    head = (f'{{"type":{int(e.kind)},"mode":{st.st_mode},"uid":{st.st_uid},"gid":{st.st_gid},'
            f'"size":{st.st_size},"mtime_ns":{st.st_mtime_ns},"ctime_ns":{st.st_ctime_ns},')
    if e.hardlink_of is None and attributes.startswith(head) and '"hardlink_of":null' in attributes:
        return True  # a third of the cost of parsing: an unchanged tree's plan is this, per file
    return unchanged_parsed(attributes, e)


def unchanged_parsed(attributes: str, e: Entry) -> bool:
    """:func:`unchanged` by parsing the attributes (any key order)."""
    try:
        a = json.loads(attributes)
    except ValueError:
        return False
    st = e.st
    return bool(a.get("type") == e.kind and a.get("size") == st.st_size and a.get("mtime_ns") == st.st_mtime_ns
            and a.get("ctime_ns") == st.st_ctime_ns and a.get("mode") == st.st_mode
            and a.get("hardlink_of") == e.hardlink_of)


def filespace_of(root: str) -> str:
    """The file space a root argument belongs to: the directory itself, or a file's directory."""
    root = os.path.abspath(root)
    return root if os.path.isdir(root) and not os.path.islink(root) else os.path.dirname(root)


def active_attributes(site: Site, roots: list[str]) -> dict[Key, str]:
    """The attributes of the node's active versions in the file spaces of ``roots`` (what a
    plan compares with), by object name."""
    active: dict[Key, str] = {}
    with site.catalog.read() as conn:
        for fs in sorted({to_text(filespace_of(r)) for r in roots}):
            for hl, ll, attributes in object_rows.active_attributes(conn, site.node, fs):
                active[(fs, hl, ll)] = attributes
    return active


def make_plan(site: Site, roots: list[str], excludes: tuple[str, ...] = (), *, full: bool = False,
              archive: bool = False, one_file_system: bool = False) -> Plan:
    """Walk ``roots`` and compare with the catalog (``full`` or ``archive``: send everything)."""
    active = {} if archive else active_attributes(site, roots)
    return plan_against(active, roots, excludes, full=full, archive=archive, one_file_system=one_file_system)


def plan_against(active: Mapping[Key, str], roots: list[str], excludes: tuple[str, ...] = (), *,
                 full: bool = False, archive: bool = False, one_file_system: bool = False) -> Plan:
    """Walk ``roots`` and compare with ``active`` (the attributes of the node's active versions
    in their file spaces by name, from the local catalog or from a server's)."""
    plan = Plan()
    dir_roots: list[str] = []
    seen: set[Key] = set()
    spaces: dict[str, str] = {}  # file space -> its catalog text (a root's entries share one)
    for e in walk(roots, excludes, plan.report, one_file_system):
        fs = spaces.get(e.filespace)
        if fs is None:
            fs = spaces[e.filespace] = to_text(e.filespace)
        key = (fs, e.hl, e.ll)
        seen.add(key)
        if e.filespace == e.path:
            dir_roots.append(key[0])
        prev = active.get(key)
        if archive or full or prev is None or not unchanged(prev, e):
            plan.send.append(e)
        else:
            plan.unchanged += 1
    for key in active:
        if key in seen:
            continue
        fs, hl, _ll = key
        # Only what lies under a walked directory can be known deleted; a root that is a file
        # says nothing about its neighbours.
        if fs in dir_roots and not any(hl.startswith(x) for x in _unreadable_dirs(plan.report, fs)):
            plan.deleted.append(key)
    return plan


def _unreadable_dirs(report: WalkReport, fs: str) -> list[str]:
    """High-level names under which the walk could not look (nothing there counts as deleted)."""
    out = []
    for path, _why in report.errors:
        text = to_text(path)
        if text.startswith(fs.rstrip("/") + "/"):
            out.append("/" + text[len(fs.rstrip("/")) + 1:])
    return out
