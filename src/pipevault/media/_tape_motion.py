"""How a tape drive's buffer and motor respond to the rate a writer feeds it.

The drive holds written data in its buffer and moves the tape at a speed it matches to the
feed rate, between ``min_speed`` and ``native_speed``. Fed at least ``min_speed`` it keeps
streaming. Fed slower, the buffer runs dry, the tape stops past the last block, and before
writing again the drive must back-hitch (stop, rewind a little, restart: seconds of dead time
and wear). A stopped drive restarts only when its buffer holds ``start_threshold_bytes`` or
when it is flushed. A full buffer blocks the writer, which caps the feed at native speed.

All time is read from and spent on the injected clock: with a ``ManualClock`` the model runs
instantly and deterministically; with the system clock the writer really waits.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipevault.clock import Clock
from pipevault.media._tape_profile import TapeProfile

_EPSILON = 1e-9


@dataclass
class MotionStatistics:
    """What the motor did: back-hitches, their cost, and how long writers were held up."""

    backhitches: int = 0
    backhitch_seconds: float = 0.0
    writer_wait_seconds: float = 0.0
    starts: int = 0
    bytes_streamed: int = 0


class TapeMotion:
    """The drive buffer and tape motor of one drive (used by ``TapeDrive`` only; not thread-safe)."""

    def __init__(self, profile: TapeProfile, clock: Clock) -> None:
        self._profile = profile
        self._clock = clock
        self.stats = MotionStatistics()
        self._level = 0.0
        self._moving = False
        self._speed = profile.native_speed
        self._updated = clock.monotonic()
        self._resume_at = self._updated
        self._needs_backhitch = False
        self._rate: float | None = None
        self._last_feed: float | None = None

    @property
    def speed(self) -> float:
        """The speed the tape moves (or last moved) at, bytes/s."""
        return self._speed

    @property
    def moving(self) -> bool:
        """The tape is moving (data is streaming from the buffer to the tape)."""
        self._advance(self._clock.monotonic())
        return self._moving

    def _matched_speed(self) -> float:
        rate = self._profile.native_speed if self._rate is None else self._rate
        return max(self._profile.min_speed, min(self._profile.native_speed, rate))

    def _advance(self, now: float) -> None:
        if self._moving:
            start = max(self._updated, self._resume_at)
            if now > start:
                drained = (now - start) * self._speed
                if drained + _EPSILON >= self._level:
                    # The buffer ran dry: the tape overshoots and stops; the next start back-hitches.
                    self.stats.bytes_streamed += round(self._level)
                    self._level = 0.0
                    self._moving = False
                    self._needs_backhitch = True
                else:
                    self.stats.bytes_streamed += round(drained)
                    self._level -= drained
        self._updated = max(self._updated, now)

    def _start(self, now: float) -> None:
        self._moving = True
        self._speed = self._matched_speed()
        self.stats.starts += 1
        if self._needs_backhitch:
            self.stats.backhitches += 1
            self.stats.backhitch_seconds += self._profile.backhitch_s
            self._resume_at = now + self._profile.backhitch_s
            self._needs_backhitch = False
        else:
            self._resume_at = now
        self._updated = now

    def _wait(self, seconds: float) -> float:
        if seconds > 0:
            self._clock.sleep(seconds)
            self.stats.writer_wait_seconds += seconds
        return self._clock.monotonic()

    def feed(self, nbytes: int) -> None:
        """Accept ``nbytes`` from the writer, blocking (on the clock) while the buffer is full."""
        now = self._clock.monotonic()
        if self._last_feed is not None:
            interval = now - self._last_feed
            instant = nbytes / interval if interval > 0 else self._profile.native_speed
            self._rate = instant if self._rate is None else 0.5 * self._rate + 0.5 * instant
        self._advance(now)
        capacity = self._profile.buffer_bytes
        if self._level + nbytes > capacity:
            if not self._moving:
                self._start(now)
            self._speed = self._matched_speed()
            excess = self._level + nbytes - capacity
            now = self._wait(max(0.0, self._resume_at - now) + excess / self._speed)
            self._advance(now)
        self._level += nbytes
        if self._moving:
            self._speed = self._matched_speed()
        elif self._level >= self._profile.start_threshold_bytes:
            self._start(now)
        self._last_feed = now

    def flush(self) -> None:
        """Write everything buffered to tape and stop there (a filemark, sync, or a move away).

        The tape stops past the data, so the next write starts with a back-hitch.
        """
        now = self._clock.monotonic()
        self._advance(now)
        if self._level > 0:
            if not self._moving:
                self._start(now)
            now = self._wait(max(0.0, self._resume_at - now) + self._level / self._speed)
            self.stats.bytes_streamed += round(self._level)
            self._level = 0.0
            self._needs_backhitch = True
        self._moving = False
        self._updated = now
        self._last_feed = None

    def positioned(self) -> None:
        """The drive has just located, rewound or loaded: the buffer is empty and the tape sits
        exactly before the next block, so the next start needs no back-hitch."""
        self._level = 0.0
        self._moving = False
        self._needs_backhitch = False
        self._last_feed = None
        self._rate = None
        self._updated = self._clock.monotonic()
