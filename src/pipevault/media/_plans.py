"""Migration and reclamation plans: which data to move, computed from plain data.

A plan is a decision, not an action: the mover carries it out (read, write to the target,
update the catalog) and the catalog records the result. Plans order their moves by source
volume so each volume is mounted once, and within a volume by position, so tape reads stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipevault.media._pools import Occupancy, Pool, PoolVolume, VolumeState, occupancy
from pipevault.media.errors import PoolError, WriteOnceViolation

DAY = 86_400.0


@dataclass(frozen=True)
class StoredExtent:
    """One object's data on one volume, as the catalog lists it.

    Attributes:
        object_id: the catalog's id of the object version.
        volume: volume holding the data.
        position: where on the volume (superblock number), for ordering reads.
        size: bytes.
        stored_at: when it was written (Unix seconds).
        last_access: when it was last read or written (Unix seconds).
    """

    object_id: str
    volume: str
    position: int
    size: int
    stored_at: float
    last_access: float


@dataclass(frozen=True)
class MigrationPlan:
    """Extents to move from ``source`` to ``target``, and why.

    ``reason`` is "age", "occupancy", "age+occupancy" or "none". The occupancy figures are
    before and after the moves (the same for a write-once source, whose space is not freed).
    """

    source: str
    target: str
    reason: str
    moves: tuple[StoredExtent, ...]
    bytes: int
    used_pct_before: float
    used_pct_after: float


def plan_migration(pool: Pool, volumes: list[PoolVolume], extents: list[StoredExtent],
                   now: float) -> MigrationPlan:
    """Which data of ``pool`` should migrate to its next pool now.

    Data older than ``migrate_after_days`` always goes. If the pool's occupancy is at or
    above ``high_migration_pct``, the least recently used data goes too, until the pool would
    be at ``low_migration_pct`` (write-once pools cannot free space, so for them only age counts).

    Raises:
        PoolError: the pool has no next pool.
    """
    if pool.next_pool is None:
        raise PoolError(f"pool {pool.name} has no next pool to migrate to",
                        hint="Set the pool's next pool (`pipevault pool update --next`).")
    occ = occupancy(pool, volumes)
    names = {v.name for v in volumes if v.pool == pool.name and v.state != VolumeState.EXPIRED}
    mine = [e for e in extents if e.volume in names]
    chosen: dict[str, StoredExtent] = {}
    reasons = []
    if pool.migrate_after_days is not None:
        limit = now - pool.migrate_after_days * DAY
        old = [e for e in mine if e.stored_at <= limit]
        chosen.update((e.object_id, e) for e in old)
        if old:
            reasons.append("age")
    if not pool.write_once and occ.capacity and occ.used_pct >= pool.high_migration_pct:
        target_used = occ.capacity * pool.low_migration_pct / 100.0
        freed = sum(e.size for e in chosen.values())
        before = len(chosen)
        for e in sorted(mine, key=lambda e: (e.last_access, e.stored_at, e.object_id)):
            if occ.used - freed <= target_used:
                break
            if e.object_id not in chosen:
                chosen[e.object_id] = e
                freed += e.size
        if len(chosen) > before or freed:
            reasons.append("occupancy")
    moves = tuple(sorted(chosen.values(), key=lambda e: (e.volume, e.position, e.object_id)))
    moved = sum(e.size for e in moves)
    after = occ.used if pool.write_once else occ.used - moved
    return MigrationPlan(source=pool.name, target=pool.next_pool, reason="+".join(reasons) or "none",
                         moves=moves, bytes=moved, used_pct_before=occ.used_pct,
                         used_pct_after=_pct(after, occ))


def _pct(used: int, occ: Occupancy) -> float:
    return 100.0 * used / occ.capacity if occ.capacity else 0.0


@dataclass(frozen=True)
class ReclamationPlan:
    """Volumes to reclaim: move their live extents elsewhere, then return them to scratch.

    ``volumes`` are ordered cheapest first (least live data); ``moves`` holds the extents to
    copy, by volume and position; ``bytes`` their total; ``freed`` the bytes that come back.
    """

    pool: str
    volumes: tuple[PoolVolume, ...]
    moves: tuple[StoredExtent, ...]
    bytes: int
    freed: int


def plan_reclamation(pool: Pool, volumes: list[PoolVolume], extents: list[StoredExtent],
                     *, max_volumes: int | None = None) -> ReclamationPlan:
    """Full (or read-only) volumes of ``pool`` whose live data fell below ``reclaim_below_pct``.

    Raises:
        WriteOnceViolation: the pool is write-once; its space is only freed by expiring
            whole volumes.
    """
    if pool.write_once:
        raise WriteOnceViolation(f"pool {pool.name} is write-once: volumes are never reclaimed, "
                                 "only expired once all their data is dead", pool=pool.name)
    candidates = sorted(
        (v for v in volumes if v.pool == pool.name and v.state in (VolumeState.FULL, VolumeState.READ_ONLY)
         and v.used and v.live_pct < pool.reclaim_below_pct),
        key=lambda v: (v.live, v.name))
    if max_volumes is not None:
        candidates = candidates[:max_volumes]
    names = {v.name for v in candidates}
    moves = tuple(sorted((e for e in extents if e.volume in names),
                         key=lambda e: (e.volume, e.position, e.object_id)))
    return ReclamationPlan(pool=pool.name, volumes=tuple(candidates), moves=moves,
                           bytes=sum(e.size for e in moves), freed=sum(v.used for v in candidates))
