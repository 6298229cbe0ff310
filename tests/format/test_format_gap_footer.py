"""Reading a session from any of its superblocks: a gap that an archive footer closes.

A restore starts at the superblock where a wanted object begins, and after migration or
reclamation it also jumps over superblocks of expired objects. When the first record after
such a gap is the footer of an object cut by it, the next archive header must be accepted.
"""

from __future__ import annotations

import random

from format_helpers import write_session

from pipevault.format import Damage, ObjectStarted, Scanner


def test_reading_from_every_superblock_finds_every_later_object() -> None:
    rng = random.Random(7)
    objects = [(f"/f{i:03d}".encode(), rng.randbytes(rng.choice([100, 20_000, 60_000, 150_000])))
               for i in range(60)]
    _, blocks = write_session(objects, size=64 << 10)
    for k in range(1, len(blocks)):
        scanner = Scanner(decode=False)
        events = [ev for b in blocks[k:] for ev in scanner.feed(b)]
        structure = [ev for ev in events if isinstance(ev, Damage) and ev.kind == "structure"]
        assert structure == [], f"reading from superblock {k}: {structure}"
        started = [ev.header.object_index for ev in events if isinstance(ev, ObjectStarted)]
        if started:  # the last superblocks may hold only the end of the last object
            assert started == list(range(started[0], len(objects)))
    assert len(blocks) > 20
