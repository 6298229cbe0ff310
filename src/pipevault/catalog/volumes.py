"""Volumes as the catalog records them: pool, media type, state, capacity, use, contents.

A volume's state follows Storage Protect: ``scratch`` (empty, may be taken by any pool
writer), ``filling`` (has data, accepts more), ``full``, ``read-only`` (set by an
administrator) and ``expired`` (a write-once volume whose data all expired: never written
again, only discarded whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog.errors import CatalogConflict, CatalogNotFound
from pipevault.catalog.pools import get_pool
from pipevault.catalog.schema import (
    VOLUME_STATES,
    chunks,
    filespaces,
    locations,
    nodes,
    objects,
    pools,
    versions,
    volumes,
)


@dataclass(frozen=True)
class Volume:
    """A volume row with its pool's name."""

    id: int
    name: str
    pool: str
    media_type: str
    state: str
    write_once: bool
    capacity: int
    used: int
    created: float
    first_written: float | None
    last_written: float | None


@dataclass(frozen=True)
class VolumeEntry:
    """One piece of one object version stored on a volume, as listed by :func:`contents`."""

    superblock: int
    offset: int
    length: int
    node: str
    filespace: str
    hl: str
    ll: str
    version_id: int
    state: str
    part: int


_VOLUME_COLUMNS = (volumes.c.id, volumes.c.name, pools.c.name.label("pool"), volumes.c.media_type,
                   volumes.c.state, volumes.c.write_once, volumes.c.capacity, volumes.c.used,
                   volumes.c.created, volumes.c.first_written, volumes.c.last_written)


def _select() -> sa.Select[tuple[object, ...]]:
    return sa.select(*_VOLUME_COLUMNS).join(pools, pools.c.id == volumes.c.pool_id)


def _volume(row: sa.Row[Any]) -> Volume:
    data = row._asdict()
    data["write_once"] = bool(data["write_once"])
    return Volume(**data)


def _check_state(state: str) -> None:
    if state not in VOLUME_STATES:
        raise CatalogConflict(f"volume state {state!r} is not one of {', '.join(VOLUME_STATES)}")


def add_volume(conn: Connection, name: str, pool: str, capacity: int, *, now: float,
               media_type: str | None = None, state: str = "scratch",
               write_once: bool = False) -> Volume:
    """Record a labelled volume in ``pool`` (media type defaults to the pool's).

    Raises:
        CatalogNotFound: no such pool.
        CatalogConflict: a volume of that name exists, or the state is unknown.
    """
    _check_state(state)
    owner = get_pool(conn, pool)
    if conn.execute(sa.select(volumes.c.id).where(volumes.c.name == name)).first() is not None:
        raise CatalogConflict(f"volume {name!r} already exists")
    conn.execute(sa.insert(volumes).values(
        name=name, pool_id=owner.id, media_type=media_type or owner.media_type, state=state,
        write_once=write_once, capacity=capacity, used=0, created=now))
    return get_volume(conn, name)


def get_volume(conn: Connection, name: str) -> Volume:
    """The volume called ``name``.

    Raises:
        CatalogNotFound: no such volume.
    """
    row = conn.execute(_select().where(volumes.c.name == name)).first()
    if row is None:
        raise CatalogNotFound(f"no volume {name!r} in the catalog")
    return _volume(row)


def list_volumes(conn: Connection, *, pool: str | None = None,
                 state: str | None = None) -> list[Volume]:
    """Volumes by name, optionally only those of one pool and/or in one state."""
    query = _select().order_by(volumes.c.name)
    if pool is not None:
        query = query.where(pools.c.name == pool)
    if state is not None:
        query = query.where(volumes.c.state == state)
    return [_volume(row) for row in conn.execute(query)]


def set_state(conn: Connection, name: str, state: str) -> None:
    """Change a volume's state (``scratch`` also forgets its use and dates).

    Raises:
        CatalogNotFound: no such volume.
        CatalogConflict: unknown state, or a volume holding data cannot become scratch.
    """
    _check_state(state)
    vol = get_volume(conn, name)
    values: dict[str, object] = {"state": state}
    if state == "scratch":
        holds = sa.select(sa.or_(sa.exists().where(locations.c.volume_id == vol.id),
                                 sa.exists().where(chunks.c.volume_id == vol.id)))
        if conn.execute(holds).scalar():
            raise CatalogConflict(f"volume {name!r} still holds catalogued data",
                                  hint="Expire or move its data before returning it to scratch.")
        values.update(used=0, first_written=None, last_written=None)
    conn.execute(sa.update(volumes).where(volumes.c.id == vol.id).values(**values))


def volume_ids(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """The ids of the named volumes.

    Raises:
        CatalogNotFound: one of them is not in the catalog.
    """
    wanted = set(names)
    found = {name: int(vid) for vid, name in conn.execute(
        sa.select(volumes.c.id, volumes.c.name).where(volumes.c.name.in_(wanted)))}
    missing = wanted - found.keys()
    if missing:
        raise CatalogNotFound(f"volumes not in the catalog: {', '.join(sorted(missing))}",
                              hint="Label the volumes into a pool before writing to them.")
    return found


def contents(conn: Connection, name: str) -> list[VolumeEntry]:
    """Every catalogued piece on the volume, in the order it lies (superblock, offset).

    Raises:
        CatalogNotFound: no such volume.
    """
    vol = get_volume(conn, name)
    query = (sa.select(locations.c.superblock, locations.c.offset, locations.c.length,
                       nodes.c.name, filespaces.c.name, objects.c.hl, objects.c.ll,
                       versions.c.id, versions.c.state, locations.c.part)
             .join(versions, versions.c.id == locations.c.version_id)
             .join(objects, objects.c.id == versions.c.object_id)
             .join(filespaces, filespaces.c.id == objects.c.filespace_id)
             .join(nodes, nodes.c.id == filespaces.c.node_id)
             .where(locations.c.volume_id == vol.id)
             .order_by(locations.c.superblock, locations.c.offset, locations.c.version_id,
                       locations.c.part))
    return [VolumeEntry(sb, off, length, node, fs, hl, ll, vid, state, part)
            for sb, off, length, node, fs, hl, ll, vid, state, part in conn.execute(query)]
