"""Helpers of the catalog tests: a pool with volumes, a session writer, table snapshots."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from pipevault.catalog import pools, sessions, volumes
from pipevault.catalog.database import Catalog
from pipevault.catalog.schema import TABLES_IN_ORDER
from pipevault.catalog.writer import BatchWriter, NewVersion, Piece

START = 1_700_000_000.0


def make_pool(catalog: Catalog, name: str = "disk", volume_names: Iterable[str] = ("V1", "V2"),
              *, capacity: int = 1 << 30, write_once: bool = False) -> None:
    """A pool with labelled scratch volumes."""
    with catalog.write() as conn:
        pools.define_pool(conn, name, "file", now=catalog.clock.now())
        for v in volume_names:
            volumes.add_volume(conn, v, name, capacity, now=catalog.clock.now(), write_once=write_once)


def backup(catalog: Catalog, node: str, items: Iterable[NewVersion], *, batch_size: int = 3,
           kind: str = "backup", media_session: str | None = None) -> int:
    """Catalogue ``items`` as one completed session of ``node``; returns the session id."""
    with catalog.write() as conn:
        sid = sessions.begin_session(conn, node, kind, started=catalog.clock.now(),
                                     media_session=media_session)
    with BatchWriter(catalog, sid, batch_size=batch_size) as writer:
        writer.add_all(items)
    with catalog.write() as conn:
        sessions.end_session(conn, sid, "completed", ended=catalog.clock.now())
    return sid


def file(hl: str, ll: str, *, volume: str = "V1", superblock: int = 0, offset: int = 0,
         size: int = 100, **kw: Any) -> NewVersion:
    """A one-piece file version of ``size`` bytes."""
    return NewVersion("/home", hl, ll, size, (Piece(volume, superblock, offset, size),), **kw)


def snapshot(catalog: Catalog) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every catalog table, sorted, for equality checks."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with catalog.read() as conn:
        for table in TABLES_IN_ORDER:
            rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                    for r in conn.execute(sa.select(table))]
            out[table.name] = sorted(rows, key=repr)
    return out
