"""What the UPS and battery drivers share: the reading, its grading, codes and hints.

Whatever the source (Megatec serial, NUT's upsd, the box's own battery), a reading is
expressed in NUT's vocabulary (``ups.status`` tokens such as "OL CHRG", "OB DISCHRG LB")
and graded alike, so a fleet can sort terminals by battery state:

    UPS_OK                ok     on mains, nothing to do
    UPS_ON_BATTERY        warn   mains lost, running on battery
    UPS_REPLACE_BATTERY   warn   the UPS says the battery needs replacing (RB)
    UPS_BATTERY_LOW       fail   battery low (LB, FSD, or charge below the threshold)
    UPS_OVERLOAD          fail   load at or above the overload threshold (or OVER)
    UPS_FAULT             fail   the UPS reports a fault (ALARM) or its output is OFF

Heartbeat fields (all always present; a value the source did not give is None, never 0):
on_battery, battery_charge_pct, battery_runtime_s, battery_low, input_voltage_v,
load_pct, ups_status, model, battery_health_pct (the trend of the battery tests,
``drivers.battery_health``; BATTERY_AGED, warn, when it has fallen).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from posagent.core.base import DriverEnv, Measurements, Result, Status
from posagent.core.values import HourRange

FIELD_NAMES = ("on_battery", "battery_charge_pct", "battery_runtime_s", "battery_low", "input_voltage_v",
               "load_pct", "ups_status", "model", "battery_health_pct")



@dataclass
class UpsReading:
    """One reading of a UPS or battery, in NUT's vocabulary. None = not reported."""

    tokens: list[str] = field(default_factory=list)  # ups.status tokens; empty = unknown
    battery_charge_pct: float | None = None
    battery_runtime_s: float | None = None
    input_voltage_v: float | None = None
    load_pct: float | None = None
    model: str | None = None
    charge_approximate: bool = False
    alarm: str | None = None  # ups.alarm text, if any
    battery_low: bool | None = None  # None: derived from the tokens
    measurements: Measurements = field(default_factory=dict)  # extra figures (voltages, temperature)

    @property
    def ups_status(self) -> str | None:
        return " ".join(self.tokens) if self.tokens else None

    @property
    def on_battery(self) -> bool | None:
        if "OB" in self.tokens:
            return True
        if "OL" in self.tokens:
            return False
        return None

    @property
    def low(self) -> bool | None:
        if self.battery_low is not None:
            return self.battery_low
        if not self.tokens:
            return None
        return "LB" in self.tokens or "FSD" in self.tokens

    def fields(self) -> dict[str, object]:
        return {"on_battery": self.on_battery, "battery_charge_pct": self.battery_charge_pct,
                "battery_runtime_s": self.battery_runtime_s, "battery_low": self.low,
                "input_voltage_v": self.input_voltage_v, "load_pct": self.load_pct,
                "ups_status": self.ups_status, "model": self.model,
                "battery_health_pct": None}  # from the battery tests' trend (drivers.battery_health)


def empty_fields() -> dict[str, object]:
    return dict.fromkeys(FIELD_NAMES)


def _num(v: float) -> str:
    return f"{v:g}"


def _runtime(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def describe(r: UpsReading) -> str:
    """The figures of a reading as one short English phrase."""
    parts: list[str] = []
    if r.battery_charge_pct is not None:
        approx = "~" if r.charge_approximate else ""
        est = " (estimated from battery voltage)" if r.charge_approximate else ""
        parts.append(f"battery {approx}{_num(r.battery_charge_pct)} %{est}")
    if r.battery_runtime_s is not None:
        parts.append(f"runtime {_runtime(r.battery_runtime_s)}")
    if r.load_pct is not None:
        parts.append(f"load {_num(r.load_pct)} %")
    if r.input_voltage_v is not None:
        parts.append(f"input {_num(r.input_voltage_v)} V")
    return ", ".join(parts)


def grade(r: UpsReading, *, overload_pct: float = 100.0, what: str = "UPS") -> Result:
    """Grade a reading into a Result carrying the heartbeat fields and the measurements."""
    status_text = f" ({r.ups_status})" if r.ups_status else ""
    figures = describe(r)
    tokens = set(r.tokens)
    overload = "OVER" in tokens or (r.load_pct is not None and overload_pct > 0 and r.load_pct >= overload_pct)
    if not tokens and r.on_battery is None and r.battery_charge_pct is None:
        status, code, text = Status.UNKNOWN, "UPS_NO_RESPONSE", f"{what} reported no status"
    elif r.low:
        status, code = Status.FAIL, "UPS_BATTERY_LOW"
        text = ("battery low, on battery" if r.on_battery else "battery low") + status_text
    elif "ALARM" in tokens or "OFF" in tokens:
        status, code = Status.FAIL, "UPS_FAULT"
        why = "output off" if "OFF" in tokens and "ALARM" not in tokens else "fault reported"
        text = f"{what} {why}{status_text}" + (f": {r.alarm}" if r.alarm else "")
    elif overload:
        status, code = Status.FAIL, "UPS_OVERLOAD"
        text = f"{what} overloaded{status_text}"
    elif r.on_battery:
        status, code = Status.WARN, "UPS_ON_BATTERY"
        text = f"on battery{status_text}: mains power lost"
    elif "RB" in tokens:
        status, code = Status.WARN, "UPS_REPLACE_BATTERY"
        text = f"battery needs replacing{status_text}"
    elif r.on_battery is None:
        status, code, text = Status.UNKNOWN, "UPS_PROTOCOL_ERROR", f"{what} status{status_text} names no power source"
    else:
        status, code = Status.OK, "UPS_OK"
        text = f"on mains{status_text}"
    if figures and code != "UPS_NO_RESPONSE":
        text += ("; " if ":" in text else ": ") + figures
    m: Measurements = {}
    for key in ("battery_charge_pct", "battery_runtime_s", "input_voltage_v", "load_pct"):
        value = getattr(r, key)
        if value is not None:
            m[key] = value
    if r.charge_approximate and r.battery_charge_pct is not None:
        m["battery_charge_estimated"] = True
    # figures are measurements; a word such as ups_type ("standby") is a field of the device
    words = {k: v for k, v in r.measurements.items() if isinstance(v, str)}
    m.update({k: v for k, v in r.measurements.items() if v is not None and k not in words})
    return Result(status, code, text, measurements=m, fields={**r.fields(), **words})


def parse_number(text: str | None) -> int | float | None:
    """A NUT-style number ('87', '023.4', '100.0', '1,5'); None if absent or not a number.
    Integers stay integers so values print exactly as the source gave them."""
    if text is None:
        return None
    t = text.strip().replace(",", ".")
    try:
        if t.lstrip("-").isdigit():
            return int(t)
        value = float(t)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def quiet_reason(env: DriverEnv, override: HourRange | None, now: dt.datetime) -> str:
    """Why ``env.quiet_time_refusal(override, now)`` refused, as a stable token (same order
    of checks): no_business_hours, blackout_date or business_hours."""
    if (override or env.business_hours) is None:
        return "no_business_hours"
    if now.date() in env.blackout_dates:
        return "blackout_date"
    return "business_hours"
