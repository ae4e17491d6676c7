"""Fixtures of the live-node tests: a process cluster that is always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.node.procs import Cluster


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
