"""Disruptive tests (a UPS battery test) run only outside business hours and blackout
dates, taken from [schedule] unless a device overrides them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from posagent.config.loader import validate
from posagent.core.base import DriverEnv
from posagent.core.values import parse_hour_range
from posagent.selftest.devices import DeviceSet

NOON = dt.datetime(2027, 3, 1, 12, 0)
NIGHT = dt.datetime(2027, 3, 1, 2, 30)


def env(**kw: object) -> DriverEnv:
    return DriverEnv(state_dir="/nonexistent", terminal_id="T", **kw)  # type: ignore[arg-type]


def test_no_hours_known_is_never_safe() -> None:
    assert "no business hours" in (env().quiet_time_refusal(now=NIGHT) or "")


def test_schedule_window_and_blackout() -> None:
    e = env(business_hours=parse_hour_range("08:00-22:00"), blackout_dates=(NIGHT.date(),))
    assert "inside business hours 08:00-22:00" in (e.quiet_time_refusal(now=NOON + dt.timedelta(days=1)) or "")
    assert "blackout" in (e.quiet_time_refusal(now=NIGHT) or "")
    assert e.quiet_time_refusal(now=NIGHT + dt.timedelta(days=1)) is None


def test_device_override_wins() -> None:
    e = env(business_hours=parse_hour_range("08:00-22:00"))
    assert e.quiet_time_refusal(parse_hour_range("00:00-03:00"), now=NIGHT) is not None
    assert e.quiet_time_refusal(parse_hour_range("00:00-01:00"), now=NIGHT) is None


def test_device_set_passes_the_schedule(tmp_path: Path) -> None:
    cfg = validate({"agent": {"state_dir": str(tmp_path)},
                    "schedule": {"business_hours": "09:00-18:00", "blackout_dates": ["2027-02-06"]},
                    "device": [{"name": "ups", "driver": "megatec", "url": "sim://megatec",
                                "options": {"battery_test": True}}]}, "t.toml")
    ds = DeviceSet(cfg)
    assert str(ds.env.business_hours) == "09:00-18:00"
    assert ds.env.blackout_dates == (dt.date(2027, 2, 6),)
