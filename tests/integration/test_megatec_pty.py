"""The megatec driver over real pseudo-terminals: every simulator knob, the battery test,
reopen after a dropped link, and an independent emulator in its own process (a UPS the
tests do not control) through the real ``posagent status --json``."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.core.base import CheckContext, Level, Result, Status
from posagent.drivers.megatec import MegatecDriver
from posagent.drivers.simulator import ByteSimulator, SimHandle, start_sim
from posagent.drivers.ups_common import FIELD_NAMES
from posagent.selftest.runner import Runner
from tests.conftest import REPO, DriverBuilder, device_entry, device_set, hours_window, run_cli

EMULATOR = Path(__file__).with_name("independent_ups.py")


@pytest.fixture
def make(build_driver: DriverBuilder) -> Callable[..., MegatecDriver]:
    """make(url, **options) -> a MegatecDriver built from config, closed at the end."""
    return build_driver.maker(MegatecDriver, "ups", "megatec", timeout="5s")


@pytest.fixture
def sim() -> Iterator[Any]:
    """sim(**knobs) -> a running MegatecSim's handle; the driver reaches it by serial URL."""
    handles: list[SimHandle] = []

    def start(**knobs: Any) -> SimHandle:
        h = start_sim("megatec", {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in knobs.items()})
        handles.append(h)
        return h

    yield start
    for h in handles:
        h.stop()


def status_of(drv: MegatecDriver) -> Result:
    """status() as the runner calls it (exceptions become results)."""
    from posagent.selftest.runner import call_with_timeout

    return call_with_timeout(drv.status, 5.0, "ups.status")


def test_default_on_mains_and_port_kept_open(make, sim) -> None:
    h = sim()
    drv = make(h.url)
    r = status_of(drv)
    assert (r.status, r.code) == (Status.OK, "UPS_OK"), r.message
    assert set(r.fields) == {*FIELD_NAMES, "ups_type"}  # a word, so a field, not a measurement
    f = r.fields
    assert (f["on_battery"], f["battery_low"], f["ups_status"]) == (False, False, "OL")
    assert (f["battery_charge_pct"], f["input_voltage_v"], f["load_pct"]) == (100.0, 230.0, 23.0)
    assert f["battery_runtime_s"] is None  # Megatec gives no runtime: absent, not 0
    assert f["model"] == "SIMPOWER SIM-650VA"
    assert r.measurements["battery_charge_estimated"] is True and "~100 %" in r.message
    assert drv._link.stream is not None and drv._link.stream._owner.baudrate == 2400  # 2400 8N1 by default
    assert status_of(drv).code == "UPS_OK"
    # F and I once per opened port, then Q1 only; the port stayed open.
    assert h.sim.commands == [b"Q1", b"F", b"I", b"Q1"]


@pytest.mark.parametrize(("knobs", "status", "code", "expect"), [
    ({"on_battery": True}, Status.WARN, "UPS_ON_BATTERY",
     {"on_battery": True, "battery_low": False, "ups_status": "OB", "input_voltage_v": 0.0}),
    ({"on_battery": True, "battery_low": True}, Status.FAIL, "UPS_BATTERY_LOW",
     {"on_battery": True, "battery_low": True, "ups_status": "OB LB", "battery_charge_pct": 10.0}),
    ({"battery_low": True}, Status.FAIL, "UPS_BATTERY_LOW", {"on_battery": False, "ups_status": "OL LB"}),
    ({"overload": True}, Status.FAIL, "UPS_OVERLOAD", {"load_pct": 105.0, "ups_status": "OL"}),
    ({"fault": True}, Status.FAIL, "UPS_FAULT", {"ups_status": "OL ALARM"}),
    ({"odd_spacing": True}, Status.OK, "UPS_OK", {"ups_status": "OL", "load_pct": 23.0, "input_voltage_v": 230.0}),
    ({"ups_type": "online", "battery_pct": 50}, Status.OK, "UPS_OK", {"ups_status": "OL"}),
    ({"latency_ms": 300}, Status.OK, "UPS_OK", {"ups_status": "OL"}),
    ({"identity": False}, Status.OK, "UPS_OK", {"model": None}),
])
def test_knobs(make, sim, knobs: dict, status: Status, code: str, expect: dict) -> None:
    r = status_of(make(sim(**knobs).url))
    assert (r.status, r.code) == (status, code), r.message
    for key, value in expect.items():
        assert r.fields[key] == value, (key, r.fields)


@pytest.mark.parametrize("pct", [0, 12, 45, 73, 100])
def test_battery_pct_round_trips_through_the_voltage(make, sim, pct: int) -> None:
    # The sim prints the voltage with 0.1 V resolution on a 5.2 V span: within 1 %.
    r = status_of(make(sim(battery_pct=pct).url))
    assert abs(r.fields["battery_charge_pct"] - pct) <= 1.0, r.fields
    assert r.measurements["battery_charge_estimated"] is True


def test_online_unit_per_cell_voltage_pack_detection(make, sim) -> None:
    r = status_of(make(sim(ups_type="online", battery_pct=50).url))
    assert r.fields["ups_type"] == "online"
    assert abs(r.fields["battery_charge_pct"] - 50) <= 2.5  # 0.01 V/cell x 12 cells resolution
    assert 23.0 < r.measurements["battery_voltage_v"] < 23.8  # 12 cells x ~1.95 V


def test_no_rating_means_no_charge_unless_configured(make, sim) -> None:
    r = status_of(make(sim(rating=False, battery_pct=45).url))
    assert r.code == "UPS_OK" and r.fields["battery_charge_pct"] is None  # unknown, never 0
    r = status_of(make(sim(rating=False, battery_pct=45).url, battery_voltage_nominal=24.0))
    assert abs(r.fields["battery_charge_pct"] - 45) <= 1.0
    r = status_of(make(sim(battery_pct=50).url, battery_voltage_low=22.0, battery_voltage_high=24.0))
    assert r.fields["battery_charge_pct"] == 70.0  # 23.4 V on a 22-24 V range


class Q1Only(ByteSimulator):
    """A healthy UPS that answers Q1 and nothing else: F and I get no reply at all."""

    family = "q1-only"

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.commands: list[bytes] = []
        self._pending = b""

    def on_bytes(self, data: bytes) -> bytes:
        *lines, self._pending = (self._pending + data).split(b"\r")
        self.commands += lines
        return b"".join(b"(230.1 230.1 229.8 021 50.0 25.0 24.0 00001001\r" for line in lines if line == b"Q1")


def test_q1_only_ups_costs_the_f_wait_once(make, tmp_path: Path) -> None:
    """F and I are not on the status path's critical wait: the first status of a UPS that
    ignores them waits at most one short info_timeout (not F's and I's reply timeouts),
    and the silence is remembered: later statuses, and a new driver (process), ask only Q1."""
    ups = Q1Only()
    handle = ups.start()
    reply = 2.0  # reply_timeout: a status must never wait it out on this healthy unit
    try:
        drv = make(handle.url, reply_timeout=f"{reply}s")  # info_timeout: its default, 0.3 s
        t0 = time.monotonic()
        r = status_of(drv)
        assert time.monotonic() - t0 < reply
        assert (r.status, r.code) == (Status.OK, "UPS_OK"), r.message
        assert r.fields["battery_charge_pct"] is None and r.fields["model"] is None  # no F: no estimate
        assert ups.commands == [b"Q1", b"F"]  # I is not asked after F went unanswered
        for other in (drv, make(handle.url, reply_timeout=f"{reply}s")):
            t0 = time.monotonic()
            assert status_of(other).code == "UPS_OK"
            assert time.monotonic() - t0 < reply
        assert ups.commands == [b"Q1", b"F", b"Q1", b"Q1"]
        memo = json.loads((tmp_path / "ups-ups.json").read_text())
        assert memo["silent"] == "F"
        # A configured nominal voltage gives the estimate without F.
        r = status_of(make(handle.url, battery_voltage_nominal=24.0))
        assert r.fields["battery_charge_pct"] == 81.0  # (25.0 - 20.8) / 5.2
    finally:
        handle.stop()


def test_unit_answering_f_and_i_forgets_an_old_silence(make, sim, tmp_path: Path) -> None:
    (tmp_path / "ups-ups.json").write_text(json.dumps({"silent": "I", "asked_unix": time.time()}))
    h = sim()
    r = status_of(make(h.url))
    assert r.fields["battery_charge_pct"] == 100.0 and r.fields["model"] is None  # I remembered silent
    assert h.sim.commands == [b"Q1", b"F"]
    (tmp_path / "ups-ups.json").write_text(json.dumps({"silent": "F", "asked_unix": time.time() - 7200}))
    r = status_of(make(h.url))
    assert r.fields["model"] == "SIMPOWER SIM-650VA" and h.sim.commands[2:] == [b"Q1", b"F", b"I"]
    assert not (tmp_path / "ups-ups.json").exists()  # everything answered: nothing to remember


def test_no_answer_is_unknown_not_ok(make, sim) -> None:
    drv = make(sim(no_answer=True).url, reply_timeout=0.5)
    t0 = time.monotonic()
    r = status_of(drv)
    assert (r.status, r.code) == (Status.UNKNOWN, "UPS_NO_RESPONSE")
    assert time.monotonic() - t0 < 2.0


def test_garbage_is_a_protocol_error_not_a_number(make, sim) -> None:
    r = status_of(make(sim(garbage=True).url))
    assert (r.status, r.code) == (Status.UNKNOWN, "UPS_PROTOCOL_ERROR")
    assert "\\xb3" in r.message and not r.fields


def test_dropped_link_is_unknown_then_reopened(make, sim) -> None:
    h = sim(drop_after_bytes=10)  # Q1 F I = 7 bytes, the next Q1 reaches 10: hang up
    drv = make(h.url)
    assert status_of(drv).code == "UPS_OK"
    r = status_of(drv)
    assert r.status == Status.UNKNOWN and r.code in ("UPS_NO_RESPONSE", "DEVICE_IO_ERROR", "DEVICE_NOT_FOUND")
    # A sim:// URL reopens onto a fresh simulator: the driver recovers by itself.
    drv = make("sim://megatec?drop_after_bytes=10")
    codes = [status_of(drv).code for _ in range(3)]
    assert codes == ["UPS_OK"] * 3


def _run_test(drv: MegatecDriver) -> Result:
    check = next(c for c in drv.checks() if c.name == "battery_test")
    assert check.level == Level.EXTERNAL
    ctx = CheckContext(deadline=time.monotonic() + (check.timeout or 30.0), level=Level.EXTERNAL)
    return check.run(ctx)


def test_battery_test_outside_business_hours(make, sim) -> None:
    h = sim(test_seconds=1)
    drv = make(h.url, battery_test=True, business_hours=hours_window(inside=False))
    r = _run_test(drv)
    assert (r.status, r.code) == (Status.OK, "UPS_TEST_PASSED"), r.message
    assert h.sim.tests_started == 1 and b"T" in h.sim.commands
    assert r.measurements["battery_voltage_min_v"] < r.measurements["battery_voltage_before_v"]


def test_battery_test_weak_battery_fails(make, sim) -> None:
    h = sim(test_seconds=1, weak_battery=True)
    r = _run_test(make(h.url, battery_test=True, business_hours=hours_window(inside=False)))
    assert (r.status, r.code) == (Status.FAIL, "UPS_TEST_FAILED"), r.message


def test_battery_test_unsupported_or_unconfirmed(make, sim) -> None:
    h = sim(no_test=True)
    r = _run_test(make(h.url, battery_test=True, business_hours=hours_window(inside=False)))
    assert (r.status, r.code) == (Status.UNKNOWN, "UPS_TEST_NOT_SUPPORTED"), r.message
    h = sim(test_seconds=0)  # accepts T, never shows a test in progress
    r = _run_test(make(h.url, battery_test=True, business_hours=hours_window(inside=False)))
    assert (r.status, r.code) == (Status.UNKNOWN, "UPS_TEST_NOT_CONFIRMED"), r.message
    assert h.sim.tests_started == 1


@pytest.mark.parametrize(("knobs", "inside", "code"), [
    ({}, True, "UPS_TEST_SKIPPED"),
    ({"battery_low": True}, False, "UPS_BATTERY_LOW"),
    ({"on_battery": True}, False, "UPS_ON_BATTERY"),
])
def test_battery_test_not_run(make, sim, knobs: dict, inside: bool, code: str) -> None:
    h = sim(test_seconds=1, **knobs)
    r = _run_test(make(h.url, battery_test=True, business_hours=hours_window(inside=inside)))
    assert r.code == code and "not run" in r.message
    assert h.sim.tests_started == 0 and b"T" not in h.sim.commands


def test_battery_test_is_not_offered_by_default(make) -> None:
    assert [c.name for c in make("sim://megatec").checks()] == ["status"]


def test_device_json_matches_the_heartbeat_schema(make, sim) -> None:
    import jsonschema

    from posagent.selftest.render import device_json

    schema = json.loads((REPO / "config" / "schemas" / "heartbeat.json").read_text())
    device_schema = {"$ref": "#/$defs/device", "$defs": schema["$defs"]}
    for knobs in ({}, {"on_battery": True, "battery_low": True}, {"garbage": True}, {"rating": False}):
        r = status_of(make(sim(**knobs).url))
        jsonschema.validate(device_json("megatec", r), device_schema)


def test_runner_maps_everything(tmp_path: Path) -> None:
    with device_set(tmp_path, device_entry("a", "megatec", "sim://megatec"),
                    device_entry("b", "megatec", "sim://megatec?garbage=true"),
                    device_entry("c", "megatec", "sim://megatec?on_battery=true&battery_low=true")) as devices:
        out = Runner(devices).status()
    assert {n: r.code for n, (_d, r) in out.items()} == {"a": "UPS_OK", "b": "UPS_PROTOCOL_ERROR",
                                                         "c": "UPS_BATTERY_LOW"}


# -- an independent emulator in its own process -----------------------------------------
@pytest.fixture
def emulator() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> str:
        p = subprocess.Popen([sys.executable, str(EMULATOR), *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 10.0)
        assert ready, "independent UPS emulator did not start within 10 s"
        line = p.stdout.readline().split()
        assert line[:1] == ["READY"], line
        return line[1]

    yield start
    for p in procs:
        p.terminate()
        p.wait(5)


def _cli_status(write_config, path: str) -> tuple[int, dict]:
    cfg = write_config(f'[[device]]\nname = "ups"\ndriver = "megatec"\nurl = "serial://{path}"\n')
    proc = run_cli("status", "--json", "--config", str(cfg))
    return proc.returncode, json.loads(proc.stdout)["devices"]["ups"]


def test_independent_emulator_on_mains(emulator, write_config) -> None:
    rc, dev = _cli_status(write_config, emulator("--state", "mains"))
    assert (rc, dev["status"], dev["code"]) == (0, "ok", "UPS_OK")
    assert dev["ups_status"] == "OL" and dev["model"] == "INDEPENDENT IND-400"
    assert dev["battery_charge_pct"] == 100.0 and dev["input_voltage_v"] == 236.2 and dev["load_pct"] == 18.0


def test_independent_emulator_on_battery(emulator, write_config) -> None:
    rc, dev = _cli_status(write_config, emulator("--state", "on_battery"))
    assert (rc, dev["status"], dev["code"]) == (1, "warn", "UPS_ON_BATTERY")
    assert dev["on_battery"] is True and dev["battery_low"] is False and dev["ups_status"] == "OB"
    assert dev["battery_charge_pct"] == 69.0  # 12.2 V of 12 V nominal: (12.2-10.4)/2.6


def test_independent_emulator_battery_low(emulator, write_config) -> None:
    rc, dev = _cli_status(write_config, emulator("--state", "battery_low"))
    assert (rc, dev["status"], dev["code"]) == (2, "fail", "UPS_BATTERY_LOW")
    assert dev["on_battery"] is True and dev["battery_low"] is True and dev["ups_status"] == "OB LB"


def test_independent_emulator_junk_is_a_protocol_error(emulator, write_config) -> None:
    rc, dev = _cli_status(write_config, emulator("--junk"))
    assert (rc, dev["status"], dev["code"]) == (3, "unknown", "UPS_PROTOCOL_ERROR")
    assert "battery_charge_pct" not in dev and "load_pct" not in dev  # no number made up from junk
    assert "23O.1" in dev["message"]  # the raw line is in the message
