"""Typed value parsers for config: durations, times of day, hour ranges, dates.

Each parser takes the raw TOML value and returns the typed value or raises ValueError
with a message that says what form is expected.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import NewType

from posagent.core.i18n import _


class FormError(ValueError):
    """A value error whose message already shows the expected form (no second hint needed)."""


#: Seconds, written in config as "500ms", "60s", "30m", "2h", "1d" (or a bare number of seconds).
Duration = NewType("Duration", float)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> Duration:
    """'60s' -> 60.0; numbers are seconds."""
    if isinstance(value, bool):
        raise FormError(_('expected a duration like "60s" or "30m", got {value}').format(value=_("a boolean")))
    if isinstance(value, int | float):
        if value < 0:
            raise FormError(_("a duration cannot be negative"))
        return Duration(float(value))
    if not isinstance(value, str):
        raise FormError(_('expected a duration like "60s" or "30m", got {value}').format(value=type(value).__name__))
    m = _DURATION.match(value)
    if not m:
        raise FormError(_("'{value}' is not a duration; write it like {examples}").format(
            value=value, examples='"500ms", "60s", "30m", "2h"'))
    return Duration(float(m.group(1)) * _UNIT[m.group(2)])


def parse_time_of_day(value: object) -> dt.time:
    """'03:00' -> time(3, 0)."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        raise FormError(_('expected a local time like "03:00", got {value}').format(value=repr(value)))
    h, m = (int(p) for p in value.strip().split(":"))
    if h > 23 or m > 59:
        raise ValueError(_("'{value}' is not a valid time of day (00:00-23:59)").format(value=value))
    return dt.time(h, m)


@dataclass(frozen=True)
class HourRange:
    """A daily local-time window such as 08:00-22:00; may wrap midnight (22:00-06:00)."""

    start: dt.time
    end: dt.time

    def contains(self, t: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_hour_range(value: object) -> HourRange:
    if not isinstance(value, str) or value.count("-") != 1:
        raise FormError(_range_error(value))
    a, b = value.split("-")
    try:
        return HourRange(parse_time_of_day(a), parse_time_of_day(b))
    except ValueError:
        raise FormError(_range_error(value)) from None


def _range_error(value: object) -> str:
    return _('expected a range like "08:00-22:00", got {value}').format(value=repr(value))


def parse_date(value: object) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise FormError(_('expected a date like "2027-02-06", got {value}').format(value=repr(value)))
