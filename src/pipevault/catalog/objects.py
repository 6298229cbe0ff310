"""Objects and their versions: queries by name pattern, state and point in time.

An object is named like a Storage Protect object: node, file space, high-level name (the
directory part, starting with ``/``) and low-level name (the file name). Patterns use ``*``
(any run of characters) and ``?`` (one character), matched against the whole name part.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog.errors import CatalogConflict, CatalogNotFound
from pipevault.catalog.rows import plain_rows
from pipevault.catalog.schema import filespaces, nodes, objects, versions

STATES = ("active", "inactive", "archive", "backup", "any")


class VersionInfo(NamedTuple):
    """One version of one object, with the object's full name.

    ``state`` is ``active``, ``inactive`` or ``archive``; ``deactivated`` is when a newer
    backup (or the deletion of the file) made it inactive; ``expires`` is an archive's own
    expiry date when it has one (otherwise its class decides). A named tuple: a restore
    makes one per file from the driver's row as it comes (``_make``), a tenth of what a
    frozen dataclass cost even without its ``__init__``.
    """

    version_id: int
    object_id: int
    node: str
    filespace: str
    hl: str
    ll: str
    obj_type: int
    state: str
    class_name: str
    stored: float
    deactivated: float | None
    expires: float | None
    size: int
    digest: bytes | None
    attributes: str
    description: str
    session_id: int | None

    @property
    def path(self) -> str:
        """The object's name as one path: file space, high-level and low-level name."""
        return self.filespace.rstrip("/") + self.hl.rstrip("/") + "/" + self.ll


_COLUMNS = (versions.c.id.label("version_id"), objects.c.id.label("object_id"),
            nodes.c.name.label("node"), filespaces.c.name.label("filespace"), objects.c.hl,
            objects.c.ll, objects.c.obj_type, versions.c.state, versions.c.class_name,
            versions.c.stored, versions.c.deactivated, versions.c.expires, versions.c.size,
            versions.c.digest, versions.c.attributes, versions.c.description, versions.c.session_id)


def _base(*columns: sa.ColumnElement[Any]) -> sa.Select[tuple[object, ...]]:
    """``columns`` (all of a VersionInfo's by default) of versions joined to their object,
    file space and node."""
    return (sa.select(*(columns or _COLUMNS))
            .join(objects, objects.c.id == versions.c.object_id)
            .join(filespaces, filespaces.c.id == objects.c.filespace_id)
            .join(nodes, nodes.c.id == filespaces.c.node_id))


def like_pattern(pattern: str) -> str:
    """A Storage Protect wildcard pattern (``*``, ``?``) as an SQL LIKE pattern (escape ``\\``)."""
    out = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _match(column: sa.ColumnElement[str], pattern: str) -> sa.ColumnElement[bool]:
    if "*" not in pattern and "?" not in pattern:
        return column == pattern
    return column.like(like_pattern(pattern), escape="\\")


def query_versions(conn: Connection, node: str, filespace: str, hl: str = "*", ll: str = "*", *,
                   state: str = "active", point_in_time: float | None = None,
                   description: str | None = None) -> list[VersionInfo]:
    """Versions of the objects whose names match, ordered by name then newest first.

    Args:
        hl, ll: patterns for the high- and low-level names.
        state: ``active``, ``inactive``, ``backup`` (both), ``archive`` or ``any``.
        point_in_time: if given, only the backup version that was active at that instant
            (stored at or before it, not deactivated until after it); ``state`` is ignored.
        description: archive description pattern (archives only).

    Raises:
        CatalogConflict: unknown state.
    """
    if state not in STATES:
        raise CatalogConflict(f"version state {state!r} is not one of {', '.join(STATES)}")
    query = _base().where(nodes.c.name == node, filespaces.c.name == filespace,
                          _match(objects.c.hl, hl), _match(objects.c.ll, ll))
    if point_in_time is not None:
        query = query.where(versions.c.state != "archive", versions.c.stored <= point_in_time,
                            sa.or_(versions.c.deactivated.is_(None),
                                   versions.c.deactivated > point_in_time))
    elif state == "backup":
        query = query.where(versions.c.state != "archive")
    elif state != "any":
        query = query.where(versions.c.state == state)
    if description is not None:
        query = query.where(versions.c.state == "archive", _match(versions.c.description, description))
    if state == "active" and point_in_time is None and description is None:
        # An object has one active version: the name index gives the order, no sort.
        query = query.order_by(objects.c.hl, objects.c.ll)
    else:
        query = query.order_by(objects.c.hl, objects.c.ll, versions.c.stored.desc(), versions.c.id.desc())
    # By position: the columns are in the fields' order; both drivers (sqlite3, psycopg 3) give
    # the digest as bytes.
    return list(map(VersionInfo._make, plain_rows(conn, query)))


_ACTIVE_ATTRIBUTES = (_base(objects.c.hl, objects.c.ll, versions.c.attributes)
                      .where(nodes.c.name == sa.bindparam("node"), filespaces.c.name == sa.bindparam("fs"),
                             versions.c.state == "active"))


def active_attributes(conn: Connection, node: str, filespace: str) -> list[tuple[str, str, str]]:
    """``(hl, ll, attributes)`` of every active backup version in a file space, in no order:
    what an incremental backup compares its walk with (three columns of a million rows, not
    seventeen)."""
    return plain_rows(conn, _ACTIVE_ATTRIBUTES, {"node": node, "fs": filespace})


def active_version(conn: Connection, node: str, filespace: str, hl: str, ll: str) -> VersionInfo | None:
    """The active backup version of one object, or None (never backed up, or deleted)."""
    found = query_versions(conn, node, filespace, hl, ll, state="active")
    return found[0] if found else None


def get_version(conn: Connection, version_id: int) -> VersionInfo:
    """The version with id ``version_id``.

    Raises:
        CatalogNotFound: no such version (it may have expired).
    """
    row = conn.execute(_base().where(versions.c.id == version_id)).first()
    if row is None:
        raise CatalogNotFound(f"no object version {version_id} in the catalog")
    return VersionInfo._make(row)


# The attributes' field naming the objects of a version's media session whose chunks it
# repeats (discarded duplicates); written with the version's place there by index_fields.
REFS_FIELD = "dedup_refs"


def index_fields(session: str, index: int, refs: tuple[int, ...] = ()) -> str:
    """The last fields of a version's attributes (JSON object text, from its closing brace):
    the objects whose chunks it repeats when there are any, its media session (a UUID's
    text, needing no escape) and its object index there. Restore planning reads the index
    from this tail and finds the objects a version repeats by it."""
    repeats = f'"{REFS_FIELD}":[{",".join(str(int(r)) for r in refs)}],' if refs else ""
    return f'{repeats}"session":"{session}","object":{int(index)}}}'


def object_index(attributes: str, session: str | None = None) -> int | None:
    """The version's object index in its media session, from its attributes: None when they
    do not record it or, given ``session`` (a media session's text), name another session."""
    # Read from the tail index_fields wrote (once per file of a restore plan), else parsed.
    at = attributes.rfind('"session":"', -80)  # (a negative start counts from the end)
    if at >= 0 and attributes[at + 47: at + 58] == '","object":' and attributes.endswith("}"):
        number = attributes[at + 58: -1]
        if number.isdigit():
            return int(number) if session is None or attributes[at + 11: at + 47] == session else None
    try:
        attrs = json.loads(attributes)
    except ValueError:
        return None
    value = attrs.get("object") if isinstance(attrs, dict) else None
    if not isinstance(value, int) or (session is not None and attrs.get("session") != session):
        return None
    return value


def repeated_objects(attributes: str) -> tuple[int, ...]:
    """The object indices of the version's media session whose chunks it repeats (``REFS_FIELD``)."""
    if f'"{REFS_FIELD}":[' not in attributes:
        return ()
    refs = json.loads(attributes).get(REFS_FIELD) or ()
    return tuple(int(r) for r in refs)


def session_versions(conn: Connection, session_id: int, attributes_like: list[str]) -> list[VersionInfo]:
    """The versions written by catalog session ``session_id`` whose attributes match one of
    the SQL LIKE patterns ``attributes_like`` (escape ``\\``), in any state: a restore finds
    the objects that the versions it restores share data with this way."""
    found: list[VersionInfo] = []
    for start in range(0, len(attributes_like), 200):  # bounded statements
        match = sa.or_(*(versions.c.attributes.like(p, escape="\\") for p in attributes_like[start:start + 200]))
        found += map(VersionInfo._make, conn.execute(_base().where(versions.c.session_id == session_id, match)))
    return found


def mark_deleted(conn: Connection, node: str, filespace: str, hl: str, ll: str, *, when: float) -> bool:
    """Record that the object was deleted on its node: its active version becomes inactive.

    From then on the policy's rules for deleted files apply (versions_deleted,
    retain_only_days). Returns whether there was an active version.
    """
    active = active_version(conn, node, filespace, hl, ll)
    if active is None:
        return False
    conn.execute(sa.update(versions).where(versions.c.id == active.version_id)
                 .values(state="inactive", deactivated=when))
    return True
