"""Per-stage status of a pipe, read from the shared control area by any attached process."""

from __future__ import annotations

from dataclasses import dataclass

from pipevault.events import StageFigures
from pipevault.pipe import _pool as P


@dataclass(frozen=True)
class StageStatus:
    """One stage's counters, summed over its instances.

    ``wait_input_s`` is time blocked in receive_buf; ``wait_alloc_s`` is time blocked for a
    free buffer (alloc_buf, or the reorder window of a parallel stage after it). A stage
    that waits little on both is the bottleneck; the stages before it wait for buffers and
    the stages after it wait for input.
    """

    name: str
    instances: int
    buffers_held: int
    queue_depth: int  # -1 when read from another process of a thread-only pipe
    bytes_in: int
    buffers_in: int
    bytes_out: int
    buffers_out: int
    wait_input_s: float
    wait_alloc_s: float
    cpu_s: float = 0.0  # summed over instances that ended (each writes its own when it ends)

    def figures(self) -> StageFigures:
        """The same numbers as an event payload."""
        return StageFigures(self.name, self.instances, self.buffers_held, self.queue_depth,
                            self.bytes_in, self.buffers_in, self.bytes_out, self.buffers_out,
                            round(self.wait_input_s, 4), round(self.wait_alloc_s, 4),
                            round(self.cpu_s, 3))


@dataclass(frozen=True)
class PipeStatus:
    """A snapshot of every stage of one pipe."""

    name: str
    state: str
    stages: tuple[StageStatus, ...]

    def bottleneck(self, elapsed_s: float) -> str | None:
        """The stage that spent the smallest share of its time blocked, or None if unknown."""
        if elapsed_s <= 0 or not self.stages:
            return None
        def busy(s: StageStatus) -> float:
            return 1.0 - (s.wait_input_s + s.wait_alloc_s) / (elapsed_s * s.instances)
        return max(self.stages, key=busy).name


STATE_NAMES = {P.RUNNING: "running", P.STOPPING: "stopping", P.FAILED: "failed",
               P.FINISHED: "finished"}


def _depth(pool: P.BufferPool, q: int) -> int:
    queues = getattr(pool, "queues", None)
    return queues.depth(q) if queues is not None else -1


def read_status(pool: P.BufferPool) -> PipeStatus:
    """Snapshot the counters of ``pool`` (racy but consistent enough for monitoring)."""
    topo, ctl = pool.topology, pool.ctl
    stages = []
    for i, shape in enumerate(topo.stages):
        sums = [0] * P.COUNTER_WORDS
        first = topo.first_slot(i)
        for slot in range(first, first + shape.instances):
            base = pool.counter(slot, 0)
            for w in range(P.COUNTER_WORDS):
                sums[w] += int(ctl[base + w])
        stages.append(StageStatus(
            shape.name, shape.instances, sums[P.C_HELD], _depth(pool, i),
            sums[P.C_BYTES_IN], sums[P.C_BUFS_IN], sums[P.C_BYTES_OUT], sums[P.C_BUFS_OUT],
            sums[P.C_WAIT_IN] / 1e9, sums[P.C_WAIT_ALLOC] / 1e9, sums[P.C_CPU] / 1e9))
    return PipeStatus(pool.name, STATE_NAMES.get(pool.state, "unknown"), tuple(stages))
