"""Contract of the driver template's fictional status lamp (drivers/_template), on its
simulator by default; ``--device-url template=serial:///dev/ttyUSB0`` for a real one.

Copy this file for a new family. The template is not registered as a plug-in, so it
differs from a registered family's contract in the two places marked "not registered":
``driver_class`` registers the driver for each test, and the ``url`` fixture starts the
simulator class directly. A registered family drops both and sets
``sim_url = "sim://<family>"``, as tests/contract/test_ups.py does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from posagent.drivers._template import TemplateDriver
from posagent.drivers._template.sim import TemplateSim
from tests.contract.contract import DeviceContract, given_url


class TestTemplateContract(DeviceContract):
    driver = "template"
    driver_class = TemplateDriver  # not registered: see the module docstring
    fields: ClassVar[dict[str, set[Any] | None]] = {"lamp": {"lit"}}  # a healthy lamp is lit

    @pytest.fixture
    def url(self, request: pytest.FixtureRequest) -> Iterator[str]:
        given = given_url(request.config, self.driver)
        if given:
            yield given
            return
        handle = TemplateSim().start()  # not registered: no sim://template, started here
        try:
            yield handle.url
        finally:
            handle.stop()
