"""The common UPS grading, the battery driver (psutil.sensors_battery mocked: this machine
has no battery), and upsd's quoting rules."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable

import psutil
import pytest

from posagent.core.base import Status
from posagent.drivers.battery import BatteryDriver
from posagent.drivers.megatec import MegatecDriver
from posagent.drivers.nut import NutDriver, quote, reading_from_vars, split_words
from posagent.drivers.ups_codes import UPS_CODES
from posagent.drivers.ups_common import FIELD_NAMES, UpsReading, grade, parse_number
from tests.conftest import DriverBuilder, device_entry


@pytest.mark.parametrize(("tokens", "status", "code"), [
    (["OL", "CHRG"], Status.OK, "UPS_OK"),
    (["OB", "DISCHRG"], Status.WARN, "UPS_ON_BATTERY"),
    (["OB", "DISCHRG", "LB"], Status.FAIL, "UPS_BATTERY_LOW"),
    (["OL", "LB"], Status.FAIL, "UPS_BATTERY_LOW"),
    (["OL", "FSD"], Status.FAIL, "UPS_BATTERY_LOW"),  # FSD: treat like OB LB
    (["OL", "RB"], Status.WARN, "UPS_REPLACE_BATTERY"),
    (["OL", "OVER"], Status.FAIL, "UPS_OVERLOAD"),
    (["OL", "ALARM"], Status.FAIL, "UPS_FAULT"),
    (["OFF"], Status.FAIL, "UPS_FAULT"),
    (["CHRG"], Status.UNKNOWN, "UPS_PROTOCOL_ERROR"),  # neither OL nor OB
    ([], Status.UNKNOWN, "UPS_NO_RESPONSE"),
])
def test_grade_by_tokens(tokens: list[str], status: Status, code: str) -> None:
    r = grade(UpsReading(tokens=tokens))
    assert (r.status, r.code) == (status, code), r.message
    assert set(r.fields) == set(FIELD_NAMES)
    assert UPS_CODES[code].hint or code == "UPS_OK"


def test_absent_values_are_none_never_zero() -> None:
    r = grade(UpsReading(tokens=["OL"]))
    assert r.fields == {"on_battery": False, "battery_charge_pct": None, "battery_runtime_s": None,
                        "battery_low": False, "input_voltage_v": None, "load_pct": None,
                        "ups_status": "OL", "model": None,
                        "battery_health_pct": None}
    assert r.measurements == {}


def test_overload_from_load_and_message_figures() -> None:
    r = grade(UpsReading(tokens=["OL"], load_pct=105, battery_charge_pct=90, battery_runtime_s=754))
    assert r.code == "UPS_OVERLOAD" and "load 105 %" in r.message and "12 min 34 s" in r.message
    assert grade(UpsReading(tokens=["OL"], load_pct=105), overload_pct=0).code == "UPS_OK"
    r = grade(UpsReading(tokens=["OL"], battery_charge_pct=44.0, charge_approximate=True))
    assert "~44 %" in r.message and r.measurements["battery_charge_estimated"] is True


def test_the_power_cut_advice_is_in_the_hints() -> None:
    assert "check the wall socket" in UPS_CODES["UPS_ON_BATTERY"].hint
    assert "wait at least a minute" in UPS_CODES["UPS_ON_BATTERY"].hint
    assert "replace" in UPS_CODES["UPS_REPLACE_BATTERY"].hint.lower()
    for driver in (MegatecDriver, NutDriver, BatteryDriver):  # every UPS driver shares the table
        assert all(driver.codes[c] is entry for c, entry in UPS_CODES.items())


def test_parse_number_keeps_what_the_source_gave() -> None:
    assert parse_number("87") == 87 and isinstance(parse_number("87"), int)
    assert parse_number("023.4") == 23.4
    assert parse_number("100.0") == 100.0
    assert parse_number("1,5") == 1.5
    assert parse_number(None) is None
    assert parse_number("n/a") is None and parse_number("nan") is None and parse_number("") is None


# -- upsd quoting ------------------------------------------------------------------
def test_split_words_unquotes() -> None:
    line = r'VAR dummy ups.model "A \"quoted\" back\\slash"'
    assert split_words(line) == ["VAR", "dummy", "ups.model", 'A "quoted" back\\slash']
    assert split_words('UPS dummy "Loopback test UPS"') == ["UPS", "dummy", "Loopback test UPS"]
    assert split_words('VAR u x ""') == ["VAR", "u", "x", ""]
    assert split_words("  END   LIST  ") == ["END", "LIST"]
    with pytest.raises(ValueError):
        split_words('VAR u x "unterminated')


def test_quote_round_trip() -> None:
    for value in ['A "quoted" back\\slash', "", "plain", "\\", '"']:
        assert split_words("X " + quote(value)) == ["X", value]
    with pytest.raises(ValueError):
        quote("two\nlines")


def test_reading_from_vars_exact_values() -> None:
    r = reading_from_vars({"ups.status": "OB DISCHRG", "battery.charge": "60", "battery.runtime": "1234",
                           "ups.load": "023.4", "input.voltage": "0.0", "device.model": "X1"})
    assert r.tokens == ["OB", "DISCHRG"] and r.battery_charge_pct == 60 and r.battery_runtime_s == 1234
    assert r.load_pct == 23.4 and r.input_voltage_v == 0.0 and r.model == "X1"


# -- battery driver ------------------------------------------------------------------
Batt = namedtuple("Batt", "percent secsleft power_plugged")


@pytest.fixture
def battery(build_driver: DriverBuilder) -> Callable[..., BatteryDriver]:
    """battery(**options) -> a BatteryDriver built through the config loader."""
    return build_driver.maker(BatteryDriver, "batt", "battery")


def test_battery_absent(battery: Callable[..., BatteryDriver], mocker) -> None:
    mocker.patch("psutil.sensors_battery", return_value=None)
    r = battery().status()
    assert (r.status, r.code) == (Status.UNKNOWN, "BATTERY_NOT_PRESENT")


def test_battery_on_mains(battery: Callable[..., BatteryDriver], mocker) -> None:
    mocker.patch("psutil.sensors_battery", return_value=Batt(87.0, psutil.POWER_TIME_UNLIMITED, True))
    r = battery().status()
    assert (r.status, r.code) == (Status.OK, "UPS_OK")
    assert r.fields["battery_charge_pct"] == 87.0 and r.fields["battery_runtime_s"] is None
    assert r.fields["on_battery"] is False and r.fields["ups_status"] == "OL"


def test_battery_unplugged_then_low(battery: Callable[..., BatteryDriver], mocker) -> None:
    mocker.patch("psutil.sensors_battery", return_value=Batt(55.0, 3600, False))
    r = battery().status()
    assert (r.status, r.code) == (Status.WARN, "UPS_ON_BATTERY")
    assert r.fields["battery_runtime_s"] == 3600 and r.fields["ups_status"] == "OB DISCHRG"
    mocker.patch("psutil.sensors_battery", return_value=Batt(15.0, psutil.POWER_TIME_UNKNOWN, False))
    r = battery(low_pct=20.0).status()
    assert (r.status, r.code) == (Status.FAIL, "UPS_BATTERY_LOW")
    assert r.fields["battery_low"] is True and r.fields["battery_runtime_s"] is None


def test_battery_options_validated(battery: Callable[..., BatteryDriver]) -> None:
    from posagent.config.errors import ConfigError

    with pytest.raises(ConfigError, match="low_pct"):
        battery(low_pct=150.0)


def test_battery_test_without_business_hours_is_skipped(build_driver: DriverBuilder) -> None:
    """No business hours anywhere: no time is known to be safe, so the test never runs."""
    from posagent.core.base import CheckContext, Level

    drv = build_driver.driver(MegatecDriver, device_entry("u", "megatec", "sim://megatec", {"battery_test": True}))
    check = next(c for c in drv.checks() if c.name == "battery_test")
    r = check.run(CheckContext(deadline=10**9, level=Level.EXTERNAL))
    assert r.code == "UPS_TEST_SKIPPED" and "no business hours" in r.message


def test_nut_identity_for_the_inventory_comes_from_upsds_variables() -> None:
    from posagent.drivers.nut import identity_from_vars

    v = {"ups.mfr": " APC ", "ups.model": "Back-UPS ES 700", "ups.firmware": "871.O4 .I",
         "device.serial": "3B1234X56789", "ups.status": "OL"}
    assert identity_from_vars(v) == {"maker": "APC", "model": "Back-UPS ES 700", "firmware": "871.O4 .I",
                                     "serial": "3B1234X56789"}
    assert identity_from_vars({"ups.status": "OL", "ups.mfr": "  "}) == dict.fromkeys(
        ("maker", "model", "firmware", "serial"))


@pytest.mark.parametrize("name, value", [("battery.charge", "250"), ("ups.load", "99999"),
                                         ("input.voltage", "1e300"), ("battery.runtime", "-5")])
def test_nut_absurd_readings_are_a_protocol_error_of_the_ups(name: str, value: str) -> None:
    """#18: a reading no UPS can make is UPS_PROTOCOL_ERROR (unknown), never a grade or DRIVER_ERROR."""
    from posagent.core.errors import DeviceError
    from posagent.drivers.nut import reading_from_vars

    with pytest.raises(DeviceError) as info:
        reading_from_vars({"ups.status": "OL", name: value})
    assert info.value.code == "UPS_PROTOCOL_ERROR" and name in str(info.value)
