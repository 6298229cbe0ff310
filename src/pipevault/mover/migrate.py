"""Migration (data on to the next pool, by age or occupancy) and reclamation (volumes whose live
data fell below a threshold, compacted within their pool).

Both decide with :func:`pipevault.media.plan_migration` / :func:`pipevault.media.plan_reclamation`
over the catalog's pools, volumes and locations, and carry the decision out volume by volume
with :mod:`pipevault.mover.relocate`: copy whole superblocks in order, sync, repoint the
catalog in one transaction, free the source. Each source volume is a unit: a failure stops the
job with the volumes already done committed and the failing one untouched.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa

from pipevault.catalog import pools as pool_rows
from pipevault.catalog import volumes as volume_rows
from pipevault.catalog.errors import CatalogNotFound
from pipevault.catalog.schema import filespaces, locations, objects, pools, sessions, versions, volumes
from pipevault.media import Pool, PoolVolume, StoredExtent, VolumeState, plan_migration, plan_reclamation
from pipevault.media.errors import PoolError
from pipevault.mover.errors import MigrationRefused, ReclaimWriteOnce
from pipevault.mover.relocate import Extent, TargetWriter, VolumeMove, copy_extents
from pipevault.mover.site import Site

WRITE_ONCE_MEDIA = ("optical",)


@dataclass
class MoveResult:
    """What a migration or reclamation did.

    ``skipped`` names source volumes left alone and why (a backup was writing to them).
    """

    pool: str
    target_pool: str
    reason: str
    volumes: list[VolumeMove] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def bytes(self) -> int:
        """Bytes of superblocks copied."""
        return sum(v.bytes for v in self.volumes)

    @property
    def extents(self) -> int:
        """Catalogued pieces moved."""
        return sum(v.extents for v in self.volumes)

    @property
    def freed(self) -> list[str]:
        """Source volumes returned to scratch."""
        return [v.source for v in self.volumes if v.freed]


def _pool(site: Site, name: str) -> tuple[pool_rows.Pool, list[volume_rows.Volume], dict[str, int]]:
    try:
        with site.catalog.read() as conn:
            row = pool_rows.get_pool(conn, name)
            vols = volume_rows.list_volumes(conn, pool=name)
            live = dict(conn.execute(
                sa.select(volumes.c.name, sa.func.sum(locations.c.length))
                .join(locations, locations.c.volume_id == volumes.c.id)
                .join(pools, pools.c.id == volumes.c.pool_id)
                .where(pools.c.name == name).group_by(volumes.c.name)).all())
    except CatalogNotFound as exc:
        raise MigrationRefused(exc.message, pool=name) from exc
    return row, vols, {k: int(v or 0) for k, v in live.items()}


def _pool_volumes(vols: list[volume_rows.Volume], live: dict[str, int]) -> list[PoolVolume]:
    return [PoolVolume(name=v.name, pool=v.pool, media_type=v.media_type, capacity=v.capacity,
                       state=VolumeState(v.state), write_once=v.write_once, used=max(v.used, live.get(v.name, 0)),
                       live=live.get(v.name, 0), first_written=v.first_written, last_written=v.last_written)
            for v in vols]


def _extents(site: Site, pool: str) -> list[tuple[Extent, float]]:
    """Every catalogued piece on the pool's volumes, with what identifies its object on media,
    and when its version was stored."""
    query = (sa.select(locations.c.version_id, locations.c.part, volumes.c.name, locations.c.superblock,
                       locations.c.offset, locations.c.length, sessions.c.media_session, versions.c.attributes,
                       filespaces.c.name.label("filespace"), objects.c.hl, objects.c.ll, versions.c.stored)
             .join(volumes, volumes.c.id == locations.c.volume_id)
             .join(pools, pools.c.id == volumes.c.pool_id)
             .join(versions, versions.c.id == locations.c.version_id)
             .join(objects, objects.c.id == versions.c.object_id)
             .join(filespaces, filespaces.c.id == objects.c.filespace_id)
             .outerjoin(sessions, sessions.c.id == versions.c.session_id)
             .where(pools.c.name == pool))
    out: list[tuple[Extent, float]] = []
    with site.catalog.read() as conn:
        for r in conn.execute(query):
            if r.media_session is None:
                continue  # not written by a session on media: nothing to find it by
            sid = uuid.UUID(r.media_session)
            attrs = json.loads(r.attributes or "{}")
            index = int(attrs["object"]) if "object" in attrs and attrs.get("session") == str(sid) else None
            out.append((Extent(int(r.version_id), int(r.part), r.name, int(r.superblock), int(r.offset),
                               int(r.length), sid, index, r.filespace, r.hl, r.ll), float(r.stored)))
    return out


def _stored(extents: list[tuple[Extent, float]]) -> list[StoredExtent]:
    return [StoredExtent(object_id=f"{e.version_id}:{e.part}", volume=e.volume, position=e.superblock,
                         size=e.length, stored_at=t, last_access=t) for e, t in extents]


def _carry_out(site: Site, result: MoveResult, chosen: dict[str, list[Extent]], target_pool: str,
               exclude: set[str]) -> MoveResult:
    """Move each source volume's chosen extents to ``target_pool``, one volume at a time."""
    t0 = time.perf_counter()
    writer = TargetWriter(site, target_pool, exclude)
    try:
        # In write order (not by name: a scratch volume reused later gets a later name's data),
        # so each session's superblocks land on the targets in the order a restore reads them.
        for source in sorted(chosen, key=lambda v: (min(((e.version_id, e.part) for e in chosen[v]),
                                                        default=(0, 0)), v)):
            move = copy_extents(site, source, sorted(chosen[source], key=lambda e: e.superblock), writer)
            if move.busy:
                result.skipped.append((source, "a job is writing to it"))
            else:
                result.volumes.append(move)
    finally:
        writer.close()
        for name in writer.full:
            site.mark_volume(name, "full")
    result.elapsed_s = time.perf_counter() - t0
    return result


def migrate(site: Site, pool: str, *, age_days: float | None = None, high_pct: float | None = None,
            low_pct: float | None = None, now: float | None = None) -> MoveResult:
    """Move data of ``pool`` to its next pool: data stored ``age_days`` or more ago, and, when
    the pool is ``high_pct`` % used or more, the oldest data until it would be ``low_pct`` %.

    ``now`` defaults to the site's clock. Source volumes left empty return to scratch.

    Raises:
        MigrationRefused: no such pool, no next pool, neither age nor thresholds given, or
            thresholds out of order.
        MigrationFailed: a volume could not be copied (the ones before it are moved; it is not).
    """
    if age_days is None and high_pct is None:
        raise MigrationRefused(f"say what to migrate from pool {pool}: an age, or high and low thresholds",
                               hint="Give --age-days N, or --high PCT --low PCT.")
    row, vols, live = _pool(site, pool)
    if row.next_pool is None:
        raise MigrationRefused(f"pool {pool} has no next pool to migrate to", pool=pool)
    high = 100.0 if high_pct is None else high_pct
    low = high if low_pct is None else low_pct
    try:
        policy = Pool(name=pool, media_type=row.media_type, write_once=_write_once(row.media_type, vols),
                      next_pool=row.next_pool, high_migration_pct=high, low_migration_pct=low,
                      migrate_after_days=age_days)
    except PoolError as exc:
        raise MigrationRefused(exc.message, pool=pool) from exc
    extents = _extents(site, pool)
    plan = plan_migration(policy, _pool_volumes(vols, live), _stored(extents),
                          site.clock.now() if now is None else now)
    wanted = {m.object_id for m in plan.moves}
    chosen: dict[str, list[Extent]] = defaultdict(list)
    for e, _ in extents:
        if f"{e.version_id}:{e.part}" in wanted:
            chosen[e.volume].append(e)
    result = MoveResult(pool, row.next_pool, plan.reason)
    return _carry_out(site, result, chosen, row.next_pool, set())


def _write_once(media_type: str, vols: list[volume_rows.Volume]) -> bool:
    return media_type in WRITE_ONCE_MEDIA or any(v.write_once for v in vols)


def reclaim(site: Site, pool: str, threshold_pct: float) -> MoveResult:
    """Compact the full volumes of ``pool`` whose live data is below ``threshold_pct`` % of what
    was written on them: their live data goes to other volumes of the pool, they go to scratch.

    Raises:
        ReclaimWriteOnce: the pool is write-once.
        MigrationRefused: no such pool, or a threshold outside 0-100.
        MigrationFailed: a volume could not be copied (the ones before it are reclaimed).
    """
    row, vols, live = _pool(site, pool)
    if _write_once(row.media_type, vols):
        raise ReclaimWriteOnce(f"pool {pool} holds write-once ({row.media_type}) volumes: they are never "
                               "reclaimed, only expired once all their data is dead", pool=pool)
    try:
        policy = Pool(name=pool, media_type=row.media_type, next_pool=row.next_pool,
                      reclaim_below_pct=threshold_pct)
    except PoolError as exc:
        raise MigrationRefused(exc.message, pool=pool) from exc
    extents = _extents(site, pool)
    plan = plan_reclamation(policy, _pool_volumes(vols, live), _stored(extents))
    names = {v.name for v in plan.volumes}
    chosen: dict[str, list[Extent]] = {n: [] for n in names}
    for e, _ in extents:
        if e.volume in names:
            chosen[e.volume].append(e)
    result = MoveResult(pool, pool, "reclamation")
    return _carry_out(site, result, chosen, pool, names)


MEDIA_TYPES = ("disk", "tape", "optical")


def define_pool(site: Site, name: str, media_type: str | None, next_pool: str | None,
                description: str | None = None) -> pool_rows.Pool:
    """Create pool ``name`` or change an existing one's next pool and description.

    A new pool needs its media type; an existing pool keeps its own (its volumes have it).

    Raises:
        MigrationRefused: unknown media type, a media type that differs from the existing
            pool's, a next pool that does not exist or is the pool itself.
    """
    if media_type is not None and media_type not in MEDIA_TYPES:
        raise MigrationRefused(f"media type {media_type!r} is not one of {', '.join(MEDIA_TYPES)}")
    if next_pool == name:
        raise MigrationRefused(f"pool {name} cannot migrate to itself", pool=name)
    now = site.clock.now()
    with site.catalog.write() as conn:
        if next_pool is not None:
            try:
                pool_rows.get_pool(conn, next_pool)
            except CatalogNotFound as exc:
                raise MigrationRefused(f"next pool {next_pool} is not defined", pool=name,
                                       hint=f"Define it first: pipevault pool define {next_pool} "
                                            "--media-type tape") from exc
        try:
            row = pool_rows.get_pool(conn, name)
        except CatalogNotFound:
            if media_type is None:
                raise MigrationRefused(f"a new pool {name} needs its media type", pool=name,
                                       hint="Give --media-type disk, tape or optical.") from None
            return pool_rows.define_pool(conn, name, media_type, now=now, next_pool=next_pool,
                                         description=description or "")
        if media_type is not None and media_type != row.media_type:
            raise MigrationRefused(f"pool {name} holds {row.media_type} volumes; its media type cannot "
                                   f"become {media_type}", pool=name)
        values: dict[str, object] = {}
        if next_pool is not None:
            values["next_pool"] = next_pool
        if description is not None:
            values["description"] = description
        if values:
            conn.execute(sa.update(pools).where(pools.c.id == row.id).values(**values))
        return pool_rows.get_pool(conn, name)
