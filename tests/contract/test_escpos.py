"""Contract of an ESC/POS receipt printer (``--device-url escpos=URL`` for a real one)."""

from __future__ import annotations

from typing import Any, ClassVar

from tests.contract.contract import DeviceContract

SENSOR = {"ok", "near_end", "end", "unknown"}


class TestEscposContract(DeviceContract):
    driver = "escpos"
    sim_url = "sim://escpos"
    fields: ClassVar[dict[str, set[Any] | None]] = {
        "paper": SENSOR, "cover": {"open", "closed", "unknown"}, "online": {True, False}, "errors": None,
              "ribbon": {None, *SENSOR}, "model": None, "status_bytes": None}
