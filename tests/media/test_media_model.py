"""Random operation sequences on every medium agree with a model of what it should hold."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipevault.media.errors import BadBlock, EndOfData, VolumeFull, WriteOnceViolation
from pipevault.media.testing import BLOCK, Implementation

CAPACITY = 12

ops_st = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 3), st.floats(0, 1)),
    st.tuples(st.just("write"), st.integers(1, 3), st.floats(0, 1)),
    st.tuples(st.just("read"), st.integers(0, 0), st.floats(0, 1)),
    st.tuples(st.just("filemark"), st.integers(1, 2), st.floats(0, 1)),
    st.tuples(st.just("sync"), st.integers(0, 0), st.floats(0, 1)),
    st.tuples(st.just("erase"), st.integers(0, 0), st.floats(0, 1)),
), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_st, seed=st.integers(0, 2**32))
def test_random_operations_match_the_model(implementation: Implementation, ops: list[tuple[str, int, float]],
                                           seed: int) -> None:
    vol = implementation.make(BLOCK, CAPACITY)
    caps = vol.capabilities
    rng = random.Random(seed)
    model: list[bytes | None] = []  # None is a filemark

    def data_blocks(entries: list[bytes | None]) -> int:
        return sum(e is not None for e in entries)

    for op, n, frac in ops:
        if op == "append":
            blocks = [rng.randbytes(BLOCK) for _ in range(n)]
            if data_blocks(model) + n > CAPACITY:
                with pytest.raises(VolumeFull):
                    vol.append(b"".join(blocks))
            else:
                assert vol.append(b"".join(blocks)) == len(model)
                model.extend(blocks)
        elif op == "write":
            address = int(frac * (len(model) + 1))
            address = min(address, len(model))
            blocks = [rng.randbytes(BLOCK) for _ in range(n)]
            if caps.write_once and address < len(model):
                with pytest.raises(WriteOnceViolation):
                    vol.write(address, b"".join(blocks))
                continue
            # Sequential media forget what follows a write; rewritable media keep it.
            kept: list[bytes | None] = [] if caps.append_only else model[address + n:]
            after: list[bytes | None] = [*model[:address], *blocks, *kept]
            if data_blocks(after) > CAPACITY:
                with pytest.raises(VolumeFull):
                    vol.write(address, b"".join(blocks))
            else:
                assert vol.write(address, b"".join(blocks)) == address
                model = after
        elif op == "read" and model:
            address = min(int(frac * len(model)), len(model) - 1)
            if model[address] is None:
                with pytest.raises(BadBlock):
                    vol.read(address)
            else:
                assert vol.read(address) == model[address]
        elif op == "filemark" and caps.filemarks:
            assert vol.write_filemark(n) == len(model)
            model.extend([None] * n)
        elif op == "sync":
            vol.sync()
        elif op == "erase" and not caps.write_once:
            vol.erase()
            model = []
        status = vol.status()
        assert status.end_of_data == len(model)
        assert status.data_blocks == data_blocks(model)
        assert status.free_bytes == (CAPACITY - data_blocks(model)) * BLOCK
    for address, entry in enumerate(model):
        if entry is not None:
            assert vol.read(address) == entry
    with pytest.raises(EndOfData):
        vol.read(len(model))
    vol.close()
