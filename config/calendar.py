"""Blackout days beyond ``blackout_dates``: a country's public holidays and the events of an
iCalendar file the operator exports from its own calendar.

    [schedule]
    blackout_country = "CN"                      # public holidays (the ``holidays`` package)
    blackout_ics = "/etc/posagent/blackout.ics"  # every day an event covers (``icalendar``)

On such a day the self-test runs at the internal level only (nothing printed) and no
disruptive test (a UPS battery test) runs. China's adjusted working days (调休: a weekend
day worked to bridge a holiday) are ordinary days here: ``holidays`` lists the holidays
themselves, and a shop is open on a worked weekend. Both libraries are imported only when
the key is set; the ``.ics`` file is read once per change of its modification time.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from typing import Any


def country_supported(code: str) -> bool:
    import holidays  # deferred: only when blackout_country is set

    return code.upper() in holidays.list_supported_countries()


@functools.lru_cache(maxsize=16)
def _country_days(code: str, year: int) -> dict[dt.date, str]:
    import holidays  # deferred: only when blackout_country is set

    return {d: str(name) for d, name in holidays.country_holidays(code.upper(), years=year).items()}


@functools.lru_cache(maxsize=8)
def _ics_days(path: str, mtime: float) -> dict[dt.date, str]:
    """Every day an event of ``path`` covers (all-day events end the day before DTEND)."""
    import icalendar  # deferred: only when blackout_ics is set

    with open(path, "rb") as fh:
        cal: Any = icalendar.Calendar.from_ical(fh.read())
    out: dict[dt.date, str] = {}
    for event in cal.walk("VEVENT"):
        start = event.decoded("DTSTART")
        end = event.decoded("DTEND") if "DTEND" in event else None
        first = start.date() if isinstance(start, dt.datetime) else start
        if end is None:
            last = first
        elif isinstance(end, dt.datetime):
            last = end.date()
        else:
            last = end - dt.timedelta(days=1)  # DTEND of an all-day event is exclusive
        name = str(event.get("SUMMARY", "calendar event"))
        for k in range(min(366, (last - first).days + 1)):
            out.setdefault(first + dt.timedelta(days=k), name)
    return out


def ics_days(path: str) -> dict[dt.date, str]:
    """The days of ``path``; ValueError (one sentence) when it cannot be read or parsed."""
    try:
        return _ics_days(path, os.stat(path).st_mtime)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a usable iCalendar file ({e})") from None


def blackout_reason(day: dt.date, country: str, ics: str) -> str | None:
    """Why ``day`` is a blackout day by the country's holidays or the calendar, or None."""
    if country:
        name = _country_days(country, day.year).get(day)
        if name is not None:
            return f"public holiday ({name})"
    if ics:
        try:
            name = ics_days(ics).get(day)
        except ValueError:
            return None  # reported by config check and at load
        if name is not None:
            return f"calendar: {name}"
    return None


def blackout_days(country: str, ics: str, first: dt.date, days: int) -> tuple[dt.date, ...]:
    """The blackout days among the ``days`` days from ``first`` (for DriverEnv)."""
    return tuple(d for d in (first + dt.timedelta(days=k) for k in range(days)) if blackout_reason(d, country, ics))
