"""The scanner never keeps views of a superblock buffer past the feed call that passed it.

A DataPipe hands each superblock to the scanner in a pool buffer and reuses that buffer as
soon as the call returns; a chunk whose data fits one superblock while its footer lands in the
next must still decode correctly.
"""

from __future__ import annotations

import random

from pipevault.format import ArchiveHeader, ChunkRead, Compression, Damage, Scanner, SessionWriter, fixed


def test_chunk_data_survives_reuse_of_the_previous_superblock_buffer() -> None:
    size = 64 << 10
    rng = random.Random(5)
    writer = SessionWriter(size=size, selector=fixed(Compression.NONE))
    payloads = []
    for i in range(1500):  # many small objects: some chunk footers fall into the next superblock
        writer.begin_object(ArchiveHeader(name=f"/f{i}".encode()))
        data = rng.randbytes(rng.randint(1, 3000))
        payloads.append(data)
        writer.write(data)
        writer.end_object()
    writer.close()
    blocks = writer.take()
    scanner = Scanner()
    shared = bytearray(size)  # one buffer, reused for every superblock, like a pool buffer
    seen: dict[int, bytes] = {}
    straddling = 0
    for block in blocks:
        shared[:] = block
        for ev in scanner.feed(memoryview(shared)):
            assert not isinstance(ev, Damage), ev.describe()
            if isinstance(ev, ChunkRead) and ev.data is not None:
                seen[ev.header.object_index] = bytes(ev.data)
                straddling += ev.first_seq != ev.last_seq
        shared[:] = b"\xee" * size  # the pipe reuses the buffer at once
    for ev in scanner.finish():
        assert not isinstance(ev, Damage), ev.describe()
    assert straddling > 0, "the case under test did not occur: change the sizes"
    assert [seen[i] for i in range(len(payloads))] == payloads
