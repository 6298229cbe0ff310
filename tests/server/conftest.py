"""Fixtures of the server tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feature_gate import require_feature
from pipevault.server.netns import NetnsPair, netns_probe


@pytest.fixture(scope="module")
def pair() -> Iterator[NetnsPair]:
    """Two network namespaces joined by a veth pair, for the tests of one module (root only)."""
    require_feature("netns", netns_probe)
    with NetnsPair.create() as p:
        yield p
