"""``posagent history``: past self-test runs, per device when each fault appeared and cleared,
and the trend of each device's consumables forecasts (paper, ribbon, battery health) over the
kept runs.

    posagent history [--json] [--since 30d] [--only NAMES] [--sim]

Reads the history store in the state dir (posagent.fleet.history); exit 0, or 64 for a bad
``--since``, 78 for a bad config.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from posagent.cli.common import UsageError, add_common, cannot_read, load, only_names, setup_language
from posagent.core.base import Status
from posagent.core.i18n import N_, _
from posagent.core.values import parse_duration
from posagent.fleet import history
from posagent.fleet.trends import forecast_series
from posagent.selftest.hints import hint
from posagent.selftest.render import status_word
from posagent.selftest.textwidth import pad, width


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--since", metavar="AGE", help='only runs and faults of the last AGE, e.g. "30d", "12h"')


def run(args: argparse.Namespace) -> int:
    config = load(args)
    setup_language(args, config)
    since_ts = _since(args.since)
    only = only_names(args, config)
    state_dir = config.agent.state_dir
    code = cannot_read("posagent history", history.db_path(state_dir))  # not "no self-test recorded yet"
    if code is not None:
        return code
    runs = history.runs(state_dir, since_ts, with_results=True)
    faults = history.faults(state_dir, since_ts)
    counters = history.counters(state_dir)
    if only:
        faults = [f for f in faults if f["device"] in only]
        for r in runs:
            r["checks"] = [c for c in r["checks"] if c["device"] in only]
    forecasts = forecast_series(runs)
    for r in runs:  # a run lists its problems; the ok results were read for the forecasts
        r["checks"] = [c for c in r["checks"] if c["status"] != "ok"]
    if args.json:
        out = {"terminal_id": config.agent.terminal_id, "since": _iso(since_ts) if since_ts else None,
               "runs": runs, "faults": faults, "counters": counters,
               "forecasts": {d: {n: [{"at": at, "value": v} for at, v in series] for n, series in figs.items()}
                             for d, figs in forecasts.items()}}
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    if not runs and not faults:
        print(_("No self-test recorded yet in {path}.").format(path=history.db_path(state_dir)))
        return 0
    _print_runs(runs, config.agent.terminal_id, args.since)
    _print_faults(faults)
    _print_forecasts(forecasts)
    _print_counters(counters)
    return 0


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError as e:
        raise UsageError(_("--since: {problem}").format(problem=e)) from None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def short_time(iso: str | None) -> str:
    """'2026-05-09T14:03:07+08:00' -> '2026-05-09 14:03' in local time."""
    if not iso:
        return ""
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def table(heads: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(heads)]
    lines = ["  ".join(pad(h, w) for h, w in zip(heads, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _print_runs(runs: list[dict[str, Any]], terminal: str, since: str | None) -> None:
    title = _("Self-tests of {terminal}").format(terminal=terminal)
    if since:
        title += " " + _("(last {age})").format(age=since)
    print(title)
    rows = []
    for r in runs:
        problems = ", ".join(f"{c['device']}: {c['code']}" for c in r["checks"])
        rows.append([short_time(r["started_at"]), r["technician"] or "-", _(r["level"]),
                     status_word(Status.parse(r["status"])), problems])
    for line in table([_("WHEN"), _("TECHNICIAN"), _("LEVEL"), _("RESULT"), _("PROBLEMS")], rows):
        print(line)


def _print_faults(faults: list[dict[str, Any]]) -> None:
    print()
    print(_("Faults: when each appeared and cleared"))
    if not faults:
        print(_("none"))
        return
    rows = [[f["device"], f["code"], short_time(f["first_seen"]),
             short_time(f["cleared"]) if f["cleared"] else _("still open"),
             hint(f["code"], f.get("driver")) if not f["cleared"] else ""] for f in faults]
    for line in table([_("DEVICE"), _("CODE"), _("APPEARED"), _("CLEARED"), _("HINT")], rows):
        print(line)


def _print_counters(c: dict[str, Any]) -> None:
    print()
    failures = ", ".join(f"{dev} {n}" for dev, n in sorted(c["failures"].items())) or _("none")
    print(_("Since {date}: {runs} self-tests; failures per device: {failures}; "
            "paper-end events: {paper}; UPS on-battery events: {battery}").format(
        date=short_time(c["since"]) or "-", runs=c["selftests_run"], failures=failures,
        paper=c["paper_end_events"], battery=c["ups_on_battery_events"]))


#: How each forecast figure is named in the trend table, and its unit.
FORECAST_WORDS = {"paper_remaining_pct": (N_("paper left"), "%"), "paper_days_left": (N_("paper days left"), ""),
                  "ribbon_days_left": (N_("ribbon days left"), ""),
                  "battery_health_pct": (N_("battery health"), "%")}
TREND_POINTS = 8  # values shown per trend line (the newest)


def trend_text(series: list[tuple[str, float]]) -> str:
    """'100 -> 81.3 -> 62.5' (oldest first; the newest TREND_POINTS, '...' before them)."""
    shown = " -> ".join(f"{v:g}" for _at, v in series[-TREND_POINTS:])
    return ("... -> " if len(series) > TREND_POINTS else "") + shown


def _print_forecasts(forecasts: dict[str, dict[str, list[tuple[str, float]]]]) -> None:
    print()
    print(_("Forecasts over the kept runs (oldest first)"))
    if not forecasts:
        print(_("none"))
        return
    rows = []
    for device, figures in forecasts.items():
        for name, series in figures.items():
            word, unit = FORECAST_WORDS[name]
            rows.append([device, _(word) + (f" ({unit})" if unit else ""), trend_text(series),
                         _("{count} runs").format(count=len(series)), short_time(series[-1][0])])
    for line in table([_("DEVICE"), _("FORECAST"), _("TREND"), _("RUNS"), _("LATEST")], rows):
        print(line)
