"""How a job's process modules start: a backup and a restore run from a process with one
thread fork them from it (it has imported what they run), start no fork server and
restore what they stored; run beside another thread they are forked from a fork server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = """
import json, multiprocessing.forkserver, os, sys, threading, time
from pipevault import config
from pipevault.mover.backup import BackupOptions, run_backup
from pipevault.mover.restore import RestoreOptions, run_restore
from pipevault.mover.site import Site

home, tree, out, other_thread = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if other_thread:
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
site = Site.open(config.load(env={"PIPEVAULT_HOME": home, "PIPEVAULT_CONFIG": "/nonexistent"}))
started = []
import pipevault.pipe._pipe as runner
original = runner._process_context
def recording():
    ctx = original()
    started.append(ctx.get_start_method())
    return ctx
runner._process_context = recording
backup = run_backup(site, BackupOptions([tree], instances=2))
run_restore(site, RestoreOptions([tree], to=out))
server = getattr(multiprocessing.forkserver, "_forkserver", None)
print(json.dumps({"sent": backup.sent, "started": started,
                  "server": getattr(server, "_forkserver_pid", None) is not None}))
"""


def _tree(root: Path) -> Path:
    for d in range(3):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(40):
            (root / f"d{d}" / f"f{f}").write_bytes(f"{d}/{f} ".encode() * (f * 50 + 1))
    (root / "big").write_bytes(bytes(range(256)) * 12_000)  # a file past the small-file batches
    return root


@pytest.mark.parametrize("other_thread", [False, True], ids=["one-thread", "other-thread"])
def test_modules_fork_from_a_one_thread_initiator_and_restore_what_they_stored(
        tmp_path: Path, other_thread: bool) -> None:
    tree = _tree(tmp_path / "src")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "home"), str(tree), str(out),
                           "1" if other_thread else "0"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["sent"] == 3 * 41 + 1 + 1  # files, directories and the root
    assert report["started"] == (["forkserver", "forkserver"] if other_thread else ["fork", "fork"])
    assert report["server"] is other_thread
    for path in tree.rglob("*"):
        restored = out / path.relative_to(tree)
        assert restored.exists(), restored
        if path.is_file():
            assert restored.read_bytes() == path.read_bytes()
