"""The last 30 days as the visit report charts them (``selftest/visit_charts.py``): fault
episodes and battery figures from the history store, paper per day from each printer's
counters. Parts that cannot be read are left empty (the history store logs why).

``forecast_series``: the consumables forecasts (paper, ribbon, battery health) each kept
run measured, per device, for ``posagent history``'s trend lines."""

from __future__ import annotations

import datetime as dt
from typing import Any

from posagent.drivers.escpos.counters import CounterStore, counter_path
from posagent.fleet import history
from posagent.selftest.visit_charts import DAYS, Trends


def _ts(iso: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(iso)).timestamp() if iso else None
    except ValueError:
        return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def load_trends(state_dir: str, printers: list[str], now: float | None = None) -> Trends:
    end = now if now is not None else dt.datetime.now().timestamp()
    t = Trends(start=end - DAYS * 86400, end=end)
    for f in history.faults(state_dir, t.start):
        first = _ts(f.get("first_seen"))
        if first is not None:
            t.faults.append({**f, "first_ts": first, "cleared_ts": _ts(f.get("cleared"))})
    first_day = dt.date.fromtimestamp(t.start).isoformat()
    for name in printers:
        daily = CounterStore(counter_path(state_dir, name)).read().daily_mm
        days = {d: mm / 1000.0 for d, mm in daily.items() if d >= first_day and mm >= 0}
        if days:
            t.paper_m[name] = days
    for run in history.runs(state_dir, t.start, with_results=True):
        at = _ts(run.get("started_at"))
        if at is None:
            continue
        for r in run.get("checks", []):
            m = r.get("measurements") or {}
            charge, volts = _num(m.get("battery_charge_pct")), _num(m.get("battery_voltage_v"))
            if charge is not None or volts is not None:
                t.battery.setdefault(r["device"], []).append((at, charge, volts))
    return t


#: The forecast figures a run's results carry as measurements, in the order shown.
FORECASTS = ("paper_remaining_pct", "paper_days_left", "ribbon_days_left", "battery_health_pct")


def forecast_series(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """device -> figure -> [(run's started_at, value)], oldest first: one value per run (the
    last result of the run that measured it); figures never measured are left out."""
    out: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for run in runs:
        seen: dict[tuple[str, str], float] = {}
        for r in run.get("checks", []):
            m = r.get("measurements") or {}
            for name in FORECASTS:
                value = _num(m.get(name))
                if value is not None:
                    seen[(r["device"], name)] = value
        for (device, name), value in seen.items():
            out.setdefault(device, {}).setdefault(name, []).append((str(run.get("started_at") or ""), value))
    return {d: {n: figs[n] for n in FORECASTS if n in figs} for d, figs in sorted(out.items())}
