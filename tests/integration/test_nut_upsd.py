"""The nut driver against a real upsd + dummy-ups on 127.0.0.1 (see nut_fixture.py):
values exactly as upsd serves them through ``posagent status --json``, state changes
(on battery, low battery), DATA-STALE (driver frozen), DRIVER-NOT-CONNECTED (driver
killed), unknown UPS name, upsd down, login, STARTTLS and the battery test command."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest

from posagent.core.base import CheckContext, Level, Result, Status
from posagent.drivers.nut import NutDriver, NutError, UpsdClient
from posagent.selftest.runner import call_with_timeout
from tests.conftest import DriverBuilder, free_port, hours_window, run_cli
from tests.integration.nut_fixture import (
    MAXAGE,
    NutServer,
    nut_private_server,
    nut_server,
    nut_shared_server,
    poll_until,
)

__all__ = ["nut_private_server", "nut_server", "nut_shared_server"]  # fixtures, imported for pytest


@pytest.fixture
def driver(build_driver: DriverBuilder) -> Callable[..., NutDriver]:
    """driver(url, **options) -> a NutDriver built through the config loader."""
    return build_driver.maker(NutDriver, "ups", "nut")


def status(drv: NutDriver) -> Result:
    return call_with_timeout(drv.status, 10.0, "ups.status")


def cli_status(write_config, url: str) -> tuple[int, dict]:
    cfg = write_config(f'[[device]]\nname = "ups"\ndriver = "nut"\nurl = "{url}"\n')
    proc = run_cli("status", "--json", "--config", str(cfg))
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)["devices"]["ups"]


def test_cli_shows_values_exactly_on_mains(nut_server: NutServer, write_config) -> None:
    rc, dev = cli_status(write_config, nut_server.url())
    assert (rc, dev["status"], dev["code"]) == (0, "ok", "UPS_OK"), dev
    assert dev["ups_status"] == "OL CHRG" and dev["on_battery"] is False and dev["battery_low"] is False
    assert dev["battery_charge_pct"] == 87 and dev["battery_runtime_s"] == 1234
    assert dev["load_pct"] == 23.4 and dev["input_voltage_v"] == 230.4
    assert dev["model"] == 'A "quoted" back\\slash'  # unquoted and unescaped exactly
    assert dev["measurements"]["battery_voltage_v"] == 26.1
    assert "battery_charge_estimated" not in dev["measurements"]  # the UPS's own figure


def test_cli_follows_on_battery_then_low_battery(nut_server: NutServer, write_config) -> None:
    nut_server.set_state({"ups.status": '"OB DISCHRG"', "battery.charge": "60", "battery.runtime": "615",
                          "input.voltage": "0.0"})
    rc, dev = cli_status(write_config, nut_server.url())
    assert (rc, dev["status"], dev["code"]) == (1, "warn", "UPS_ON_BATTERY"), dev
    assert (dev["ups_status"], dev["on_battery"], dev["battery_low"]) == ("OB DISCHRG", True, False)
    assert (dev["battery_charge_pct"], dev["battery_runtime_s"], dev["input_voltage_v"]) == (60, 615, 0.0)

    nut_server.set_state({"ups.status": '"OB DISCHRG LB"', "battery.charge": "8", "battery.runtime": "95"})
    rc, dev = cli_status(write_config, nut_server.url())
    assert (rc, dev["status"], dev["code"]) == (2, "fail", "UPS_BATTERY_LOW"), dev
    assert (dev["ups_status"], dev["on_battery"], dev["battery_low"]) == ("OB DISCHRG LB", True, True)
    assert (dev["battery_charge_pct"], dev["battery_runtime_s"]) == (8, 95)

    nut_server.set_state({"ups.status": '"OL RB"', "battery.charge": "100.0"})
    rc, dev = cli_status(write_config, nut_server.url())
    assert (dev["code"], dev["ups_status"], dev["battery_charge_pct"]) == ("UPS_REPLACE_BATTERY", "OL RB", 100.0)


def test_cli_unknown_ups_name(nut_server: NutServer, write_config) -> None:
    rc, dev = cli_status(write_config, nut_server.url("nosuch"))
    assert (rc, dev["status"], dev["code"]) == (3, "unknown", "UPS_UNKNOWN_NAME"), dev
    assert "nosuch" in dev["message"] and "dummy" in dev["message"]  # names what upsd has


def test_data_stale_when_the_driver_freezes(nut_private_server: NutServer, driver: Callable[..., NutDriver],
                                            write_config) -> None:
    nut_server = nut_private_server
    drv = driver(nut_server.url())
    assert status(drv).code == "UPS_OK"
    nut_server.signal_driver(signal.SIGSTOP)
    r = poll_until(lambda: (res := status(drv)).code == "UPS_DATA_STALE" and res, MAXAGE + 10.0, "DATA-STALE",
                   interval=0.25)
    assert r.status == Status.UNKNOWN and "stale" in r.message
    rc, dev = cli_status(write_config, nut_server.url())
    assert (rc, dev["status"], dev["code"]) == (3, "unknown", "UPS_DATA_STALE"), dev
    nut_server.signal_driver(signal.SIGCONT)
    poll_until(lambda: status(drv).code == "UPS_OK", MAXAGE + 10.0, "recovery after SIGCONT", interval=0.25)


def test_driver_killed_is_driver_not_connected(nut_private_server: NutServer, driver: Callable[..., NutDriver]) -> None:
    drv = driver(nut_private_server.url())
    p = nut_private_server.procs["driver"]
    p.terminate()
    p.wait(10)
    r = poll_until(lambda: (res := status(drv)).code == "UPS_DRIVER_NOT_CONNECTED" and res, 10.0,
                   "DRIVER-NOT-CONNECTED", interval=0.1)
    assert r.status == Status.UNKNOWN and "not connected" in r.message


def test_upsd_down_is_unreachable(driver: Callable[..., NutDriver]) -> None:
    t0 = time.monotonic()
    r = status(driver(f"nut://127.0.0.1:{free_port()}/ups"))
    assert (r.status, r.code) == (Status.UNKNOWN, "UPSD_UNREACHABLE") and "refused" in r.message
    assert time.monotonic() - t0 < 3.0


def test_login(nut_server: NutServer, driver: Callable[..., NutDriver]) -> None:
    assert status(driver(nut_server.url(auth="monuser:secret"))).code == "UPS_OK"
    r = status(driver(nut_server.url(auth="monuser:wrong")))
    assert (r.status, r.code) == (Status.UNKNOWN, "UPS_ACCESS_DENIED") and "ACCESS-DENIED" in r.message
    # admin has no upsmon line: LOGIN is refused, and login = false reads without it.
    assert status(driver(nut_server.url(auth="admin:adminpw"))).code == "UPS_ACCESS_DENIED"
    assert status(driver(nut_server.url(auth="admin:adminpw"), login=False)).code == "UPS_OK"


def test_starttls_not_configured_is_clear(nut_server: NutServer, driver: Callable[..., NutDriver]) -> None:
    r = status(driver(nut_server.url(), starttls=True))
    assert (r.status, r.code) == (Status.UNKNOWN, "UPSD_TLS_UNAVAILABLE")
    assert "FEATURE-NOT-CONFIGURED" in r.message and "starttls = false" in r.message


def test_client_get_var_and_errors(nut_server: NutServer) -> None:
    c = UpsdClient("127.0.0.1", nut_server.port, 5.0)
    c.connect()
    try:
        assert c.get_var("dummy", "ups.status") == "OL CHRG"
        assert c.get_var("dummy", "ups.model") == 'A "quoted" back\\slash'
        with pytest.raises(NutError) as info:
            c.get_var("dummy", "no.such.var")
        assert info.value.token == "VAR-NOT-SUPPORTED"
        with pytest.raises(NutError) as info:
            c.get_var("nosuch", "ups.status")
        assert (info.value.token, info.value.code) == ("UNKNOWN-UPS", "UPS_UNKNOWN_NAME")
        assert c.list_ups() == {"dummy": "Loopback test UPS"}
    finally:
        c.close()


def _battery_test(drv: NutDriver) -> Result:
    check = next(c for c in drv.checks() if c.name == "battery_test")
    assert check.level == Level.EXTERNAL
    return check.run(CheckContext(deadline=time.monotonic() + 10.0, level=Level.EXTERNAL))


def test_battery_test_instcmd(nut_server: NutServer, driver: Callable[..., NutDriver]) -> None:
    admin = nut_server.url(auth="admin:adminpw")
    outside = {"battery_test": True, "business_hours": hours_window(inside=False), "login": False}
    # dummy-ups has no test.battery.start.quick: upsd says so, and so do we.
    r = _battery_test(driver(admin, **outside))
    assert (r.status, r.code) == (Status.UNKNOWN, "UPS_TEST_NOT_SUPPORTED") and "CMD-NOT-SUPPORTED" in r.message
    # An instant command dummy-ups does have: upsd accepts the INSTCMD.
    r = _battery_test(driver(admin, test_command="load.off", **outside))
    assert (r.status, r.code) == (Status.OK, "UPS_TEST_STARTED"), r.message
    # No user: INSTCMD needs one.
    r = _battery_test(driver(nut_server.url(), **outside))
    assert r.code == "UPS_ACCESS_DENIED"
    # Inside business hours: not run.
    inside = {**outside, "business_hours": hours_window(inside=True)}
    assert _battery_test(driver(admin, **inside)).code == "UPS_TEST_SKIPPED"


def test_battery_test_never_on_low_battery(nut_server: NutServer, driver: Callable[..., NutDriver]) -> None:
    nut_server.set_state({"ups.status": '"OB DISCHRG LB"', "battery.charge": "8"})
    r = _battery_test(driver(nut_server.url(auth="admin:adminpw"), battery_test=True,
                             business_hours=hours_window(inside=False), login=False, test_command="load.off"))
    assert (r.status, r.code) == (Status.FAIL, "UPS_BATTERY_LOW") and "not run" in r.message
