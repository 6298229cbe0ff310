"""Whole pipes: order, failure and death handling, stop, clean-up, status."""

from __future__ import annotations

import functools
import os
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipe_helpers import (
    Burn,
    Collect,
    Counter,
    Endless,
    FailAt,
    Hoarder,
    Jitter,
    KillSelfAt,
    pipe_leftovers,
    pipe_threads,
)

from pipevault.events import CollectingReporter, JobFinished, Progress
from pipevault.pipe import Pipe, StageSpec
from pipevault.pipe.errors import BufferMisuse, ModuleDied, ModuleFailed, PipeStopped

P = functools.partial
KB64 = 64 << 10


def assert_clean() -> None:
    """No shared memory left, and no module thread for long: run() waits STOP_GRACE_S for
    threads to notice a stop (a thread cannot be killed), and on a busy machine one may
    still be on its way out of its last 50 ms poll when run() returns."""
    assert pipe_leftovers() == []
    deadline = time.monotonic() + 5
    while pipe_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pipe_threads() == []


@settings(max_examples=int(os.environ.get("PIPEVAULT_HYPOTHESIS_EXAMPLES", "30")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 60),
    stages=st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=0, max_size=3),
    max_buffers=st.integers(6, 24),
    delays=st.lists(st.integers(0, 1500), min_size=1, max_size=5),
    shared=st.booleans(),
)
def test_order_is_preserved_and_nothing_leaks(n: int, stages: list[tuple[int, bool]],
                                               max_buffers: int, delays: list[int], shared: bool) -> None:
    """Random instance counts, copying or in-place stages, pool sizes and per-buffer delays."""
    specs = [StageSpec("head", P(Counter, n))]
    for i, (instances, copy) in enumerate(stages):
        specs.append(StageSpec(f"s{i}", P(Jitter, tuple(delays), copy), instances=instances,
                               allocates=copy))
    specs.append(StageSpec("tail", Collect))
    max_buffers = max(max_buffers, 2 * (1 + sum(copy for _, copy in stages)))
    result = Pipe(specs, buffer_size=KB64, max_buffers=max_buffers, shared=shared).run()
    assert result.results["tail"] == [list(range(n))]
    assert all(s.buffers_held == 0 for s in result.status.stages)
    assert result.status.stages[-1].buffers_in == n
    assert_clean()


def test_process_and_thread_instances_mix_and_keep_order() -> None:
    specs = [StageSpec("head", P(Counter, 200)),
             StageSpec("p", P(Jitter, (300, 0, 900), True), instances=2, allocates=True, mode="process"),
             StageSpec("t", P(Jitter, (0, 500)), instances=2),
             StageSpec("tail", Collect, mode="process")]
    result = Pipe(specs, buffer_size=KB64, max_buffers=16).run()
    assert result.results["tail"] == [list(range(200))]
    assert_clean()


def test_a_module_error_stops_the_pipe_and_is_reported_once() -> None:
    reporter = CollectingReporter()
    specs = [StageSpec("head", Endless), StageSpec("bad", P(FailAt, 25)),
             StageSpec("tail", Collect)]
    t0 = time.monotonic()
    with pytest.raises(ModuleFailed, match="bad#0 failed: ValueError: boom at 25") as info:
        Pipe(specs, buffer_size=KB64, max_buffers=8, reporter=reporter).run()
    assert time.monotonic() - t0 < 5
    assert isinstance(info.value.__cause__, ValueError)
    assert not reporter.of_type(JobFinished)
    assert_clean()


def test_a_killed_process_module_stops_the_pipe_and_is_cleaned_up() -> None:
    specs = [StageSpec("head", Endless), StageSpec("victim", P(KillSelfAt, 40), mode="process"),
             StageSpec("tail", Collect, instances=1)]
    with pytest.raises(ModuleDied, match="victim#0 .* died with signal SIGKILL"):
        Pipe(specs, buffer_size=KB64, max_buffers=8).run()
    assert_clean()


def test_sigkill_from_outside_stops_the_pipe_within_a_second() -> None:
    """The initiator notices the dead process on its sentinel and stops every other module."""
    pipe = Pipe([StageSpec("head", Endless), StageSpec("mid", P(Jitter, (200,)), mode="process"),
                 StageSpec("tail", Collect, mode="process")], buffer_size=KB64, max_buffers=8)
    errors: list[BaseException] = []
    finished = threading.Event()

    def run() -> None:
        try:
            pipe.run()
        except BaseException as exc:
            errors.append(exc)
        finished.set()

    threading.Thread(target=run).start()
    assert pipe.wait_started(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until data flows through the process modules
        status = pipe.status()
        if status is not None and status.stages[-1].buffers_in > 20:
            break
        time.sleep(0.01)
    victims = _module_processes()
    assert victims
    os.kill(victims[0][0], 9)
    t0 = time.monotonic()
    assert finished.wait(10)
    # One second is the design figure (50 ms polls + 0.6 s grace); leave room for a busy CI box.
    assert time.monotonic() - t0 < 3
    assert isinstance(errors[0], ModuleDied)
    assert_clean()


def _module_processes() -> list[tuple[int, bytes]]:
    """Process modules of this test process: spawned or forked children, or the children of
    the fork server (when an earlier test of the session preloaded process modules)."""
    mine = _children()
    with open("/proc/self/cmdline", "rb") as f:
        me = f.read()
    spawned = [p for p in mine if b"spawn_main" in p[1] or p[1] == me]
    servers = [pid for pid, cmd in mine if b"forkserver" in cmd]
    return spawned + [p for server in servers for p in _children(server)]


def _children(parent: int | None = None) -> list[tuple[int, bytes]]:
    me = os.getpid() if parent is None else parent
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == me:
            out.append((int(pid), cmd))
    return out


def test_stop_request_ends_every_module_cleanly() -> None:
    pipe = Pipe([StageSpec("head", Endless), StageSpec("tail", Collect, mode="process")],
                buffer_size=KB64, max_buffers=8)
    errors: list[BaseException] = []
    t = threading.Thread(target=lambda: errors.append(_run_catching(pipe)))
    t.start()
    assert pipe.wait_started(30)
    time.sleep(0.3)
    pipe.stop()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(errors[0], PipeStopped)
    assert_clean()


def _run_catching(pipe: Pipe) -> BaseException | None:
    try:
        pipe.run()
    except BaseException as exc:
        return exc
    return None


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_status_counts_each_stages_cpu_time(mode: str) -> None:
    specs = [StageSpec("head", P(Counter, 4)), StageSpec("burn", P(Burn, 0.3), mode=mode),
             StageSpec("tail", Collect)]
    head, burn, tail = Pipe(specs, buffer_size=KB64, max_buffers=8).run().status.stages
    assert burn.cpu_s >= 0.3
    assert burn.figures().cpu_s == round(burn.cpu_s, 3)
    assert tail.cpu_s < 0.3 and head.cpu_s < 0.3


def test_a_module_that_keeps_a_buffer_is_reported() -> None:
    with pytest.raises(BufferMisuse, match="tail .1. returned while still holding"):
        Pipe([StageSpec("head", P(Counter, 5)), StageSpec("tail", Hoarder)],
             buffer_size=KB64, max_buffers=8).run()
    assert_clean()


def test_status_names_the_bottleneck_and_progress_is_reported() -> None:
    reporter = CollectingReporter()
    specs = [StageSpec("head", P(Counter, 60)), StageSpec("slow", P(Jitter, (10000,))),
             StageSpec("tail", Collect)]
    result = Pipe(specs, buffer_size=KB64, max_buffers=8, reporter=reporter,
                  progress_interval=0.1).run()
    head, slow, tail = result.status.stages
    assert head.wait_alloc_s > 0.2  # the head waits for free buffers behind the slow stage
    assert tail.wait_input_s > 0.2  # the tail waits for input from it
    assert slow.wait_input_s < head.wait_alloc_s
    assert result.status.bottleneck(result.elapsed_s) == "slow"
    progress = reporter.of_type(Progress)
    assert progress and all(isinstance(p, Progress) for p in progress)
    done = reporter.of_type(JobFinished)
    assert len(done) == 1 and done[0].bytes_done == 60 * 4096  # type: ignore[attr-defined]


class _SeqTail:
    def run(self, ctx: object) -> list[tuple[int, int]]:
        seen = []
        while (buf := ctx.receive_buf()) is not None:  # type: ignore[attr-defined]
            seen.append((buf.seq, int.from_bytes(buf.data[:8], "little")))
            ctx.free_buf(buf)  # type: ignore[attr-defined]
        return seen


@pytest.mark.parametrize("shared", [True, False])
def test_a_parallel_tail_sees_the_sequence_numbers_of_the_stream(shared: bool) -> None:
    """What a network sender relies on to let the far side restore order."""
    result = Pipe([StageSpec("head", P(Counter, 100)), StageSpec("tail", _SeqTail, instances=3)],
                  buffer_size=KB64, max_buffers=8, shared=shared).run()
    pairs = sorted(p for inst in result.results["tail"] for p in inst)
    assert pairs == [(i, i) for i in range(100)]


@pytest.mark.parametrize("shared", [True, False])
def test_consecutive_parallel_stages_do_not_deadlock(shared: bool) -> None:
    """Two parallel stages in a row: an item next in order must never wait for a window place
    that out-of-order items downstream hold (found by the property test above)."""
    specs = [StageSpec("head", P(Counter, 300)),
             StageSpec("a", P(Jitter, (0, 900, 50), True), instances=2, allocates=True),
             StageSpec("b", P(Jitter, (700, 0, 0, 300)), instances=3),
             StageSpec("c", P(Jitter, (100,), True), instances=2, allocates=True),
             StageSpec("tail", Collect)]
    result = Pipe(specs, buffer_size=KB64, max_buffers=12, shared=shared).run()
    assert result.results["tail"] == [list(range(300))]


@pytest.mark.parametrize("start", ["spawned", "forked", "forkserver"])
def test_process_modules_die_with_a_killed_initiator(tmp_path: object, start: str) -> None:
    """SIGKILL the process that runs a pipe: its process modules must not linger, whether
    they were spawned by it, forked from it (it preloaded their modules and runs one thread)
    or forked from its fork server (it runs other threads too; they are grandchildren)."""
    import subprocess
    import sys

    here = os.path.dirname(__file__)
    script = (
        "import functools, sys, threading, time\n"
        f"sys.path.insert(0, {here!r})\n"
        "from pipe_helpers import Endless, Jitter, Collect\n"
        "from pipevault.pipe import Pipe, StageSpec, preload_process_modules\n"
        "if __name__ == '__main__':\n"
        + ("    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
           if start == "forkserver" else "")
        + ("    preload_process_modules(['pipe_helpers'])\n" if start != "spawned" else "")
        + "    Pipe([StageSpec('head', Endless), StageSpec('mid', functools.partial(Jitter, (500,)), mode='process'),\n"
        "          StageSpec('tail', Collect, mode='process')], buffer_size=65536, max_buffers=8).run()\n"
    )
    grandchildren = start == "forkserver"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    modules: list[int] = []
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(modules) < 2:
            children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == proc.pid]
            if grandchildren:
                modules = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) in children]
            elif start == "spawned":  # they run multiprocessing's spawn_main (beside its resource tracker)
                modules = [c for c in children if b"spawn_main" in _cmdline(c)]
            else:  # forked: they run the initiator's command
                modules = [c for c in children if _cmdline(c) == _cmdline(proc.pid)]
            time.sleep(0.05)
        assert len(modules) >= 2, "the module processes did not start"
    finally:  # a failed check leaves no pipe running either
        proc.kill()
        proc.wait(10)
    everything = modules + children
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(c) for c in everything):
        time.sleep(0.05)
    assert not any(_alive(c) for c in everything)
    for entry in os.listdir("/dev/shm"):  # its segment and semaphores go at the next pipe's sweep
        assert not entry.startswith(f"pv-{os.getpid()}-")


def test_a_forked_module_ends_on_sigterm_whatever_its_initiator_does_with_it(tmp_path: object) -> None:
    """A module forked from an initiator whose SIGTERM handler raises (the CLI's) dies of
    SIGTERM as a spawned one would: the pipe reports the module dead."""
    import subprocess
    import sys

    here = os.path.dirname(__file__)
    script = (
        "import functools, signal, sys\n"
        f"sys.path.insert(0, {here!r})\n"
        "from pipe_helpers import Endless, Jitter, Collect\n"
        "from pipevault.pipe import Pipe, StageSpec, preload_process_modules\n"
        "def handler(signum, frame):\n"
        "    raise KeyboardInterrupt('the initiator handler ran')\n"
        "if __name__ == '__main__':\n"
        "    signal.signal(signal.SIGTERM, handler)\n"
        "    preload_process_modules(['pipe_helpers'])\n"
        "    mid = functools.partial(Jitter, (500,))\n"
        "    try:\n"
        "        Pipe([StageSpec('head', Endless), StageSpec('mid', mid, mode='process'),\n"
        "              StageSpec('tail', Collect, mode='process')], buffer_size=65536, max_buffers=8).run()\n"
        "    except BaseException as exc:\n"
        "        print(type(exc).__name__, exc, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        modules: list[int] = []
        while time.monotonic() < deadline and len(modules) < 2:
            modules = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == proc.pid
                       and _cmdline(int(p)) == _cmdline(proc.pid)]
            time.sleep(0.05)
        assert len(modules) >= 2, "the forked module processes did not start"
        os.kill(modules[0], 15)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(10)
    assert out.startswith("ModuleDied"), out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
