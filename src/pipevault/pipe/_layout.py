"""Word offsets and constants of a pipe's shared control area (see ``_pool`` for the layout)."""

from __future__ import annotations

import mmap

from pipevault.pipe._topology import Topology

MAGIC = 0x5056_5049_5045_0001  # "PVPIPE" + layout 1
VERSION = 1

RUNNING, STOPPING, FAILED, FINISHED = 0, 1, 2, 3

H_MAGIC, H_VERSION, H_STATE, H_MAXBUF, H_BUFSIZE, H_NSTAGES, H_NSLOTS, H_NALLOC = range(8)
H_DATAOFF, H_TOPOOFF, H_TOPOLEN, H_FAILSLOT, H_SHARED = range(8, 13)
HEADER_WORDS = 16
QUEUE_HEADER = 8
Q_HEAD, Q_TAIL, Q_CLOSED, Q_PRODUCERS, Q_STAMP, Q_NEXTOUT, Q_KIND, Q_WINDOW = range(8)
POLL_S = 0.05  # how often a blocked wait looks at the pipe state; bounds stop latency

# C_CPU: CPU nanoseconds the instance used, written when it ends (its thread's, or its process's).
C_HELD, C_BUFS_IN, C_BYTES_IN, C_BUFS_OUT, C_BYTES_OUT, C_WAIT_IN, C_WAIT_ALLOC, C_CPU = range(8)
COUNTER_WORDS = 8

FREE, QUEUED = -1, -2  # holder values besides an instance slot



def queue_base(topo: Topology, q: int) -> int:
    """Index in the control words of queue ``q``'s header (``q == n_stages``: the counters)."""
    return HEADER_WORDS + 5 * topo.max_buffers + q * (QUEUE_HEADER + 2 * topo.max_buffers)


def topo_offset(topo: Topology) -> int:
    """Byte offset of the topology JSON."""
    return (queue_base(topo, topo.n_stages) + topo.n_slots * COUNTER_WORDS) * 8


def data_offset(topo: Topology) -> int:
    """Byte offset of buffer 0 (page aligned)."""
    end = topo_offset(topo) + len(topo.to_json())
    return (end + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
