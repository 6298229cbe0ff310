"""Skip-or-fail gating for tests that need a feature of the machine (kernel, server binaries)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


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
