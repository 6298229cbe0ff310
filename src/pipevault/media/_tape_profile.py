"""Performance figures of tape drive generations, and how a drive spends its time.

Figures from vendor data (see ``research/formats.md``, fact 9): LTO-9 full height streams at
400 MB/s native and speed-matches down to about 177 MB/s before it back-hitches; loading takes
about 16 s, an average locate from the load point about 65 s, an average rewind about 62 s.

Positions along the tape are modelled as linear in the bytes written before them (a real
drive writes serpentine wraps, so this over-states long locates and under-states short ones;
it keeps the cost monotonic in distance, which is what schedulers need to learn from it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipevault.media._volume import PositionCost

MB = 1_000_000


@dataclass(frozen=True)
class TapeProfile:
    """The timing model of one drive generation.

    Attributes:
        name: generation ("LTO-9").
        native_speed: bytes/s the drive streams at, reading or writing.
        min_speed: lowest speed it matches; fed slower, its buffer runs dry and it back-hitches.
        buffer_bytes: the drive's data buffer; a writer blocks while it is full.
        start_threshold_bytes: how full the buffer must be before a stopped drive starts moving.
        backhitch_s: one stop, rewind-past and restart ("shoe-shine") of the tape.
        load_s: thread and calibrate a cartridge after it is put in the drive.
        unload_s: unthread and eject (after the rewind, which costs extra).
        full_wind_s: high-speed wind over the whole tape length; rewinds and locates scale by it.
        locate_overhead_s: fixed part of any high-speed locate (accelerate, find the wrap).
        robot_move_s: a library's picker moving a cartridge between a slot and a drive.
        early_warning_fraction: part of the capacity before the end that raises early warning.
        capacity: native capacity of a cartridge of this generation, bytes.
    """

    name: str
    native_speed: float
    min_speed: float
    buffer_bytes: int
    start_threshold_bytes: int
    backhitch_s: float
    load_s: float
    unload_s: float
    full_wind_s: float
    locate_overhead_s: float
    robot_move_s: float
    early_warning_fraction: float
    capacity: int

    def rewind_seconds(self, position_bytes: int, capacity: int) -> float:
        """Time to rewind to the load point from ``position_bytes`` along a tape of ``capacity``."""
        return self.full_wind_s * min(1.0, position_bytes / capacity) if capacity else 0.0

    def position_cost(self, capacity: int) -> PositionCost:
        """The locate cost model on a tape of ``capacity`` bytes: a high-speed wind after a fixed
        overhead, or reading through at native speed, whichever is quicker."""
        return PositionCost(fixed_s=self.locate_overhead_s, per_byte_s=self.full_wind_s / max(1, capacity),
                            stream_speed=self.native_speed)

    def locate_seconds(self, distance_bytes: int, capacity: int) -> float:
        """Time to move ``distance_bytes`` in either direction on a tape of ``capacity`` bytes."""
        return self.position_cost(capacity).seconds(distance_bytes)

    def scaled(self, time_factor: float) -> TapeProfile:
        """The same drive with time compressed by ``time_factor`` (0.001 = a thousand times faster).

        For real-time demonstrations and benchmarks that must finish in seconds: durations are
        multiplied by the factor and speeds divided by it, so every ratio between them holds.
        """
        return replace(
            self, name=f"{self.name} x{1 / time_factor:g}", native_speed=self.native_speed / time_factor,
            min_speed=self.min_speed / time_factor, backhitch_s=self.backhitch_s * time_factor,
            load_s=self.load_s * time_factor, unload_s=self.unload_s * time_factor,
            full_wind_s=self.full_wind_s * time_factor,
            locate_overhead_s=self.locate_overhead_s * time_factor,
            robot_move_s=self.robot_move_s * time_factor)


LTO9 = TapeProfile(name="LTO-9", native_speed=400 * MB, min_speed=177 * MB, buffer_bytes=1024 * 1024 * 1024,
                   start_threshold_bytes=256 * 1024 * 1024, backhitch_s=2.5, load_s=16.0, unload_s=17.0,
                   full_wind_s=124.0, locate_overhead_s=3.0, robot_move_s=8.0, early_warning_fraction=0.01,
                   capacity=18_000_000_000_000)
"""LTO-9 full height: 400 MB/s native, matching down to 177 MB/s, 18 TB native."""

LTO8 = TapeProfile(name="LTO-8", native_speed=360 * MB, min_speed=112 * MB, buffer_bytes=1024 * 1024 * 1024,
                   start_threshold_bytes=256 * 1024 * 1024, backhitch_s=2.5, load_s=15.0, unload_s=17.0,
                   full_wind_s=120.0, locate_overhead_s=3.0, robot_move_s=8.0, early_warning_fraction=0.01,
                   capacity=12_000_000_000_000)
"""LTO-8 full height: 360 MB/s native, matching down to 112 MB/s, 12 TB native."""
