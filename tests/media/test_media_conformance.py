"""Every medium passes the conformance suite of pipevault.media.testing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipevault.media.testing import CHECKS, Implementation


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance(check: Callable[[Implementation], None], implementation: Implementation) -> None:
    check(implementation)
