"""The paper forecast (escpos/forecast.py): remaining share, near-end calibration, days left."""

from __future__ import annotations

import datetime as dt

from posagent.drivers.escpos import forecast

TODAY = dt.date(2026, 12, 5)


def test_roll_lengths() -> None:
    assert forecast.roll_length_mm(0, 80) == 80_000 and forecast.roll_length_mm(0, 58) == 40_000
    assert forecast.roll_length_mm(25, 80) == 25_000


def test_remaining_and_the_near_end_sensor_calibrates() -> None:
    assert forecast.remaining_pct(20_000, 80_000, near_end=False) == 75.0
    assert forecast.remaining_pct(20_000, 80_000, near_end=True) == forecast.NEAR_END_PCT  # the sensor wins
    assert forecast.remaining_pct(100_000, 80_000, near_end=False) == 0.0


def test_usage_weighs_recent_days_and_counts_idle_days() -> None:
    steady = {(TODAY - dt.timedelta(days=k)).isoformat(): 4000.0 for k in range(10)}
    assert forecast.usage_per_day(steady, TODAY) == 4000.0
    idle = {(TODAY - dt.timedelta(days=3)).isoformat(): 4000.0}  # one busy day three days ago, then nothing
    assert forecast.usage_per_day(idle, TODAY) == 4000.0 * 0.7**3
    assert forecast.usage_per_day({}, TODAY) is None


def test_days_left() -> None:
    assert forecast.days_left(50.0, 80_000, 4000.0) == 10.0
    assert forecast.days_left(50.0, 80_000, None) is None and forecast.days_left(50.0, 80_000, 0.0) is None
