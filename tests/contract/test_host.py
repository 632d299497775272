"""Contract of a host check (``--device-url host=https://acquirer.example/health``)."""

from __future__ import annotations

from typing import Any, ClassVar

from tests.contract.contract import DeviceContract


class TestHostContract(DeviceContract):
    driver = "host"
    sim_url = "sim://host"
    fields: ClassVar[dict[str, set[Any] | None]] = {"latency_ms": None}
