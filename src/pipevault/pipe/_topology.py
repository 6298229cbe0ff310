"""The shape of a pipe: its stages, their instances and which of them allocate buffers.

From the shape follow the rules of seed 002: how many allocators share the pool (each may
hold at most ``max_buffers // n_allocators`` buffers), which queues stamp sequence numbers
(the input of a parallel stage: the sequencer) and which restore order (the output of a
parallel stage: the resequencer), and how far a parallel stage may run ahead (its window).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pipevault.pipe.errors import PipeSpecError

MIN_BUFFER = 64 << 10
MAX_BUFFER = 16 << 20


@dataclass(frozen=True)
class StageShape:
    """One stage as the pool sees it: name, instance count, whether it allocates, how it runs."""

    name: str
    instances: int = 1
    allocates: bool = False
    mode: str = "thread"


@dataclass(frozen=True)
class Topology:
    """A pipe's stages and buffer geometry, with the derived fairness and ordering rules."""

    stages: tuple[StageShape, ...]
    buffer_size: int
    max_buffers: int

    def __post_init__(self) -> None:
        if len(self.stages) < 2:
            raise PipeSpecError("a pipe needs at least a first stage and a tail stage")
        if not MIN_BUFFER <= self.buffer_size <= MAX_BUFFER or self.buffer_size % 4096:
            raise PipeSpecError(f"buffer_size {self.buffer_size} must be a multiple of 4 KiB "
                                f"between {MIN_BUFFER} and {MAX_BUFFER} bytes")
        if self.stages[0].instances != 1:
            raise PipeSpecError(f"first stage {self.stages[0].name!r} must have one instance")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise PipeSpecError(f"stage names must be unique: {names}")
        for s in self.stages:
            if s.instances < 1:
                raise PipeSpecError(f"stage {s.name!r} needs at least one instance")
            if s.mode not in ("thread", "process"):
                raise PipeSpecError(f"stage {s.name!r}: mode must be 'thread' or 'process'")
        if self.max_buffers < self.n_allocators * 2:
            raise PipeSpecError(f"max_buffers {self.max_buffers} is too small for "
                                f"{self.n_allocators} allocating stages (need at least 2 each)")

    @property
    def n_stages(self) -> int:
        """Number of stages."""
        return len(self.stages)

    @property
    def n_slots(self) -> int:
        """Number of module instances over all stages (each has its own counters)."""
        return sum(s.instances for s in self.stages)

    def allocates(self, stage: int) -> bool:
        """Whether ``stage`` may call alloc_buf (the first stage always does)."""
        return stage == 0 or self.stages[stage].allocates

    @property
    def allocator_of(self) -> tuple[int, ...]:
        """Allocator id of each stage, or -1 for stages that never allocate."""
        ids: list[int] = []
        k = 0
        for i in range(self.n_stages):
            ids.append(k if self.allocates(i) else -1)
            k += self.allocates(i)
        return tuple(ids)

    @property
    def n_allocators(self) -> int:
        """N_A of the seed: stages that allocate (all instances of a stage share one)."""
        return sum(1 for i in range(self.n_stages) if self.allocates(i))

    @property
    def quota(self) -> int:
        """Max_Buffers / N_A: buffers one allocator may hold unfreed at once."""
        return self.max_buffers // self.n_allocators

    def first_slot(self, stage: int) -> int:
        """Index of the counters of the first instance of ``stage``."""
        return sum(s.instances for s in self.stages[:stage])

    def stamps(self, queue: int) -> bool:
        """Whether queue ``queue`` (the input of stage ``queue``) numbers its items in order.

        It does when it feeds a parallel stage: the sequencer. A parallel tail reads the
        numbers itself (a network sender tags its frames with them, for example).
        """
        return queue >= 1 and self.stages[queue].instances > 1

    def windowed(self, queue: int) -> bool:
        """Whether producers of ``queue`` take a place in a reorder window before sending.

        A window covers a whole run of consecutive parallel stages: it opens at the queue
        into the first of them and closes where the run's last resequencer lets items out.
        Inside the run no further place is taken, so an item that is next in order never
        waits for a place that out-of-order items hold (which would deadlock).
        """
        return self.stamps(queue) and queue < self.n_stages - 1 and not self.reorders(queue)

    def reorders(self, queue: int) -> bool:
        """Whether queue ``queue`` restores the order of a parallel stage's outputs."""
        return queue >= 2 and self.stamps(queue - 1) and queue - 1 < self.n_stages - 1

    def closes_window(self, queue: int) -> bool:
        """Whether items leaving ``queue``'s resequencer leave their run of parallel stages."""
        return self.reorders(queue) and not (self.stamps(queue) and queue < self.n_stages - 1)

    def window_of(self, queue: int) -> int:
        """The queue that opened the run of parallel stages a reordering ``queue`` belongs to."""
        start = queue - 1
        while self.reorders(start):
            start -= 1
        return start

    def window(self, queue: int) -> int:
        """How many items may be inside the run of parallel stages opened at ``queue``.

        Bounded below the allocator quota so that out-of-order outputs waiting in the
        resequencers can never use up the quota the head-of-line item needs (the deadlock
        measured in research/pipebench.md section 6).
        """
        widest, q = self.stages[queue].instances, queue + 1
        while q < self.n_stages and self.reorders(q) and self.stamps(q):
            widest = max(widest, self.stages[q].instances)
            q += 1
        return max(1, self.quota - widest)

    def to_json(self) -> bytes:
        """The topology serialised for the shared control area."""
        return json.dumps({"stages": [asdict(s) for s in self.stages],
                           "buffer_size": self.buffer_size,
                           "max_buffers": self.max_buffers}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Topology:
        """Inverse of :meth:`to_json`."""
        doc = json.loads(raw)
        return cls(tuple(StageShape(**s) for s in doc["stages"]), doc["buffer_size"],
                   doc["max_buffers"])
