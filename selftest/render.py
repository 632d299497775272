"""Self-test and status output: a table for a person, one JSON object for machines."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from posagent.core.base import Result, Status
from posagent.core.i18n import N_, _
from posagent.core.status import worst as worst_of
from posagent.selftest.hints import hint
from posagent.selftest.messages import display_message
from posagent.selftest.runner import Report
from posagent.selftest.textwidth import pad, width, wrap

_COLOURS = {Status.OK: "32", Status.WARN: "33", Status.FAIL: "31", Status.UNKNOWN: "35"}
#: Level names as titles show them (``_(level.label)``); marked here for extraction.
LEVEL_WORDS = (N_("internal"), N_("external"), N_("interactive"))


def use_colour(stream: TextIO) -> bool:
    return (stream.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM", "") != "dumb")


def status_word(status: Status) -> str:
    return {Status.OK: _("PASS"), Status.WARN: _("WARN"), Status.FAIL: _("FAIL"),
            Status.UNKNOWN: _("UNKNOWN")}[status]


def check_word(name: str) -> str:
    """A check's name in the table's language (JSON keeps the name)."""
    return _(name) if name else name


#: The self-repair steps as the table names them (JSON keeps the tokens).
REPAIR_WORDS = {"reopen": N_("reopened the link"), "usb_reset": N_("reset the USB port"),
                "init": N_("initialised the printer (ESC @)")}


def check_json(device: str, name: str, level: str, r: Result, driver: str | None = None) -> dict[str, Any]:
    out = {"name": name, "device": device, "level": level, "status": r.status.label, "code": r.code,
           "message": r.message, "hint": hint(r.code, driver) if r.status != Status.OK else "",
           "measurements": r.measurements, "duration_ms": r.duration_ms}
    if r.repair is not None:
        out["repair"] = r.repair.json()
    return out


def repair_note(r: Result) -> str:
    """The self-repair a result carries, in a sentence for the table; "" when none."""
    rep = r.repair
    if rep is None:
        return ""
    if rep.timed_out:
        return _("self-repair did not finish in time")
    steps = _(", ").join(_(REPAIR_WORDS.get(s, s)) for s in rep.tried)
    if rep.cleared:
        return _("self-repair cleared the fault: {steps}").format(steps=steps)
    return _("self-repair did not clear the fault: {steps}").format(steps=steps)


def report_json(report: Report) -> dict[str, Any]:
    out = {
        "terminal_id": report.terminal_id,
        "started_at": report.started_at.isoformat(timespec="seconds"),
        "duration_ms": report.duration_ms,
        "level": report.level.label,
        "status": report.status.label,
        "checks": [check_json(c.device, c.name, c.level.label, c.result, c.driver) for c in report.checks],
    }
    if report.technician:
        out["technician"] = report.technician
    return out


def device_json(driver: str, r: Result) -> dict[str, Any]:
    """A device's object as the heartbeat carries it (and ``status --json`` prints)."""
    obj: dict[str, Any] = {"driver": driver, "status": r.status.label, "code": r.code, "message": r.message}
    obj.update(r.fields)
    if r.measurements:
        obj["measurements"] = r.measurements
    if r.repair is not None:
        obj["repair"] = r.repair.json()
    return obj


def render_table(rows: Sequence[tuple[str, str, Result] | tuple[str, str, Result, str]], stream: TextIO,
                 title: str) -> None:
    """rows: (device, check, result[, driver]). Columns fit the terminal; long text wraps.

    With the driver's registry name, hints and messages prefer that driver's own."""
    colour = use_colour(stream)
    total = shutil.get_terminal_size((100, 24)).columns if stream.isatty() else _piped_columns()
    heads = [_("DEVICE"), _("CHECK"), _("RESULT"), _("DETAIL"), _("HINT")]
    full = [(row[0], row[1], row[2], row[3] if len(row) > 3 else None) for row in rows]
    cells = [[dev, check_word(chk), status_word(r.status), _detail(r, drv, chk),
              hint(r.code, drv) if r.status != Status.OK else ""] for dev, chk, r, drv in full]
    fixed = [max([width(heads[i])] + [width(c[i]) for c in cells]) for i in range(3)]
    rest = max(30, total - sum(fixed) - 8)
    detail_w = max(20, rest * 11 // 20)
    hint_w = max(16, rest - detail_w)
    widths = [*fixed, detail_w, hint_w]
    print(title, file=stream)
    print("  ".join(pad(h, w) for h, w in zip(heads, widths, strict=True)).rstrip(), file=stream)
    print("  ".join("-" * w for w in widths), file=stream)
    for (_dev, _chk, r, _drv), row in zip(full, cells, strict=True):
        detail, hint_lines = wrap(row[3], detail_w), wrap(row[4], hint_w)
        for i in range(max(len(detail), len(hint_lines))):
            parts = [row[0], row[1], row[2]] if i == 0 else ["", "", ""]
            parts += [detail[i] if i < len(detail) else "", hint_lines[i] if i < len(hint_lines) else ""]
            line = [pad(p, w) for p, w in zip(parts, widths, strict=True)]
            if i == 0 and colour:
                line[2] = f"\x1b[{_COLOURS[r.status]}m{line[2]}\x1b[0m"
            print("  ".join(line).rstrip(), file=stream)


def _detail(r: Result, driver: str | None, check: str = "") -> str:
    note = repair_note(r)
    message = display_message(r, driver)
    message = f"{message} ({note})" if note else message
    forecast = forecast_note(r) if check == "status" else ""
    return message + _("; ") + forecast if forecast else message


def _figure(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return None


def forecast_parts(fields: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[str]:
    """The consumables forecasts among a device's fields as short phrases ("paper ~3.5 days
    left", "ribbon ~12 days left", "battery health 64 %"); unknown (null) ones are left out.
    ``skip``: "paper", "battery" (a figure the message already gives)."""
    parts: list[str] = []
    paper_days, paper_pct = _figure(fields.get("paper_days_left")), _figure(fields.get("paper_remaining_pct"))
    if "paper" not in skip:
        if paper_days is not None:
            parts.append(_("paper ~{days} days left").format(days=paper_days))
        elif paper_pct is not None:
            parts.append(_("paper {pct} % left").format(pct=paper_pct))
    ribbon_days = _figure(fields.get("ribbon_days_left"))
    if ribbon_days is not None:
        parts.append(_("ribbon ~{days} days left").format(days=ribbon_days))
    health = _figure(fields.get("battery_health_pct"))
    if health is not None and "battery" not in skip:
        parts.append(_("battery health {pct} %").format(pct=health))
    return parts


def forecast_note(r: Result) -> str:
    """The forecasts a device's status carries, for the table's DETAIL; "" when none is
    known. A figure the message already gives (PAPER_LOW_FORECAST, BATTERY_AGED) is not
    repeated."""
    skip = frozenset({"paper"} if r.code == "PAPER_LOW_FORECAST" else {"battery"} if r.code == "BATTERY_AGED"
                     else set())
    return _("; ").join(forecast_parts(r.fields, skip))


def _piped_columns() -> int:
    """A table written to a pipe or a file: $COLUMNS when it is set (a terminal's width
    passed on), else 120."""
    try:
        return max(60, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 120


def summary_line(statuses: list[Status]) -> str:
    counts = {s: statuses.count(s) for s in Status}
    worst = worst_of(statuses)
    parts = [_("{count} {status}").format(count=counts[s], status=status_word(s).lower())
             for s in Status if counts[s]]
    return _("{worst}: {counts}").format(worst=status_word(worst), counts=_(", ").join(parts))


class ProgressLine:
    """'[3/12] receipt.status' on stderr while checks run; only on a terminal."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty()

    def __call__(self, what: str, rec: Any, done: int, total: int) -> None:
        if not self.enabled:
            return
        text = f"[{done}/{total}] {what}" if what != "done" else f"[{done}/{total}]"
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
