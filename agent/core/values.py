"""Typed value parsers for config: durations, times of day, hour ranges, dates; and the
limits a value must keep (``Range``, ``control_char``, ``shown``).

Each parser takes the raw TOML value and returns the typed value or raises ValueError
with a message that says what form is expected. A parser checks the form only: the range
a number must be in is the field's (a ``Range`` next to it, read by the config's
``build()``), so ``parse_duration(float("nan"))`` is NaN and the field refuses it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import reprlib
import unicodedata
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
    """'60s' -> 60.0; numbers are seconds. Raises FormError only; a number too large for a
    float (an integer of 400 digits) is infinite, and NaN stays NaN: the field's range
    refuses both."""
    if isinstance(value, bool):
        raise FormError(_('expected a duration like "60s" or "30m", got {value}').format(value=_("a boolean")))
    if isinstance(value, int | float):
        if value < 0:
            raise FormError(_("a duration cannot be negative"))
        try:
            return Duration(float(value))
        except OverflowError:  # int too large to convert to float
            return Duration(math.inf)
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


# -- limits -----------------------------------------------------------------------------
#: The longest duration any config field accepts when its own range says nothing tighter.
MAX_DURATION = 366 * 86400.0
#: The largest magnitude of a number any config field accepts without a range of its own.
MAX_NUMBER = 1e15


def format_seconds(seconds: float) -> str:
    """60 -> "60s", 0.2 -> "200ms", 86400 -> "1d": the way a config writes a duration."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Range:
    """The values a number or duration accepts: finite, ``lo`` to ``hi`` (``lo`` itself
    excluded when ``above``). Config fields carry one in their metadata (config/model.py)."""

    lo: float
    hi: float
    above: bool = False

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (value > self.lo if self.above else value >= self.lo) and value <= self.hi

    def describe(self, duration: bool) -> str:
        """The rule in words: "must be between 1s and 1d"."""
        show = format_seconds if duration else (lambda v: f"{v:g}")
        if self.above:
            return _("must be more than {lo} and at most {hi}").format(lo=show(self.lo), hi=show(self.hi))
        return _("must be between {lo} and {hi}").format(lo=show(self.lo), hi=show(self.hi))


def control_char(text: str) -> str | None:
    """The first control or format character of ``text`` (Unicode categories Cc and Cf:
    newline, ESC, NUL, bidi overrides...) as "U+001B", or None when there is none."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf"):
            return f"U+{ord(ch):04X}"
    return None


def shown(value: object, limit: int = 60) -> str:
    """A value quoted in a message: its repr (control characters escaped), nested lists and
    tables abridged (an array nested 5000 deep is ``[[[[...]]]]``), cut at ``limit``."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**limit:
        return _("a number of more than {digits} digits").format(digits=limit)
    abridged = reprlib.Repr()
    abridged.maxlevel, abridged.maxlist, abridged.maxdict = 3, 4, 4
    abridged.maxstring = abridged.maxother = abridged.maxlong = limit
    try:
        text = abridged.repr(value)
    except (RecursionError, ValueError):  # ValueError: an int of more than 4300 digits inside a list
        text = type(value).__name__
    return text if len(text) <= limit else text[:limit] + "…"
