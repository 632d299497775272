"""The paper forecast (escpos/forecast.py): remaining share, near-end calibration, days left."""

from __future__ import annotations

import datetime as dt

import pytest

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
    assert forecast.usage_per_day(idle, TODAY) == pytest.approx(4000.0 * 0.7**2)  # two idle days since
    assert forecast.usage_per_day({}, TODAY) is None


def day(k: int) -> str:
    return (TODAY - dt.timedelta(days=k)).isoformat()


def test_today_so_far_is_a_lower_bound_not_a_day() -> None:
    history = {day(k): 4000.0 for k in range(1, 10)}
    # the morning after nine days of 4 m: the usage (and so the days left) stays what it was last night
    for so_far in (0.0, 500.0, 4000.0):
        assert forecast.usage_per_day({**history, day(0): so_far}, TODAY) == 4000.0
    assert forecast.usage_per_day(history, TODAY) == 4000.0
    # a day already busier than usual counts at once
    assert forecast.usage_per_day({**history, day(0): 9000.0}, TODAY) == pytest.approx(0.3 * 9000 + 0.7 * 4000)
    # the first day on record: what it printed so far is all there is
    assert forecast.usage_per_day({day(0): 700.0}, TODAY) == 700.0
    # and the days left follow: the morning does not stretch the roll
    assert forecast.days_left(50.0, 80_000, forecast.usage_per_day({**history, day(0): 0.0}, TODAY)) == 10.0


def test_days_left() -> None:
    assert forecast.days_left(50.0, 80_000, 4000.0) == 10.0
    assert forecast.days_left(50.0, 80_000, None) is None and forecast.days_left(50.0, 80_000, 0.0) is None
