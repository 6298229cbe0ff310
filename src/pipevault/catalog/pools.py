"""Storage pools as the catalog records them: name, media type, next pool, volume counts.

Pool behaviour (migration, reclamation, capacity decisions) belongs to ``pipevault.media``;
the catalog keeps the rows that survive a restart and that ``pipevault pool`` lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog.errors import CatalogConflict, CatalogNotFound
from pipevault.catalog.schema import pools, volumes


@dataclass(frozen=True)
class Pool:
    """A pool row. ``next_pool`` is where migration moves data (None: the last pool)."""

    id: int
    name: str
    media_type: str
    next_pool: str | None
    description: str
    created: float


@dataclass(frozen=True)
class PoolUsage:
    """A pool with its volume counts by state and byte totals."""

    pool: Pool
    volumes_by_state: dict[str, int]
    capacity: int
    used: int


def define_pool(conn: Connection, name: str, media_type: str, *, now: float,
                next_pool: str | None = None, description: str = "") -> Pool:
    """Create the pool ``name``.

    Raises:
        CatalogConflict: a pool of that name exists.
    """
    if conn.execute(sa.select(pools.c.id).where(pools.c.name == name)).first() is not None:
        raise CatalogConflict(f"pool {name!r} already exists")
    conn.execute(sa.insert(pools).values(name=name, media_type=media_type, next_pool=next_pool,
                                         description=description, created=now))
    return get_pool(conn, name)


def get_pool(conn: Connection, name: str) -> Pool:
    """The pool called ``name``.

    Raises:
        CatalogNotFound: no such pool.
    """
    row = conn.execute(sa.select(pools).where(pools.c.name == name)).first()
    if row is None:
        raise CatalogNotFound(f"no pool {name!r} in the catalog")
    return Pool(**row._asdict())


def list_pools(conn: Connection) -> list[PoolUsage]:
    """Every pool by name, with its volumes counted by state."""
    result: list[PoolUsage] = []
    by_state: dict[int, dict[str, int]] = {}
    totals: dict[int, tuple[int, int]] = {}
    for pool_id, state, n, cap, used in conn.execute(
            sa.select(volumes.c.pool_id, volumes.c.state, sa.func.count(),
                      sa.func.sum(volumes.c.capacity), sa.func.sum(volumes.c.used))
            .group_by(volumes.c.pool_id, volumes.c.state)):
        by_state.setdefault(pool_id, {})[state] = int(n)
        c, u = totals.get(pool_id, (0, 0))
        totals[pool_id] = (c + int(cap or 0), u + int(used or 0))
    for row in conn.execute(sa.select(pools).order_by(pools.c.name)):
        pool = Pool(**row._asdict())
        cap, used = totals.get(pool.id, (0, 0))
        result.append(PoolUsage(pool, by_state.get(pool.id, {}), cap, used))
    return result
