"""The battery health model: baseline against recent tests, the age, bounds of the log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from posagent.core.base import Result, Status
from posagent.drivers import battery_health as bh


def drop_tests(drops: list[float]) -> list[bh.BatteryTest]:
    return [bh.BatteryTest(1_700_000_000.0 + i, drop_v=d) for i, d in enumerate(drops)]


def test_no_trend_before_the_baseline_is_complete() -> None:
    for drops in ([], [0.5], [0.5, 0.9]):
        h = bh.assess(drop_tests(drops), aged_pct=70)
        assert h.health_pct is None and not h.aged and "battery_health_pct" not in h.measurements


def test_health_is_the_baseline_drop_over_the_recent_drop() -> None:
    h = bh.assess(drop_tests([0.5, 0.7, 1.0, 1.4]), aged_pct=70)
    assert h.health_pct == round(100 * 0.6 / 1.2, 1) and h.aged
    assert "grew from 0.60 V to 1.20 V over 4 tests" in h.evidence
    steady = bh.assess(drop_tests([0.5, 0.5, 0.45]), aged_pct=70)
    assert steady.health_pct == 100.0 and not steady.aged  # never above 100


def test_runtime_trend_when_there_is_no_voltage_drop() -> None:
    tests = [bh.BatteryTest(float(i), runtime_s=r, load_pct=20.0) for i, r in enumerate((1000, 1000, 800, 600))]
    h = bh.assess(tests, aged_pct=80)
    assert h.health_pct == 70.0 and h.aged and "fell from 1000 s to 700 s" in h.evidence


def test_age_from_the_battery_date() -> None:
    h = bh.assess([], aged_pct=70, installed=dt.date(2020, 1, 1), life_years=4, today=dt.date(2026, 1, 1))
    assert h.aged and h.health_pct is None and h.measurements["battery_age_years"] == 6.0
    young = bh.assess([], aged_pct=70, installed=dt.date(2025, 1, 1), life_years=4, today=dt.date(2026, 1, 1))
    assert not young.aged
    future = bh.assess([], aged_pct=70, installed=dt.date(2030, 1, 1), life_years=4, today=dt.date(2026, 1, 1))
    assert future.age_years is None and not future.aged


@pytest.mark.parametrize(("text", "date"), [("2021/03/15", dt.date(2021, 3, 15)), ("11/14/00", dt.date(2000, 11, 14)),
                                            ("2019-04-25", dt.date(2019, 4, 25)), ("", None), ("unknown", None),
                                            ("13/45/99", None)])
def test_nut_dates(text: str, date: dt.date | None) -> None:
    assert bh.parse_date(text) == date


def test_apply_turns_a_plain_ok_into_battery_aged_only() -> None:
    aged = bh.assess(drop_tests([0.5, 0.5, 1.5]), aged_pct=70)
    ok = bh.apply(Result.ok("UPS_OK", "on mains"), aged)
    assert (ok.status, ok.code) == (Status.WARN, "BATTERY_AGED") and ok.fields["battery_health_pct"] == 50.0
    low = bh.apply(Result(Status.FAIL, "UPS_BATTERY_LOW", "battery low"), aged)
    assert low.code == "UPS_BATTERY_LOW" and low.measurements["battery_health_pct"] == 50.0
    unknown = bh.apply(Result.ok("UPS_OK", "on mains"), bh.assess([], aged_pct=70))
    assert unknown.code == "UPS_OK" and unknown.fields["battery_health_pct"] is None


def test_the_log_keeps_the_baseline_and_is_bounded(tmp_path: Path) -> None:
    log = bh.BatteryLog(bh.log_path(str(tmp_path), "ups"))
    assert log.tests() == []
    for i in range(bh.KEEP_TESTS + 10):
        log.add(bh.BatteryTest(float(i), drop_v=0.5 + i / 100))
    kept = log.tests()
    assert len(kept) == bh.KEEP_TESTS
    assert [t.at_unix for t in kept[:bh.BASELINE_TESTS]] == [0.0, 1.0]
    assert kept[-1].at_unix == float(bh.KEEP_TESTS + 9)
    Path(log.path).write_text("{not json")
    assert log.tests() == []  # corrupt: an empty log, never a crash


def test_a_battery_change_is_kept_through_later_tests_and_read_in_one_go(tmp_path: Path) -> None:
    log = bh.BatteryLog(bh.log_path(str(tmp_path), "ups"))
    for d in (0.5, 0.5, 1.2):
        log.add(bh.BatteryTest(1_700_000_000.0 + d, drop_v=d))
    now = dt.datetime(2026, 12, 5, 23, 30).astimezone().timestamp()
    count, _health = log.changed(now, aged_pct=70)
    assert count == 3
    log.add(bh.BatteryTest(now + 86400, drop_v=0.4))  # the new battery's first test
    kept = log.load()
    assert [t.drop_v for t in kept.tests] == [0.4]
    assert kept.changed_on == dt.date(2026, 12, 5) and kept.replaced is not None and kept.replaced["tests"] == 3
    Path(log.path).write_text('{"schema": 1, "changed_at": "not a date", "replaced": [], "tests": {}}')
    damaged = log.load()  # a hand-edited file: nothing of it is believed, nothing crashes
    assert damaged.tests == [] and damaged.changed_on is None and damaged.replaced is None
