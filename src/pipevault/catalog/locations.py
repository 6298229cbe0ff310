"""Where object versions' data lies: pieces on volumes, and restore plans.

A version's data is a sequence of pieces (``part`` 0, 1, ...), one per volume it lies on: the
object's bytes ``offset .. offset + length`` are on that volume from the superblock at block
number ``superblock`` on (reading that session's superblocks from there); an object written
across the end of a volume continues on the next. A restore reads volumes one at a time and
each volume front to back, so :func:`restore_plan` orders pieces by volume and position,
never by object.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog.rows import plain_rows
from pipevault.catalog.schema import locations, volumes

# Version ids bound per statement.
_IDS = 5000


class Location(NamedTuple):
    """One piece of a version's data: its bytes ``offset .. offset + length`` lie on
    ``volume`` from block ``superblock`` on; ``chunk_hash`` is set for a duplicate-discard
    chunk. (A named tuple: a restore plan makes one per file, in a fifth of a frozen
    dataclass's time.)"""

    version_id: int
    part: int
    volume: str
    superblock: int
    offset: int
    length: int
    chunk_hash: bytes | None


_COLUMNS = (locations.c.version_id, locations.c.part, volumes.c.name, locations.c.superblock,
            locations.c.offset, locations.c.length, locations.c.chunk_hash)


_SELECT = sa.select(*_COLUMNS).join(volumes, volumes.c.id == locations.c.volume_id)
# One statement with an expanding parameter, compiled once: a literal IN list compiles a bound
# parameter per id (a third of the cost at 20,000 versions).
_LISTED = _SELECT.where(locations.c.version_id.in_(sa.bindparam("ids", expanding=True)))
_RANGE = _SELECT.where(locations.c.version_id.between(sa.bindparam("lo"), sa.bindparam("hi")))
# A range scan is taken when the ids asked for are at least one in _DENSE of the range.
_DENSE = 2


def pieces(conn: Connection, version_id: int) -> list[Location]:
    """The pieces of one version in data order (part 0 first)."""
    query = _SELECT.where(locations.c.version_id == version_id).order_by(locations.c.part)
    return list(map(Location._make, conn.execute(query)))


def restore_plan(conn: Connection, version_ids: Iterable[int]) -> list[Location]:
    """Every piece of the given versions in the order a restore should read them.

    Ordered by volume name, then superblock and offset on it; the caller reassembles each
    version from its pieces by ``part``.
    """
    ids = sorted(set(version_ids))
    if not ids:
        return []
    found: list[Location]
    if ids[-1] - ids[0] < _DENSE * len(ids):
        # Mostly consecutive ids (a restore of a whole tree: its versions were catalogued in
        # batches): one range scan of the (version, part) key, the few others in the range
        # dropped here, instead of binding every id (20,000 of them took half the plan).
        wanted = set(ids)
        rows = plain_rows(conn, _RANGE, {"lo": ids[0], "hi": ids[-1]})
        # By position, from the driver's rows as they come: thousands per restore. Both
        # drivers (sqlite3, psycopg 3) give the hash as bytes.
        found = [Location._make(row) for row in rows if row[0] in wanted]
    else:
        found = []
        for start in range(0, len(ids), _IDS):
            found.extend(map(Location._make, conn.execute(_LISTED, {"ids": ids[start:start + _IDS]}).all()))
    found.sort(key=_POSITION)
    return found


_POSITION = operator.itemgetter(2, 3, 4, 0, 1)  # volume, superblock, offset, version, part (in C)


def volumes_of(conn: Connection, version_ids: Iterable[int]) -> list[str]:
    """The names of the volumes holding any piece of the given versions (mounts needed)."""
    return sorted({p.volume for p in restore_plan(conn, version_ids)})
