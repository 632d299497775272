"""One-line output for monitoring systems (``--format nagios``): Nagios, Icinga, Zabbix
agents and everything else that runs a check command and reads its first line.

Following the Monitoring Plugins development guidelines: the first line is
``POSAGENT <STATE> - <summary> | <perfdata>``; further lines are the long output (one per
device or check); the exit code is the state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). The
summary names what is not ok, worst first. Perfdata is ``'label'=value[UOM];warn;crit;min;max``
with the unit taken from the measurement's name (``_ms`` -> ms, ``_s`` -> s, ``_pct`` -> %,
``_bytes`` -> B, ``_mb`` -> MB); labels are ``<device>.<measurement>``, so two devices'
``latency_ms`` never collide. Text is English whatever ``--lang`` says: monitoring systems
match on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from posagent.core.base import Result, Status
from posagent.core.status import worst

STATE_WORDS = {Status.OK: "OK", Status.WARN: "WARNING", Status.FAIL: "CRITICAL", Status.UNKNOWN: "UNKNOWN"}
_UNITS = (("_pct", "%"), ("_ms", "ms"), ("_s", "s"), ("_bytes", "B"), ("_mb", "MB"))
#: Heartbeat fields that are figures as well (the family's headline numbers).
_FIELD_FIGURES = ("latency_ms", "battery_charge_pct", "battery_runtime_s")


def _unit(name: str) -> str:
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return ""


def _label(text: str) -> str:
    """A perfdata label: quoted when it holds anything but word characters and dots."""
    clean = text.replace("'", "").replace("=", "_")
    return clean if re.fullmatch(r"[\w.\-]+", clean) else f"'{clean}'"


def _number(value: float) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def perfdata(name: str, result: Result) -> list[str]:
    """The figures of one result: its measurements and its numeric headline fields."""
    figures: dict[str, float] = {}
    for key, value in result.measurements.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            figures[key] = value
    for key in _FIELD_FIGURES:
        value = result.fields.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            figures.setdefault(key, value)
    return [f"{_label(f'{name}.{key}')}={_number(value)}{_unit(key)};;;" for key, value in sorted(figures.items())]


def _one_line(text: str) -> str:
    return " ".join(text.replace("|", "/").split())


def render(rows: Sequence[tuple[str, Result]], what: str = "devices") -> tuple[str, int]:
    """``rows``: (name, result) per device (``status``) or per check (``device.check``).
    Returns the output (first line, then the long output) and the exit code."""
    statuses = [r.status for _n, r in rows]
    state = worst(statuses)
    bad = sorted((row for row in rows if row[1].status != Status.OK), key=lambda row: -row[1].status.severity)
    if bad:
        summary = "; ".join(f"{name}: {_one_line(r.message)}" for name, r in bad)
    elif rows:
        summary = f"{len(rows)} {what} ok"
    else:
        summary = f"no {what} configured"
    perf = [p for name, r in rows for p in perfdata(name, r)]
    first = f"POSAGENT {STATE_WORDS[state]} - {summary}" + (" | " + " ".join(perf) if perf else "")
    long = [f"{name}: {r.status.label} {r.code} {_one_line(r.message)}" for name, r in rows]
    return "\n".join([first, *long]) + "\n", int(state)
