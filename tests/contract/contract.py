"""What every device of a family must do, whatever its make: the contract suites.

Each ``test_<family>.py`` subclasses ``DeviceContract`` and names its driver. By default
the suite runs against the family's simulator (or, for NUT and PC/SC, the real upsd and
pcscd the integration fixtures start); with ``--device-url DRIVER=URL`` it runs against a
real device, like pyserial's test runner takes a port:

    pytest tests/contract --device-url escpos=serial:///dev/ttyUSB0?baudrate=38400

A device under contract test must be healthy and idle (paper in, cover closed, on mains):
the suite checks that it answers, that what it says keeps the heartbeat's promises, and
that the agent leaves it as it found it. Only internal (side-effect free) checks run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest

from posagent.core import registry
from posagent.core.base import Driver, Level, Result, Status
from posagent.core.codes import SHARED
from posagent.selftest import hints
from posagent.selftest.devices import DeviceSet
from posagent.selftest.runner import Runner, call_with_timeout
from tests.conftest import device_entry, device_set

#: codes that mean the agent, not the device, went wrong: never acceptable in a contract
AGENT_FAULTS = {"DRIVER_ERROR", "DRIVER_BAD_RESULT", "CHECK_TIMEOUT", "CHECK_SKIPPED", "DRIVER_LOAD_FAILED"}


def given_url(config: pytest.Config, driver: str) -> str | None:
    for item in config.getoption("--device-url") or []:
        name, sep, url = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"--device-url wants DRIVER=URL, got {item!r}")
        if name == driver:
            return url
    return None


@contextlib.contextmanager
def registered(cls: type[Driver] | None) -> Iterator[None]:
    """While the block runs, the registry finds ``cls`` under ``cls.name`` as if an entry
    point named it, so the config loader, the device set and the runner build it the
    ordinary way; for a driver that is not registered (drivers/_template). Nothing happens
    when ``cls`` is None. The one seam replaced is the registry's entry-point table; the
    lookups cached on it are forgotten on the way in and out."""
    if cls is None:
        yield
        return
    installed = registry._entry_points
    assert cls.name not in installed(), f"driver {cls.name!r} is registered already"
    entry = EntryPoint(cls.name, f"{cls.__module__}:{cls.__qualname__}", registry.GROUP)

    def with_cls() -> dict[str, EntryPoint]:
        return {**installed(), cls.name: entry}

    registry._entry_points = with_cls
    registry.load_driver.cache_clear()
    hints.all_codes.cache_clear()
    try:
        yield
    finally:
        registry._entry_points = installed
        registry.load_driver.cache_clear()
        hints.all_codes.cache_clear()


class DeviceContract:
    """Subclasses set ``driver`` and ``sim_url`` (or override the ``url`` fixture); a
    driver that is not registered also sets ``driver_class``."""

    driver: ClassVar[str] = ""
    #: the Driver class, for a driver no entry point names (the template): it is
    #: registered for each test. None (the default): the installed driver named ``driver``.
    driver_class: ClassVar[type[Driver] | None] = None
    sim_url: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: heartbeat fields every device of the family reports, with their allowed values
    #: (None: any value, as long as the key is there)
    fields: ClassVar[dict[str, set[Any] | None]] = {}

    @pytest.fixture
    def url(self, request: pytest.FixtureRequest) -> str:
        return given_url(request.config, self.driver) or self.sim_url

    @pytest.fixture
    def devices(self, url: str, tmp_path: Path) -> Any:
        with registered(self.driver_class):
            ds = device_set(tmp_path, device_entry("dut", self.driver, url, self.options or None))
            yield ds
            ds.close()

    @pytest.fixture
    def dut(self, devices: DeviceSet) -> Driver:
        entry = devices.get("dut")
        assert isinstance(entry, Driver), f"the driver could not be built: {entry}"
        return entry

    def status(self, dut: Driver) -> Result:
        return call_with_timeout(dut.status, dut.timeout, "dut.status")

    def test_status_answers_with_a_catalogued_code(self, dut: Driver) -> None:
        r = self.status(dut)
        assert r.code not in AGENT_FAULTS, r.message
        assert r.status is not Status.UNKNOWN, f"a healthy device must answer: {r.code}: {r.message}"
        assert r.code in dut.codes or r.code in SHARED, r.code
        assert r.status in (dut.codes.get(r.code) or SHARED[r.code]).grades
        assert r.message.strip()

    def test_status_is_stable_while_idle(self, dut: Driver) -> None:
        first, second = self.status(dut), self.status(dut)
        assert (first.status, first.code) == (second.status, second.code), (first.message, second.message)

    def test_fields_keep_the_heartbeats_promises(self, dut: Driver) -> None:
        r = self.status(dut)
        for name, allowed in self.fields.items():
            assert name in r.fields, f"{name} missing from {sorted(r.fields)}"
            if allowed is not None:
                assert r.fields[name] in allowed, (name, r.fields[name])

    def test_measurements_are_finite_numbers(self, dut: Driver) -> None:
        r = self.status(dut)
        for name, value in r.measurements.items():
            assert value is None or isinstance(value, int | float), (name, value)
            if isinstance(value, float):
                assert math.isfinite(value), (name, value)

    def test_internal_checks_all_finish(self, devices: DeviceSet) -> None:
        report = Runner(devices).selftest(Level.INTERNAL)
        assert report.checks, "the driver contributes no internal check"
        for rec in report.checks:
            assert rec.result.code not in AGENT_FAULTS, (rec.name, rec.result.message)

    def test_close_twice_then_ask_again(self, dut: Driver) -> None:
        dut.close()
        dut.close()
        assert self.status(dut).status is not Status.UNKNOWN  # a closed driver reopens on demand
