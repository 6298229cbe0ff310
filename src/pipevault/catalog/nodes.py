"""Nodes (client machines) and the file spaces they own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from pipevault.catalog.errors import CatalogNotFound
from pipevault.catalog.schema import filespaces, nodes


@dataclass(frozen=True)
class Node:
    """A node and the names of its file spaces."""

    id: int
    name: str
    created: float
    filespaces: tuple[str, ...]


def ensure_node(conn: Connection, name: str, *, now: float) -> int:
    """The id of node ``name``, registering it (created ``now``) if it is new.

    A node's creation date is the earliest ``now`` it was ensured with, so a catalog
    rebuilt from media in any order of sessions dates it as the original did.
    """
    where = nodes.c.name == name
    found = conn.execute(sa.select(nodes.c.id).where(where)).scalar()
    if found is not None:
        conn.execute(sa.update(nodes).where(nodes.c.id == found, nodes.c.created > now).values(created=now))
        return int(found)
    return _insert_or_get(conn, nodes, {"name": name, "created": now}, [nodes.c.name], where)


def ensure_filespace(conn: Connection, node_id: int, name: str, *, now: float) -> int:
    """The id of file space ``name`` of the node, registering it if it is new (dated as nodes are)."""
    where = sa.and_(filespaces.c.node_id == node_id, filespaces.c.name == name)
    found = conn.execute(sa.select(filespaces.c.id).where(where)).scalar()
    if found is not None:
        conn.execute(sa.update(filespaces).where(filespaces.c.id == found, filespaces.c.created > now)
                     .values(created=now))
        return int(found)
    return _insert_or_get(conn, filespaces, {"node_id": node_id, "name": name, "created": now},
                          [filespaces.c.node_id, filespaces.c.name], where)


def _insert_or_get(conn: Connection, table: sa.Table, values: dict[str, object],
                   unique: list[sa.Column[Any]], where: sa.ColumnElement[bool]) -> int:
    """Insert the row unless a concurrent session just did; its id either way."""
    insert = (postgresql.insert(table) if conn.dialect.name == "postgresql"
              else sqlite.insert(table)).values(**values).on_conflict_do_nothing(index_elements=unique)
    conn.execute(insert)
    return int(conn.execute(sa.select(table.c.id).where(where)).scalar_one())


def node_id(conn: Connection, name: str) -> int:
    """The id of node ``name``.

    Raises:
        CatalogNotFound: no such node.
    """
    found = conn.execute(sa.select(nodes.c.id).where(nodes.c.name == name)).scalar()
    if found is None:
        raise CatalogNotFound(f"no node {name!r} in the catalog")
    return int(found)


def list_nodes(conn: Connection) -> list[Node]:
    """Every node by name with its file spaces."""
    spaces: dict[int, list[str]] = {}
    for nid, fs in conn.execute(sa.select(filespaces.c.node_id, filespaces.c.name)
                                .order_by(filespaces.c.name)):
        spaces.setdefault(int(nid), []).append(fs)
    return [Node(int(r.id), r.name, r.created, tuple(spaces.get(int(r.id), ())))
            for r in conn.execute(sa.select(nodes).order_by(nodes.c.name))]
