"""The visit report's charts of the last 30 days: small inline SVG, no script, no asset.

Three charts, each drawn from what the agent already keeps (nothing is fetched):

- **faults per device** (a timeline): the history store's fault episodes, one row per
  device, a bar from when a fault appeared to when it cleared (or today), coloured by
  its status;
- **paper used per day**: each ESC/POS printer's daily counter (``printer-<name>.json``,
  ``daily_mm``), in metres;
- **UPS battery**: the battery charge (%) and voltage each self-test measured, one line
  per UPS, from the history store's check results.

A chart without data is left out, and the report says there is nothing to show yet.
Text in the SVG (device names, labels) is escaped; sizes fit an A4 page (a 680 px wide
viewBox, scaled to the page width).
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any

from posagent.core.i18n import _

DAYS = 30
WIDTH, LEFT, RIGHT = 680, 120, 16
_COLOURS = {"fail": "#cf222e", "unknown": "#8250df", "warn": "#bf8700", "ok": "#1a7f37"}
_LINE_COLOURS = ("#0969da", "#bc4c00", "#1a7f37", "#8250df")


@dataclass
class Trends:
    """What the charts are drawn from, read once when the report is made (by
    ``posagent.fleet.trends.load_trends``)."""

    start: float  # the first instant charted (epoch seconds)
    end: float
    faults: list[dict[str, Any]] = field(default_factory=list)  # device, code, status, first_ts, cleared_ts
    paper_m: dict[str, dict[str, float]] = field(default_factory=dict)  # printer -> day -> metres
    battery: dict[str, list[tuple[float, float | None, float | None]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.faults or self.paper_m or self.battery)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _x(t: Trends, ts: float) -> float:
    span = max(1.0, t.end - t.start)
    return LEFT + (WIDTH - LEFT - RIGHT) * min(1.0, max(0.0, (ts - t.start) / span))


def _frame(height: int, title: str, body: list[str], t: Trends) -> str:
    """An SVG of ``height`` with a title, the day axis at the bottom and ``body``."""
    axis = height - 18
    ticks = []
    for k in range(0, DAYS + 1, 5):
        ts = t.start + k * 86400
        x = _x(t, ts)
        ticks.append(f'<line x1="{x:.1f}" y1="{axis}" x2="{x:.1f}" y2="{axis + 4}" stroke="#888"/>'
                     f'<text x="{x:.1f}" y="{height - 4}" font-size="10" text-anchor="middle" fill="#555">'
                     f'{dt.date.fromtimestamp(ts).strftime("%m-%d")}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" '
            f'role="img" aria-label="{_e(title)}">'
            f'<text x="0" y="14" font-size="13" font-weight="bold" fill="#222">{_e(title)}</text>'
            f'<line x1="{LEFT}" y1="{axis}" x2="{WIDTH - RIGHT}" y2="{axis}" stroke="#888"/>'
            + "".join(ticks) + "".join(body) + "</svg>")


def faults_timeline(t: Trends) -> str | None:
    """One row per device, a bar per fault episode."""
    if not t.faults:
        return None
    devices = sorted({f["device"] for f in t.faults})
    row = 20
    body = []
    for i, device in enumerate(devices):
        y = 26 + i * row
        body.append(f'<text x="{LEFT - 6}" y="{y + 12}" font-size="11" text-anchor="end" fill="#222">'
                    f'{_e(device[:18])}</text>')
        for f in (f for f in t.faults if f["device"] == device):
            x0 = _x(t, float(f.get("first_ts") or t.start))
            x1 = max(x0 + 2.0, _x(t, float(f.get("cleared_ts") or t.end)))
            colour = _COLOURS.get(str(f.get("status")), "#888")
            body.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{x1 - x0:.1f}" height="{row - 6}" fill="{colour}">'
                        f'<title>{_e(str(f.get("code", "")))}</title></rect>')
    return _frame(26 + len(devices) * row + 24, _("Faults per device"), body, t)


#: The plot area of the value charts (paper, battery): its top and its axis, in px.
PLOT_TOP, PLOT_AXIS = 24, 132


def _scale_and_legend(high: str, low: str, names: list[str]) -> list[str]:
    """The y-axis labels (``high`` at the top, ``low`` at the axis) and one coloured name
    per series, left of the plot."""
    out = [f'<text x="{LEFT - 6}" y="{PLOT_TOP + 8}" font-size="10" text-anchor="end" fill="#555">{_e(high)}</text>',
           f'<text x="{LEFT - 6}" y="{PLOT_AXIS}" font-size="10" text-anchor="end" fill="#555">{_e(low)}</text>']
    for p, name in enumerate(names):
        out.append(f'<text x="{LEFT - 6}" y="{PLOT_TOP + 30 + 12 * p}" font-size="10" text-anchor="end" '
                   f'fill="{_colour(p)}">{_e(name[:18])}</text>')
    return out


def _colour(p: int) -> str:
    return _LINE_COLOURS[p % len(_LINE_COLOURS)]


def paper_per_day(t: Trends) -> str | None:
    """Bars of metres printed each day, one colour per printer."""
    if not t.paper_m:
        return None
    top, axis = PLOT_TOP, PLOT_AXIS
    peak = max(max(days.values()) for days in t.paper_m.values()) or 1.0
    day_w = (WIDTH - LEFT - RIGHT) / DAYS
    bar_w = max(1.0, day_w * 0.8 / len(t.paper_m))
    body = _scale_and_legend(f"{peak:.1f} m", "0 m", sorted(t.paper_m))
    for p, (_name, days) in enumerate(sorted(t.paper_m.items())):
        for day, metres in days.items():
            ts = dt.datetime.fromisoformat(day).timestamp()
            x = _x(t, ts) + p * bar_w
            h = (axis - top) * metres / peak
            body.append(f'<rect x="{x:.1f}" y="{axis - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{_colour(p)}"><title>{_e(day)}: {metres:.2f} m</title></rect>')
    return _frame(PLOT_AXIS + 18, _("Paper used per day"), body, t)


def battery_lines(t: Trends) -> str | None:
    """The battery charge (%) each self-test measured, a line and points per UPS; the
    voltage in each point's tooltip."""
    if not t.battery:
        return None
    top, axis = PLOT_TOP, PLOT_AXIS
    body = _scale_and_legend("100 %", "0 %", sorted(t.battery))
    for p, (_name, points) in enumerate(sorted(t.battery.items())):
        colour = _colour(p)
        xy = [(_x(t, ts), axis - (axis - top) * min(100.0, max(0.0, c)) / 100.0, v)
              for ts, c, v in sorted(points) if c is not None]
        if len(xy) > 1:
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="'
                        + " ".join(f"{x:.1f},{y:.1f}" for x, y, _v in xy) + '"/>')
        for x, y, volts in xy:
            tip = f"{volts:.1f} V" if volts is not None else ""
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>{tip}</title></circle>')
    return _frame(PLOT_AXIS + 18, _("UPS battery charge at each self-test"), body, t)


def charts(t: Trends) -> list[str]:
    """Every chart that has data, in the report's order."""
    return [svg for svg in (faults_timeline(t), paper_per_day(t), battery_lines(t)) if svg]
