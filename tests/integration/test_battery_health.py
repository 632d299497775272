"""UPS battery health through the CLI: the Megatec simulator on a real pty, its battery's
voltage drop under the ``T`` test growing with every test (``drop_growth_v``), tested by
``posagent selftest`` again and again -> BATTERY_AGED with the evidence; and a real NUT
``upsd`` (dummy-ups) whose ``battery.date`` is years old, or whose ``battery.runtime``
falls from test to test. Before any test the health is null, never 0."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from posagent.drivers import battery_health as bh
from posagent.drivers.simulator import SimHandle, start_sim
from tests.conftest import hours_window, run_cli
from tests.integration.nut_fixture import NutServer, nut_server, nut_shared_server, poll_until

__all__ = ["nut_server", "nut_shared_server"]  # fixtures, imported for pytest


@pytest.fixture
def ageing_ups() -> Iterator[SimHandle]:
    h = start_sim("megatec", {"test_seconds": "1", "drop_growth_v": "0.4"})
    yield h
    h.stop()


def _config(write_config: Callable[..., Path], tmp_path: Path, url: str) -> Path:
    return write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
                        f'[[device]]\nname = "ups"\ndriver = "megatec"\nurl = "{url}"\n'
                        f'[device.options]\nbattery_test = true\nbusiness_hours = "{hours_window(inside=False)}"\n')


def _selftest(cfg: Path) -> dict[str, Any]:
    proc = run_cli("selftest", "--json", "--config", str(cfg), "--only", "ups")
    assert "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    return {c["name"]: c for c in out["checks"]}


def _status(cfg: Path) -> dict[str, Any]:
    proc = run_cli("status", "--json", "--config", str(cfg))
    return dict(json.loads(proc.stdout)["devices"]["ups"])


def test_growing_voltage_drop_ages_the_battery(ageing_ups: SimHandle, write_config: Callable[..., Path],
                                               tmp_path: Path) -> None:
    cfg = _config(write_config, tmp_path, ageing_ups.url)
    dev = _status(cfg)
    assert dev["code"] == "UPS_OK" and dev["battery_health_pct"] is None  # no test yet: unknown, not 0
    drops = []
    for _ in range(2):  # the baseline: no trend yet
        test = _selftest(cfg)["battery_test"]
        assert test["code"] == "UPS_TEST_PASSED", test
        drops.append(test["measurements"]["battery_drop_test_v"])
    assert _status(cfg)["battery_health_pct"] is None
    for _ in range(3):
        test = _selftest(cfg)["battery_test"]
        drops.append(test["measurements"]["battery_drop_test_v"])
    assert ageing_ups.sim.tests_started == 5
    assert drops == sorted(drops) and drops[-1] - drops[0] == pytest.approx(4 * 0.4, abs=0.15)
    first, recent = (drops[0] + drops[1]) / 2, (drops[3] + drops[4]) / 2
    health = round(100 * first / recent, 1)
    assert test["code"] == "BATTERY_AGED" and test["status"] == "warn", test
    m = test["measurements"]
    assert m["battery_health_pct"] == pytest.approx(health, abs=0.2) and m["battery_tests"] == 5
    assert m["battery_drop_first_v"] == pytest.approx(first, abs=0.01)
    assert m["battery_drop_v"] == pytest.approx(recent, abs=0.01)
    assert f"grew from {first:.2f} V to {recent:.2f} V over 5 tests" in test["message"]
    assert test["hint"]
    # the status (and so the heartbeat) says it too, between tests
    dev = _status(cfg)
    assert (dev["status"], dev["code"]) == ("warn", "BATTERY_AGED")
    assert dev["battery_health_pct"] == m["battery_health_pct"]
    # ... and the table in Chinese shows the figures
    table = run_cli("status", "--config", str(cfg), "--lang", "zh-CN").stdout
    assert "BATTERY_AGED" not in table and str(m["battery_health_pct"]) in table
    # posagent history: the trend over the kept runs, in the table and in JSON
    hist = run_cli("history", "--config", str(cfg))
    assert hist.returncode == 0, hist.stderr
    trend = next(line for line in hist.stdout.splitlines() if "battery health" in line)
    assert trend.split()[0] == "ups" and "3 runs" in trend
    assert f"-> {m['battery_health_pct']:g}" in trend
    series = json.loads(run_cli("history", "--json", "--config", str(cfg)).stdout)["forecasts"]["ups"]
    assert [p["value"] for p in series["battery_health_pct"]][-1] == m["battery_health_pct"]
    assert len(series["battery_health_pct"]) == 3  # the first two runs had no trend yet: no value, not 0


def test_heartbeat_without_battery_tests_has_null_health(write_config: Callable[..., Path], tmp_path: Path,
                                                         ageing_ups: SimHandle) -> None:
    cfg = _config(write_config, tmp_path, ageing_ups.url)
    proc = run_cli("heartbeat", "--json", "--config", str(cfg))
    assert proc.returncode in (0, 1), proc.stderr
    hb = json.loads(proc.stdout)
    schema = json.loads((Path(__file__).parents[2] / "config" / "schemas" / "heartbeat.json").read_text())
    jsonschema.validate(hb, schema)
    assert hb["devices"]["ups"]["battery_health_pct"] is None


# -- NUT: a real upsd with dummy-ups ---------------------------------------------------
def _nut_config(write_config: Callable[..., Path], tmp_path: Path, url: str) -> Path:
    # dummy-ups has no test.battery.start.quick: an instant command it does have stands in
    return write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
                        f'[[device]]\nname = "ups"\ndriver = "nut"\nurl = "{url}"\n'
                        f'[device.options]\nbattery_test = true\nlogin = false\ntest_command = "load.off"\n'
                        f'business_hours = "{hours_window(inside=False)}"\n')


def test_nut_battery_date_years_ago_is_aged(nut_server: NutServer, write_config: Callable[..., Path],
                                           tmp_path: Path) -> None:
    cfg = _nut_config(write_config, tmp_path, nut_server.url())
    dev = _status(cfg)
    assert dev["code"] == "UPS_OK" and dev["battery_health_pct"] is None  # no date, no test: unknown
    assert "battery_age_years" not in dev.get("measurements", {})
    nut_server.set_state({"battery.date": '"2019/03/15"', "battery.mfr.date": '"2018/11/02"'})
    poll_until(lambda: nut_server.get_var("battery.date") == "2019/03/15", 15.0, "battery.date")
    dev = _status(cfg)
    assert (dev["status"], dev["code"]) == ("warn", "BATTERY_AGED"), dev
    assert "installed" in dev["message"] and "2019-03-15" in dev["message"]
    assert dev["measurements"]["battery_age_years"] >= 7.0
    assert dev["battery_health_pct"] is None  # an age alone says nothing of the capacity


def test_nut_runtime_falling_across_tests(nut_server: NutServer, write_config: Callable[..., Path],
                                         tmp_path: Path) -> None:
    cfg = _nut_config(write_config, tmp_path, nut_server.url(auth="admin:adminpw"))
    for runtime in ("1200", "1200", "900", "600"):
        nut_server.set_state({"battery.runtime": runtime})
        poll_until(lambda r=runtime: nut_server.get_var("battery.runtime") == r, 15.0, "battery.runtime")
        test = _selftest(cfg)["battery_test"]
    # baseline 1200 s, recent (900 + 600) / 2 = 750 s at the same load: 62.5 %
    assert (test["status"], test["code"]) == ("warn", "BATTERY_AGED"), test
    assert test["measurements"]["battery_health_pct"] == 62.5
    assert "fell from 1200 s to 750 s over 4 tests" in test["message"]


# -- a new battery: posagent ups battery-changed ------------------------------------------
def test_battery_changed_sets_the_old_tests_aside_and_a_new_baseline_follows(
        ageing_ups: SimHandle, write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = _config(write_config, tmp_path, ageing_ups.url)
    log = bh.BatteryLog(bh.log_path(str(tmp_path / "state"), "ups"))
    for k, drop in enumerate((0.5, 0.5, 1.0, 1.5)):  # an old battery's history: 40 % now
        log.add(bh.BatteryTest(at_unix=1_700_000_000.0 + 86400 * k, drop_v=drop))
    dev = _status(cfg)
    assert (dev["code"], dev["battery_health_pct"]) == ("BATTERY_AGED", 40.0), dev

    proc = run_cli("ups", "battery-changed", "ups", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "4 test(s), last health ~40 %" in proc.stdout
    dev = _status(cfg)
    assert (dev["code"], dev["battery_health_pct"]) == ("UPS_OK", None), dev  # a new battery: unknown, not aged
    shown = json.loads(run_cli("ups", "battery", "ups", "--config", str(cfg)).stdout)
    assert shown["tests"] == [] and shown["replaced"] == {"tests": 4, "health_pct": 40.0} and shown["changed_at"]

    for _ in range(3):  # the new battery's own baseline, then a trend against it
        test = _selftest(cfg)["battery_test"]
    assert test["measurements"]["battery_tests"] == 3 and test["measurements"]["battery_health_pct"] is not None
    kept = json.loads(run_cli("ups", "battery", "ups", "--config", str(cfg)).stdout)
    assert len(kept["tests"]) == 3 and kept["replaced"]["tests"] == 4  # the record of the change is kept

    for args in (["battery-changed", "nosuch"], ["battery"], []):
        bad = run_cli("ups", *args, "--config", str(cfg))
        assert bad.returncode == 64 and "Traceback" not in bad.stderr, (args, bad.stderr)


def test_nut_battery_changed_restarts_the_age(nut_server: NutServer, write_config: Callable[..., Path],
                                              tmp_path: Path) -> None:
    cfg = _nut_config(write_config, tmp_path, nut_server.url())
    nut_server.set_state({"battery.date": '"2019/03/15"'})
    poll_until(lambda: nut_server.get_var("battery.date") == "2019/03/15", 15.0, "battery.date")
    assert _status(cfg)["code"] == "BATTERY_AGED"
    proc = run_cli("ups", "battery-changed", "ups", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    dev = _status(cfg)  # the UPS still says 2019: the day of the change recorded here is later, and wins
    assert (dev["status"], dev["code"]) == ("ok", "UPS_OK"), dev
    assert dev["measurements"]["battery_age_years"] == 0.0
