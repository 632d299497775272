"""Contract of a chip-card reader through pcscd: by default a real pcscd with the vpcd
virtual reader (root only; CI runs it), ``--device-url pcsc=pcsc://?reader=ACS`` for a real one."""

from __future__ import annotations

import pytest

from tests.contract.contract import DeviceContract, given_url
from tests.integration.pcsc_fixture import pcsc_lab

__all__ = ["pcsc_lab"]  # the fixture, imported for pytest


class TestPcscContract(DeviceContract):
    driver = "pcsc"

    @pytest.fixture
    def url(self, request: pytest.FixtureRequest) -> str:
        given = given_url(request.config, self.driver)
        if given:
            return given
        request.getfixturevalue("pcsc_lab")
        return "pcsc://?reader=Virtual"
