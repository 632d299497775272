"""UPS battery health from the battery tests it went through, kept per test in the state dir.

A lead-acid (VRLA) battery ages by its internal resistance rising and its capacity
falling. The UPS drivers measure both indirectly at each battery test, and this module
keeps the figures per test in ``battery-<name>.json`` (at most KEEP_TESTS; the first
BASELINE_TESTS are never dropped, they are the baseline) and turns their trend into
``battery_health_pct`` (docs/battery-health.md gives the sources):

- Megatec ``T`` (10-second test): the battery voltage before the test and its lowest
  reading under test. The drop is the load current times the internal resistance, so at
  a similar load ``health = 100 x baseline drop / recent drop`` (a doubled resistance reads
  50 %). Baseline: the mean of the first BASELINE_TESTS drops; recent: the mean of the
  last BASELINE_TESTS.
- NUT (``test.battery.start.quick``): ``battery.runtime`` at the test, scaled by
  ``ups.load`` (the runtime the UPS predicts falls as the capacity does, and falls with
  load): ``health = 100 x recent runtime x load / baseline runtime x load``.
- NUT ``battery.date`` (installed / changed) else ``battery.mfr.date``: the battery's age.

``BATTERY_AGED`` (warn) when the health falls below ``battery_aged_pct`` or the battery is
older than ``battery_life_years``; the message gives the evidence ("the voltage drop under
test grew from 0.6 V to 1.6 V over 5 tests"). Without enough tests (a trend needs
BASELINE_TESTS + 1) or without figures, the health is None (null), never 0 or 100.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from posagent.core.base import Measurements, Result, Status
from posagent.core.statefile import read_json, state_path, write_json

BASELINE_TESTS = 2  # tests averaged for the baseline and for the recent figure
KEEP_TESTS = 24  # tests kept in the state file (the baseline ones always)
#: Codes after which the UPS is otherwise fine, so an aged battery is the news.
PLAIN_CODES = frozenset({"UPS_OK", "UPS_TEST_PASSED", "UPS_TEST_STARTED"})
_NUMBER_KEYS = ("drop_v", "voltage_before_v", "voltage_min_v", "runtime_s", "load_pct", "charge_pct")


@dataclass(frozen=True)
class BatteryTest:
    """The figures of one battery test; None = not measured."""

    at_unix: float
    drop_v: float | None = None  # Megatec: voltage before the test minus the lowest under test
    voltage_before_v: float | None = None
    voltage_min_v: float | None = None
    runtime_s: float | None = None  # NUT battery.runtime at the test
    load_pct: float | None = None
    charge_pct: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": dt.datetime.fromtimestamp(self.at_unix).astimezone().isoformat(
            timespec="seconds"), "at_unix": round(self.at_unix, 3)}
        out.update({k: getattr(self, k) for k in _NUMBER_KEYS if getattr(self, k) is not None})
        return out

    @classmethod
    def from_json(cls, raw: Any) -> BatteryTest | None:
        if not isinstance(raw, dict) or not _is_number(raw.get("at_unix")):
            return None
        values = {k: float(raw[k]) for k in _NUMBER_KEYS if _is_number(raw.get(k))}
        return cls(at_unix=float(raw["at_unix"]), **values)

    @property
    def runtime_load(self) -> float | None:
        """battery.runtime x ups.load: comparable across tests at somewhat different loads."""
        if self.runtime_s is None or self.load_pct is None or self.runtime_s <= 0 or self.load_pct <= 0:
            return None
        return self.runtime_s * self.load_pct


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@dataclass(frozen=True)
class Health:
    """The assessment: health (None = unknown), age, whether aged, and the evidence."""

    health_pct: float | None = None
    age_years: float | None = None
    aged: bool = False
    evidence: str = ""
    measurements: Measurements = dataclasses.field(default_factory=dict)


def _drop_trend(tests: list[BatteryTest]) -> tuple[float, str, Measurements] | None:
    drops = [t.drop_v for t in tests if t.drop_v is not None and t.drop_v > 0]
    if len(drops) <= BASELINE_TESTS:
        return None
    first, recent = _mean(drops[:BASELINE_TESTS]), _mean(drops[-BASELINE_TESTS:])
    pct = round(min(100.0, 100.0 * first / recent), 1)
    text = (f"the voltage drop under test grew from {first:.2f} V to {recent:.2f} V over {len(drops)} tests"
            if recent > first else f"the voltage drop under test is {recent:.2f} V ({first:.2f} V at first, "
            f"{len(drops)} tests)")
    return pct, text, {"battery_drop_first_v": round(first, 3), "battery_drop_v": round(recent, 3),
                       "battery_tests": len(drops)}


def _runtime_trend(tests: list[BatteryTest]) -> tuple[float, str, Measurements] | None:
    pairs: list[tuple[float, float]]
    pairs = [(t.runtime_load, t.runtime_s) for t in tests
             if t.runtime_load is not None and t.runtime_s is not None]
    if len(pairs) <= BASELINE_TESTS:
        return None
    first = _mean([p[0] for p in pairs[:BASELINE_TESTS]])
    recent = _mean([p[0] for p in pairs[-BASELINE_TESTS:]])
    pct = round(min(100.0, 100.0 * recent / first), 1)
    r0 = _mean([p[1] for p in pairs[:BASELINE_TESTS]])
    r1 = _mean([p[1] for p in pairs[-BASELINE_TESTS:]])
    text = f"the runtime on battery (at the load of each test) fell from {r0:.0f} s to {r1:.0f} s over " \
           f"{len(pairs)} tests" if pct < 100 else f"the runtime on battery is {r1:.0f} s ({len(pairs)} tests)"
    return pct, text, {"battery_runtime_first_s": round(r0, 1), "battery_runtime_test_s": round(r1, 1),
                       "battery_tests": len(pairs)}


def assess(tests: list[BatteryTest], *, aged_pct: float, installed: dt.date | None = None,
           life_years: float = 0.0, today: dt.date | None = None) -> Health:
    """The health from the tests' trend (voltage drop first, else runtime) and the age."""
    trend = _drop_trend(tests) or _runtime_trend(tests)
    m: Measurements = {}
    parts: list[str] = []
    health: float | None = None
    aged = False
    if trend is not None:
        health, text, m = trend
        m = {**m, "battery_health_pct": health}
        if health < aged_pct:
            aged = True
            parts.append(text)
    age: float | None = None
    if installed is not None:
        age = round(((today or dt.date.today()) - installed).days / 365.25, 1)
        if age >= 0:
            m["battery_age_years"] = age
            if life_years > 0 and age >= life_years:
                aged = True
                parts.append(f"the battery was installed {age:g} years ago ({installed.isoformat()}; "
                             f"rated life {life_years:g} years)")
        else:
            age = None  # a date in the future: the UPS's clock or the field is wrong
    if aged and health is not None:
        parts.append(f"health ~{health:g} %")
    return Health(health, age, aged, "; ".join(parts), m)


def apply(result: Result, health: Health) -> Result:
    """``result`` with ``battery_health_pct`` (a field, null when unknown), the figures as
    measurements, and BATTERY_AGED (warn) in place of a plain ok code when aged."""
    fields = {**result.fields, "battery_health_pct": health.health_pct}
    m = {**result.measurements, **health.measurements}
    if health.aged and result.code in PLAIN_CODES:
        return Result(Status.WARN, "BATTERY_AGED", f"battery aged: {health.evidence}; {result.message}",
                      measurements=m, fields=fields, facts=result.facts)
    return dataclasses.replace(result, measurements=m, fields=fields)


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%m/%d/%y", "%Y%m%d", "%d.%m.%Y")


def parse_date(text: str | None) -> dt.date | None:
    """A NUT battery date (an opaque string: "2021/03/15", "11/14/00", "2019-04-25");
    None when it is absent or not a date."""
    if not text:
        return None
    t = text.strip()
    if not re.fullmatch(r"[0-9./-]{6,10}", t):
        return None
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(t, fmt).date()
        except ValueError:
            continue
    return None


def log_path(state_dir: str, device_name: str) -> str:
    return state_path(state_dir, "battery", device_name)


@dataclass(frozen=True)
class Kept:
    """What a battery log holds, from one read: the tests, and the last battery change
    (``posagent ups battery-changed``: when, in local time with its offset, and the old
    battery's test count and last health figure)."""

    tests: list[BatteryTest]
    changed_at: str | None = None
    replaced: dict[str, Any] | None = None

    @property
    def changed_on(self) -> dt.date | None:
        """The day the battery was last changed (local to where it was recorded)."""
        try:
            return dt.datetime.fromisoformat(self.changed_at).date() if self.changed_at else None
        except ValueError:
            return None

    def to_json(self, tests: list[BatteryTest]) -> dict[str, Any]:
        """The file's object, with ``tests`` as its tests and this change kept."""
        change = {k: v for k, v in (("changed_at", self.changed_at), ("replaced", self.replaced)) if v is not None}
        return {"schema": 1, **change, "tests": [t.to_json() for t in tests]}


class BatteryLog:
    """One UPS's battery tests in the state dir; a missing or corrupt file is an empty log."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Kept:
        """The log, read once (a status poll reads it at every round)."""
        raw = read_json(self.path)
        tests = raw.get("tests")
        kept = [t for t in (BatteryTest.from_json(x) for x in tests[:KEEP_TESTS * 2]) if t is not None] \
            if isinstance(tests, list) else []
        changed_at, replaced = raw.get("changed_at"), raw.get("replaced")
        return Kept(kept, changed_at if isinstance(changed_at, str) else None,
                    replaced if isinstance(replaced, dict) else None)

    def tests(self) -> list[BatteryTest]:
        return self.load().tests

    def add(self, test: BatteryTest) -> list[BatteryTest]:
        """Keep ``test`` (the baseline tests and the latest ones). Raises OSError."""
        kept = self.load()
        tests = [*kept.tests, test]
        tests = tests[:BASELINE_TESTS] + tests[BASELINE_TESTS:][-(KEEP_TESTS - BASELINE_TESTS):]
        write_json(self.path, kept.to_json(tests), indent=1)
        return tests

    def changed(self, now: float, *, aged_pct: float) -> tuple[int, float | None]:
        """A new battery: forget the old one's tests (the next BASELINE_TESTS set the new
        baseline) and record the day; the old battery's test count and last health figure
        are kept as ``replaced``. Returns them. Raises OSError."""
        old = self.tests()
        health = assess(old, aged_pct=aged_pct).health_pct
        when = dt.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")
        change = Kept([], when, {"tests": len(old), "health_pct": health})
        write_json(self.path, change.to_json([]), indent=1)
        return len(old), health
