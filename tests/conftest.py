"""Shared fixtures: a clean pipevault environment for every test, kernel-feature gating."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from feature_gate import require_feature

__all__ = ["clean_env", "require_feature"]

# No per-example deadline: the examples do microseconds of work, and the default 200 ms
# deadline fails a test only when a busy machine deschedules it (speed lives in benchmarks).
settings.register_profile("pipevault", deadline=None)
settings.load_profile("pipevault")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test modules compiled from older sources (they would shadow the edits)."""
    spec = importlib.util.spec_from_file_location(
        "compiled_build", Path(__file__).resolve().parent.parent / "scripts" / "compiled.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    why = build.stale()
    if why:
        pytest.exit("the mypyc-compiled modules are stale: run `make setup` (or `PIPEVAULT_MYPYC=0 make setup` "
                    "to run them interpreted):\n  " + "\n  ".join(why[:5]), returncode=4)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Strip PIPEVAULT_* settings and point home and config at the test's own directory."""
    for key in list(os.environ):
        if key.startswith("PIPEVAULT_") and key != "PIPEVAULT_REQUIRE_KERNEL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIPEVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIPEVAULT_CONFIG", str(tmp_path / "config.toml"))
    yield
