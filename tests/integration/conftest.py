"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from posagent.drivers.simulator import SimHandle, start_sim
from tests.integration.collector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A real HTTP collector on 127.0.0.1, up for the whole test."""
    c = Collector().start()
    yield c
    c.stop()


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    """A simulated ESC/POS printer on a real pty, recording every byte it receives."""
    handle = start_sim("escpos", {})
    yield handle
    handle.stop()
