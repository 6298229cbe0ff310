"""Chunks for duplicate discard: stored once, referenced by many versions, counted.

A chunk is keyed by the keyed hash of its content (the format's content hash under the
deduplication key, so equal hashes mean equal data only for holders of that key). The
writer creates a chunk at its first reference and counts later ones; expiration releases
references, and a chunk whose count reaches zero is deleted from the catalog and reported
so that its space can be reclaimed on media.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog.schema import chunks, volumes

_KEYS = 2000


@dataclass(frozen=True)
class Chunk:
    """A stored chunk: where its data lies and how many versions reference it."""

    hash: bytes
    volume: str
    superblock: int
    offset: int
    length: int
    refcount: int


def _select() -> sa.Select[tuple[object, ...]]:
    return (sa.select(chunks.c.hash, volumes.c.name, chunks.c.superblock, chunks.c.offset,
                      chunks.c.length, chunks.c.refcount)
            .join(volumes, volumes.c.id == chunks.c.volume_id))


def _chunk(row: sa.Row[Any]) -> Chunk:
    d = row._asdict()
    return Chunk(bytes(d["hash"]), d["name"], d["superblock"], d["offset"], d["length"], d["refcount"])


def lookup(conn: Connection, hashes: Iterable[bytes]) -> dict[bytes, Chunk]:
    """The chunks already stored among ``hashes`` (a writer discards these duplicates)."""
    keys = list(set(hashes))
    found: dict[bytes, Chunk] = {}
    for start in range(0, len(keys), _KEYS):
        for row in conn.execute(_select().where(chunks.c.hash.in_(keys[start:start + _KEYS]))):
            c = _chunk(row)
            found[c.hash] = c
    return found


def release(conn: Connection, references: Mapping[bytes, int]) -> list[Chunk]:
    """Drop ``references[h]`` references to each chunk ``h``.

    Returns:
        The chunks no longer referenced, which this call deleted from the catalog: their
        data on media may be reclaimed.
    """
    if not references:
        return []
    # In hash order, as the writer adds references: an expiration and a backup that meet
    # on the same chunks then wait for each other in turn, never in a cycle (a deadlock).
    conn.execute(sa.update(chunks).where(chunks.c.hash == sa.bindparam("b_hash"))
                 .values(refcount=chunks.c.refcount - sa.bindparam("b_n")),
                 [{"b_hash": h, "b_n": n} for h, n in sorted(references.items())])
    dead: list[Chunk] = []
    keys = list(references)
    for start in range(0, len(keys), _KEYS):
        part = keys[start:start + _KEYS]
        dead.extend(_chunk(row) for row in conn.execute(
            _select().where(chunks.c.hash.in_(part), chunks.c.refcount <= 0)))
    if dead:
        conn.execute(sa.delete(chunks).where(chunks.c.hash == sa.bindparam("b_hash")),
                     [{"b_hash": c.hash} for c in dead])
    return dead


def total(conn: Connection) -> tuple[int, int, int]:
    """Chunks stored, references to them, and bytes stored once for them."""
    n, refs, nbytes = conn.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(chunks.c.refcount), 0),
        sa.func.coalesce(sa.func.sum(chunks.c.length), 0))).one()
    return int(n), int(refs), int(nbytes)
