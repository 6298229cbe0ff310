"""Shared fixtures: a clean pipevault environment for every test, kernel-feature gating."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_gate import require_feature

__all__ = ["clean_env", "require_feature"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Strip PIPEVAULT_* settings and point home and config at the test's own directory."""
    for key in list(os.environ):
        if key.startswith("PIPEVAULT_") and key != "PIPEVAULT_REQUIRE_KERNEL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIPEVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIPEVAULT_CONFIG", str(tmp_path / "config.toml"))
    yield
