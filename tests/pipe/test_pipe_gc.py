"""The cycle collector is paced for bulk jobs while they run, and only then."""

from __future__ import annotations

import gc
import threading
from functools import partial

from pipe_helpers import Counter, Thresholds

from pipevault.pipe import Pipe, StageSpec, bulk_gc
from pipevault.pipe._gc import BULK_THRESHOLD


def test_thresholds_are_raised_inside_and_restored_after_nested_and_threaded_use() -> None:
    normal = gc.get_threshold()
    assert normal[0] < BULK_THRESHOLD
    inside: list[int] = []
    entered, leave = threading.Event(), threading.Event()

    def other_job() -> None:
        with bulk_gc():
            entered.set()
            leave.wait(10)

    with bulk_gc():
        assert gc.get_threshold() == (BULK_THRESHOLD, *normal[1:])
        t = threading.Thread(target=other_job)
        t.start()
        assert entered.wait(10)
        with bulk_gc():
            inside.append(gc.get_threshold()[0])
    inside.append(gc.get_threshold()[0])  # the other thread's job still runs
    leave.set()
    t.join()
    assert inside == [BULK_THRESHOLD, BULK_THRESHOLD]
    assert gc.get_threshold() == normal


def test_a_decorated_job_restores_the_pace_after_an_error() -> None:
    normal = gc.get_threshold()

    @bulk_gc()
    def job() -> None:
        assert gc.get_threshold()[0] == BULK_THRESHOLD
        raise ValueError("boom")

    try:
        job()
    except ValueError:
        pass
    assert gc.get_threshold() == normal


def test_process_modules_run_with_the_bulk_pace() -> None:
    result = Pipe([StageSpec("head", partial(Counter, 3)), StageSpec("tail", Thresholds, mode="process")],
                  buffer_size=1 << 16, max_buffers=4).run()
    assert result.results["tail"][0][0] == BULK_THRESHOLD
