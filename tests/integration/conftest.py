"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.collector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A real HTTP collector on 127.0.0.1, up for the whole test."""
    c = Collector().start()
    yield c
    c.stop()
