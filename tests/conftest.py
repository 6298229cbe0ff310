"""Shared fixtures: a clean pipevault environment for every test, kernel-feature gating."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Strip PIPEVAULT_* settings and point home and config at the test's own directory."""
    for key in list(os.environ):
        if key.startswith("PIPEVAULT_") and key != "PIPEVAULT_REQUIRE_KERNEL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIPEVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIPEVAULT_CONFIG", str(tmp_path / "config.toml"))
    yield


def require_feature(name: str, probe: Callable[[], str | None]) -> None:
    """Skip the test when ``probe`` reports a missing feature, unless CI demands the kernel.

    ``probe`` returns None when the feature works, else why it does not. With
    ``PIPEVAULT_REQUIRE_KERNEL=1`` (set by ``.ci/run``) a missing feature fails the test.
    """
    problem = probe()
    if problem is None:
        return
    if os.environ.get("PIPEVAULT_REQUIRE_KERNEL") == "1":
        pytest.fail(f"kernel feature {name} is required but missing: {problem}")
    pytest.skip(f"kernel feature {name} missing: {problem}")
