"""Contract of a UPS, through its two drivers: Megatec Q1 on a serial line (simulator by
default) and NUT (a real upsd with dummy-ups by default); ``--device-url megatec=URL`` /
``--device-url nut=URL`` for real ones."""

from __future__ import annotations

from typing import Any

import pytest

from posagent.drivers.ups_common import FIELD_NAMES
from tests.contract.contract import DeviceContract, given_url
from tests.integration.nut_fixture import UPS_NAME, NutServer, nut_server, nut_shared_server

__all__ = ["nut_server", "nut_shared_server"]  # fixtures, imported for pytest

UPS_FIELDS: dict[str, set[Any] | None] = {name: None for name in FIELD_NAMES}
UPS_FIELDS.update(on_battery={False}, battery_low={False})  # a healthy UPS on mains


class TestMegatecContract(DeviceContract):
    driver = "megatec"
    sim_url = "sim://megatec"
    fields = UPS_FIELDS


class TestNutContract(DeviceContract):
    driver = "nut"
    fields = UPS_FIELDS

    @pytest.fixture
    def url(self, request: pytest.FixtureRequest) -> str:
        given = given_url(request.config, self.driver)
        if given:
            return given
        server: NutServer = request.getfixturevalue("nut_server")
        return f"nut://127.0.0.1:{server.port}/{UPS_NAME}"
