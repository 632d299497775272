"""Holidays and calendar events as blackout days (config/calendar.py), through the loader
and the schedule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from posagent.config.errors import ConfigError
from posagent.config.loader import validate
from posagent.core.base import Level
from posagent.fleet import schedule

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//posagent//EN
BEGIN:VEVENT
UID:stocktaking@example.invalid
DTSTART;VALUE=DATE:20270310
DTEND;VALUE=DATE:20270312
SUMMARY:Stocktaking
END:VEVENT
END:VCALENDAR
"""


def sched(tmp_path: Path, **keys: object) -> object:
    return validate({"agent": {"state_dir": str(tmp_path)}, "schedule": keys}, "test.toml").schedule


def test_a_public_holiday_is_a_blackout_day(tmp_path: Path) -> None:
    s = sched(tmp_path, blackout_country="CN", selftest_at="03:00", jitter="0s")
    spring = dt.datetime(2027, 2, 6, 3, 0).astimezone()  # Spring Festival 2027
    level, why = schedule.level_for(spring, s)
    assert level == Level.INTERNAL and "public holiday" in why and "Spring" in why
    assert schedule.level_for(dt.datetime(2027, 3, 9, 3, 0).astimezone(), s)[0] == Level.EXTERNAL


def test_an_ics_event_is_a_blackout_day_and_the_week_ahead_shows_it(tmp_path: Path) -> None:
    ics = tmp_path / "blackout.ics"
    ics.write_text(ICS, encoding="utf-8")
    s = sched(tmp_path, blackout_ics=str(ics), selftest_at="03:00", jitter="0s")
    days = schedule.week_ahead(dt.datetime(2027, 3, 8, 12, 0).astimezone(), s, "T", 4)
    assert [(d.date.day, d.blackout) for d in days] == [(9, False), (10, True), (11, True), (12, False)]
    assert "calendar: Stocktaking" in days[1].reason and days[1].level == Level.INTERNAL


@pytest.mark.parametrize(("keys", "says"), [
    ({"blackout_country": "XX"}, "not a country code"),
    ({"blackout_ics": "relative.ics"}, "expected an absolute path"),
    ({"blackout_ics": "/nonexistent/blackout.ics"}, "cannot read"),
])
def test_bad_calendar_keys_are_named(tmp_path: Path, keys: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as e:
        sched(tmp_path, **keys)
    assert says in str(e.value)


def test_a_broken_ics_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ics"
    bad.write_text("this is not a calendar", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        sched(tmp_path, blackout_ics=str(bad))
    assert "not a usable iCalendar file" in str(e.value)
