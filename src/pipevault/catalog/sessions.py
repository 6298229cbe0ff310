"""Sessions (jobs): one backup or archive run of one node, with its times, status, totals."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog.errors import CatalogConflict, CatalogNotFound
from pipevault.catalog.nodes import ensure_node
from pipevault.catalog.schema import SESSION_STATES, nodes, sessions

SESSION_KINDS = ("backup", "archive")


@dataclass(frozen=True)
class Session:
    """A session row. ``media_session`` is the id its superblocks carry on media."""

    id: int
    node: str | None
    media_session: str | None
    kind: str
    status: str
    started: float
    ended: float | None
    objects: int
    bytes: int


def begin_session(conn: Connection, node: str, kind: str, *, started: float,
                  media_session: str | None = None) -> int:
    """Record a running session of ``node`` (registered if new); returns its id.

    Raises:
        CatalogConflict: unknown kind, or the media session id is already catalogued.
    """
    if kind not in SESSION_KINDS:
        raise CatalogConflict(f"session kind {kind!r} is not one of {', '.join(SESSION_KINDS)}")
    if media_session is not None and conn.execute(
            sa.select(sessions.c.id).where(sessions.c.media_session == media_session)).first():
        raise CatalogConflict(f"media session {media_session} is already in the catalog")
    nid = ensure_node(conn, node, now=started)
    return int(conn.execute(sa.insert(sessions).values(
        node_id=nid, media_session=media_session, kind=kind, status="running", started=started,
        objects=0, bytes=0).returning(sessions.c.id)).scalar_one())


def end_session(conn: Connection, session_id: int, status: str, *, ended: float | None) -> None:
    """Mark the session ended with ``status`` (``completed`` or ``failed``).

    Raises:
        CatalogNotFound: no such session.
        CatalogConflict: unknown status.
    """
    if status not in SESSION_STATES or status == "running":
        raise CatalogConflict(f"a session ends as completed or failed, not {status!r}")
    done = conn.execute(sa.update(sessions).where(sessions.c.id == session_id)
                        .values(status=status, ended=ended)).rowcount
    if not done:
        raise CatalogNotFound(f"no session {session_id} in the catalog")


def add_totals(conn: Connection, session_id: int, objects: int, nbytes: int) -> None:
    """Add catalogued objects and bytes to the session's totals."""
    conn.execute(sa.update(sessions).where(sessions.c.id == session_id).values(
        objects=sessions.c.objects + objects, bytes=sessions.c.bytes + nbytes))


_COLUMNS = (sessions.c.id, nodes.c.name.label("node"), sessions.c.media_session, sessions.c.kind,
            sessions.c.status, sessions.c.started, sessions.c.ended, sessions.c.objects,
            sessions.c.bytes)


def get_session(conn: Connection, session_id: int) -> Session:
    """The session with id ``session_id``.

    Raises:
        CatalogNotFound: no such session.
    """
    row = conn.execute(sa.select(*_COLUMNS).outerjoin(nodes, nodes.c.id == sessions.c.node_id)
                       .where(sessions.c.id == session_id)).first()
    if row is None:
        raise CatalogNotFound(f"no session {session_id} in the catalog")
    return Session(**row._asdict())


def list_sessions(conn: Connection, *, node: str | None = None) -> list[Session]:
    """Sessions in start order, optionally of one node only."""
    query = (sa.select(*_COLUMNS).outerjoin(nodes, nodes.c.id == sessions.c.node_id)
             .order_by(sessions.c.started, sessions.c.id))
    if node is not None:
        query = query.where(nodes.c.name == node)
    return [Session(**row._asdict()) for row in conn.execute(query)]
