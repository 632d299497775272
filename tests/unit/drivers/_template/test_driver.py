"""The template driver: grading (pure), options, and the driver on its simulator over a
real pty (every fault knob, what status() sends, the external check, a missing port).
The template is not registered: it is built directly, and never listed as a driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from posagent.config.model import DeviceConfig
from posagent.config.urls import parse_url
from posagent.core.base import CheckContext, DriverEnv, Level, Status
from posagent.core.errors import DeviceNotFound, DeviceTimeout, ProtocolError
from posagent.core.registry import available_drivers
from posagent.drivers._template import TemplateDriver, TemplateOptions, grade
from posagent.drivers._template.proto import Reading
from posagent.drivers._template.sim import TemplateSim
from posagent.drivers.simulator import SimHandle

Lamp = tuple[TemplateSim, TemplateDriver]


def driver_for(url: str, **options: Any) -> TemplateDriver:
    device = DeviceConfig(name="lamp", driver="template", url=parse_url(url), options=TemplateOptions(**options))
    return TemplateDriver(device, DriverEnv(state_dir="", terminal_id="T"))


@pytest.fixture
def lamp() -> Iterator[Callable[..., Lamp]]:
    """lamp(knobs, **options) -> the simulator (on a pty) and a driver on it; both closed at the end."""
    started: list[tuple[SimHandle, TemplateDriver]] = []

    def start(knobs: dict[str, Any] | None = None, **options: Any) -> Lamp:
        sim = TemplateSim(**(knobs or {}))
        handle = sim.start()
        driver = driver_for(handle.url, **options)
        started.append((handle, driver))
        return sim, driver

    yield start
    for handle, driver in started:
        driver.close()
        handle.stop()


@pytest.mark.parametrize(("reading", "status", "code"), [
    (Reading(35.0, False, False), Status.OK, "TEMPLATE_OK"),
    (Reading(None, False, False), Status.OK, "TEMPLATE_OK"),
    (Reading(60.0, False, False), Status.WARN, "TEMPLATE_HOT"),
    (Reading(70.0, False, True), Status.WARN, "TEMPLATE_FAN_STALLED"),
    (Reading(70.0, True, True), Status.FAIL, "TEMPLATE_LAMP_OUT"),  # the worst finding wins
])
def test_grade(reading: Reading, status: Status, code: str) -> None:
    r = grade(reading, warn_temp_c=60.0)
    assert (r.status, r.code) == (status, code)
    assert r.fields == {"lamp": "out" if reading.lamp_out else "lit"}
    # a value the lamp did not report is left out, never 0
    assert r.measurements == ({} if reading.temperature_c is None else {"temperature_c": reading.temperature_c})


def test_warn_temp_zero_never_warns() -> None:
    assert grade(Reading(140.0, False, False), warn_temp_c=0).code == "TEMPLATE_OK"


@pytest.mark.parametrize("options", [{"reply_timeout": 0}, {"reply_timeout": 31}, {"warn_temp_c": -1}])
def test_options_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TemplateOptions(**options)


def test_the_template_is_not_registered() -> None:
    assert "template" not in available_drivers()


def test_status_asks_once_and_keeps_the_port(lamp: Callable[..., Lamp]) -> None:
    sim, drv = lamp({"temp_c": 41.5})
    r = drv.status()
    assert (r.status, r.code, r.measurements, r.fields) == (Status.OK, "TEMPLATE_OK", {"temperature_c": 41.5},
                                                            {"lamp": "lit"})
    stream = drv._link.stream
    assert stream is not None and stream._owner.baudrate == 9600  # 9600 8N1 unless the URL says otherwise
    assert drv.status().code == "TEMPLATE_OK" and drv._link.stream is stream
    assert sim.commands == [b"STATUS", b"STATUS"] and sim.blinks == 0  # no side effects


@pytest.mark.parametrize(("knobs", "status", "code"), [
    ({"lamp_out": True}, Status.FAIL, "TEMPLATE_LAMP_OUT"),
    ({"fan_stalled": True}, Status.WARN, "TEMPLATE_FAN_STALLED"),
    ({"temp_c": 75.0}, Status.WARN, "TEMPLATE_HOT"),
    ({"no_sensor": True, "new_bits": True}, Status.OK, "TEMPLATE_OK"),
])
def test_faults(lamp: Callable[..., Lamp], knobs: dict[str, Any], status: Status, code: str) -> None:
    _sim, drv = lamp(knobs)
    r = drv.status()
    assert (r.status, r.code) == (status, code), r.message


def test_silence_is_no_response(lamp: Callable[..., Lamp]) -> None:
    _sim, drv = lamp({"no_answer": True}, reply_timeout=0.2)
    with pytest.raises(DeviceTimeout) as e:
        drv.status()
    assert e.value.code == "TEMPLATE_NO_RESPONSE" and "did not answer STATUS" in str(e.value)


def test_garbage_is_a_protocol_error(lamp: Callable[..., Lamp]) -> None:
    _sim, drv = lamp({"garbage": True})
    with pytest.raises(ProtocolError) as e:
        drv.status()
    assert e.value.code == "TEMPLATE_PROTOCOL_ERROR"


def test_blink_is_an_external_check_sent_once(lamp: Callable[..., Lamp]) -> None:
    sim, drv = lamp()
    checks = {c.name: c for c in drv.checks()}
    assert {n: c.level for n, c in checks.items()} == {"status": Level.INTERNAL, "blink": Level.EXTERNAL}
    r = checks["blink"].run(CheckContext(deadline=float("inf")))
    assert (r.status, r.code) == (Status.OK, "TEMPLATE_BLINKED")
    assert sim.blinks == 1 and sim.commands == [b"BLINK"]


def test_a_missing_port_is_not_connected() -> None:
    drv = driver_for("serial:///dev/posagent-no-such-tty")
    with pytest.raises(DeviceNotFound) as e:
        drv.status()
    assert e.value.code == "TEMPLATE_NOT_CONNECTED" and e.value.facts["reason"] == "absent"
    drv.close()


def test_close_twice_then_reopen(lamp: Callable[..., Lamp]) -> None:
    _sim, drv = lamp()
    assert drv.status().code == "TEMPLATE_OK"
    drv.close()
    drv.close()
    assert drv._link.stream is None
    assert drv.status().code == "TEMPLATE_OK"  # opened again on demand
