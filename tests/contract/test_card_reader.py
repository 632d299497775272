"""Contract of a magstripe card reader on a serial line or TCP (``--device-url card-reader=URL``)."""

from __future__ import annotations

from tests.contract.contract import DeviceContract


class TestCardReaderContract(DeviceContract):
    driver = "card-reader"
    sim_url = "sim://card-reader"
