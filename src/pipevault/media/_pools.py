"""Storage pools and their volumes as plain data, and the pure rules that change them.

Nothing here does I/O: the catalog persists :class:`Pool` and :class:`PoolVolume` field by
field (every field is a str, int, float, bool or None), and services call these functions to
decide which volume to write, how a write or an expiry changes a volume, and when a volume's
state may change. Each function returns a new value and leaves its arguments alone.

Volume states (the catalog's ``VOLUME_STATES``)::

    scratch --first write--> filling --no room left--> full
       ^                       |  ^                      |
       |     all data dead     |  |  set writable        |  all data dead
       +----(rewritable)-------+--+-- read-only <--------+------> expired (write-once: terminal)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from pipevault.media.errors import PoolError, VolumeFull, WriteOnceViolation


class VolumeState(StrEnum):
    """Where a volume is in its life; the values are what the catalog stores."""

    SCRATCH = "scratch"
    FILLING = "filling"
    FULL = "full"
    READ_ONLY = "read-only"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Pool:
    """A storage pool: volumes of one media type, where their data goes next, and when.

    Attributes:
        name: pool name.
        media_type: "disk", "tape" or "optical"; every volume of the pool has it.
        write_once: the pool's media are write-once (no reclamation, no return to scratch).
        next_pool: where migration moves data (None: the last pool in the hierarchy).
        high_migration_pct: occupancy (% of capacity used) that starts migration.
        low_migration_pct: occupancy migration brings the pool down to.
        migrate_after_days: data stored longer than this migrates regardless of occupancy
            (None: only occupancy triggers migration).
        reclaim_below_pct: a full volume whose live data is below this % of its used space is
            reclaimed (its live data moved, the volume returned to scratch).
    """

    name: str
    media_type: str
    write_once: bool = False
    next_pool: str | None = None
    high_migration_pct: float = 90.0
    low_migration_pct: float = 70.0
    migrate_after_days: float | None = None
    reclaim_below_pct: float = 40.0
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise PoolError("a pool needs a name")
        if not 0 <= self.low_migration_pct <= self.high_migration_pct <= 100:
            raise PoolError(f"pool {self.name}: need 0 <= low ({self.low_migration_pct}) <= "
                            f"high ({self.high_migration_pct}) <= 100 migration thresholds")
        if not 0 <= self.reclaim_below_pct <= 100:
            raise PoolError(f"pool {self.name}: reclaim threshold must be 0-100%")
        if self.migrate_after_days is not None and self.migrate_after_days < 0:
            raise PoolError(f"pool {self.name}: migrate_after_days cannot be negative")
        if self.next_pool == self.name:
            raise PoolError(f"pool {self.name} cannot migrate to itself")


@dataclass(frozen=True)
class PoolVolume:
    """A volume as its pool accounts for it (bytes, state, dates as Unix seconds).

    ``used`` counts every byte written (never decreases except by returning to scratch);
    ``live`` the bytes still referenced by unexpired data.
    """

    name: str
    pool: str
    media_type: str
    capacity: int
    state: VolumeState = VolumeState.SCRATCH
    write_once: bool = False
    used: int = 0
    live: int = 0
    first_written: float | None = None
    last_written: float | None = None

    @property
    def free(self) -> int:
        """Bytes that can still be written (0 unless scratch or filling)."""
        if self.state not in (VolumeState.SCRATCH, VolumeState.FILLING):
            return 0
        return max(0, self.capacity - self.used)

    @property
    def live_pct(self) -> float:
        """Live bytes as a percentage of used bytes (100 for an empty volume)."""
        return 100.0 * self.live / self.used if self.used else 100.0


def new_volume(pool: Pool, name: str, capacity: int) -> PoolVolume:
    """A scratch volume of ``pool`` holding ``capacity`` bytes."""
    if capacity <= 0:
        raise PoolError(f"volume {name} needs a positive capacity")
    return PoolVolume(name=name, pool=pool.name, media_type=pool.media_type, capacity=capacity,
                      write_once=pool.write_once)


_ALLOWED: dict[VolumeState, frozenset[VolumeState]] = {
    VolumeState.SCRATCH: frozenset({VolumeState.FILLING, VolumeState.READ_ONLY}),
    VolumeState.FILLING: frozenset({VolumeState.FULL, VolumeState.READ_ONLY, VolumeState.SCRATCH,
                                    VolumeState.EXPIRED}),
    VolumeState.FULL: frozenset({VolumeState.READ_ONLY, VolumeState.SCRATCH, VolumeState.EXPIRED}),
    VolumeState.READ_ONLY: frozenset({VolumeState.FILLING, VolumeState.FULL, VolumeState.SCRATCH,
                                      VolumeState.EXPIRED}),
    VolumeState.EXPIRED: frozenset({VolumeState.SCRATCH}),
}


def transition(vol: PoolVolume, to: VolumeState) -> PoolVolume:
    """``vol`` moved to state ``to``, if the state machine allows it.

    Returning to scratch empties the volume's accounting (it will be overwritten); expiring
    keeps it (the medium still holds the old bytes until discarded).

    Raises:
        WriteOnceViolation: a write-once volume would return to scratch (its space cannot be reused).
        PoolError: the change is not allowed from the current state, or live data remains
            on a volume going to scratch or expired, or a read-only volume set back to
            filling has no room.
    """
    if to == vol.state:
        return vol
    if to not in _ALLOWED[vol.state]:
        raise PoolError(f"volume {vol.name} cannot go from {vol.state} to {to}", volume=vol.name)
    if to in (VolumeState.SCRATCH, VolumeState.EXPIRED) and vol.live:
        raise PoolError(f"volume {vol.name} still holds {vol.live} live bytes; it cannot become {to}",
                        volume=vol.name)
    if to == VolumeState.SCRATCH:
        if vol.write_once:
            raise WriteOnceViolation(f"write-once volume {vol.name} cannot return to scratch; expire it",
                                     volume=vol.name)
        return replace(vol, state=to, used=0, live=0, first_written=None, last_written=None)
    if to == VolumeState.FILLING and vol.used >= vol.capacity:
        raise PoolError(f"volume {vol.name} has no room left to be filling", volume=vol.name)
    return replace(vol, state=to)


def record_write(vol: PoolVolume, nbytes: int, now: float) -> PoolVolume:
    """``vol`` after ``nbytes`` of new data were written to it at time ``now``.

    A scratch volume becomes filling; one with no room left becomes full.

    Raises:
        VolumeFull: more than ``vol.free`` bytes.
        PoolError: the volume is full, read-only or expired, or ``nbytes`` is negative.
    """
    if nbytes < 0:
        raise PoolError(f"cannot record a write of {nbytes} bytes")
    if vol.state not in (VolumeState.SCRATCH, VolumeState.FILLING):
        raise PoolError(f"volume {vol.name} is {vol.state} and takes no writes", volume=vol.name)
    if nbytes > vol.free:
        raise VolumeFull(f"volume {vol.name} has {vol.free} bytes free, {nbytes} were written",
                         volume=vol.name)
    used = vol.used + nbytes
    return replace(vol, used=used, live=vol.live + nbytes,
                   state=VolumeState.FULL if used >= vol.capacity else VolumeState.FILLING,
                   first_written=vol.first_written if vol.first_written is not None else now,
                   last_written=now)


def mark_full(vol: PoolVolume) -> PoolVolume:
    """``vol`` closed for writing before its capacity (end of medium came early, or early warning)."""
    return transition(vol, VolumeState.FULL) if vol.state == VolumeState.FILLING else vol


def record_release(vol: PoolVolume, nbytes: int) -> PoolVolume:
    """``vol`` after ``nbytes`` of its data expired or moved away (live drops; used does not)."""
    if nbytes < 0 or nbytes > vol.live:
        raise PoolError(f"volume {vol.name} has {vol.live} live bytes; cannot release {nbytes}",
                        volume=vol.name)
    return replace(vol, live=vol.live - nbytes)


def settle(vol: PoolVolume) -> PoolVolume:
    """Where a volume whose live data is gone ends up: rewritable back to scratch, a full
    write-once volume expired; anything else (live data left, or still filling) unchanged."""
    if vol.live or not vol.used or vol.state == VolumeState.EXPIRED:
        return vol
    if not vol.write_once:
        return transition(vol, VolumeState.SCRATCH)
    if vol.state in (VolumeState.FULL, VolumeState.READ_ONLY):
        return transition(vol, VolumeState.EXPIRED)
    return vol


def choose_volume(pool: Pool, volumes: list[PoolVolume], nbytes: int, *, may_span: bool = True) -> PoolVolume:
    """The volume of ``pool`` a write of ``nbytes`` should go to.

    Preference: a filling volume with room for all of it (the fullest first, so volumes fill
    up and free ones stay free); else a scratch volume (by name); else, if the writer can
    continue on another volume (``may_span``), the filling volume with the most room.

    Raises:
        VolumeFull: no volume of the pool can take the write.
    """
    mine = [v for v in volumes if v.pool == pool.name]
    filling = [v for v in mine if v.state == VolumeState.FILLING and v.free > 0]
    fits = sorted((v for v in filling if v.free >= nbytes), key=lambda v: (v.free, v.name))
    if fits:
        return fits[0]
    scratch = sorted((v for v in mine if v.state == VolumeState.SCRATCH), key=lambda v: v.name)
    if scratch:
        return scratch[0]
    if may_span and filling:
        return max(filling, key=lambda v: (v.free, v.name))
    raise VolumeFull(f"pool {pool.name} has no volume with room for {nbytes} bytes",
                     hint="Add scratch volumes to the pool or migrate data to the next pool.",
                     pool=pool.name)


@dataclass(frozen=True)
class Occupancy:
    """Capacity accounting of a pool's volumes (expired volumes do not count)."""

    capacity: int
    used: int
    live: int
    free: int
    by_state: dict[str, int]

    @property
    def used_pct(self) -> float:
        """Used bytes as a percentage of capacity."""
        return 100.0 * self.used / self.capacity if self.capacity else 0.0


def occupancy(pool: Pool, volumes: list[PoolVolume]) -> Occupancy:
    """Totals over the volumes of ``pool``."""
    mine = [v for v in volumes if v.pool == pool.name]
    counted = [v for v in mine if v.state != VolumeState.EXPIRED]
    by_state = {s.value: sum(1 for v in mine if v.state == s) for s in VolumeState}
    return Occupancy(capacity=sum(v.capacity for v in counted), used=sum(v.used for v in counted),
                     live=sum(v.live for v in counted), free=sum(v.free for v in counted), by_state=by_state)
