"""The visit report outputs of ``posagent selftest``: ``--report FILE`` and ``--print-report``.

The rendering is in ``posagent.selftest.visit_report``; this module writes the file and
finds the receipt printer (the first device whose driver family is "printer" and that
can ``print_lines``). A report that cannot be written or printed is an error on stderr
and exit 73 (EX_CANTCREAT) unless the self-test itself already exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from posagent.config.model import Config
from posagent.core.base import Driver, Result, Status
from posagent.core.i18n import _, language, set_language
from posagent.core.registry import DriverLoadError, load_driver
from posagent.fleet import history
from posagent.fleet.trends import load_trends
from posagent.selftest.devices import DeviceSet
from posagent.selftest.hints import hint
from posagent.selftest.runner import Report, call_with_timeout
from posagent.selftest.visit_report import VisitContext, short_lines, write_report

EX_CANTCREAT = 73


def visit_outputs(args: argparse.Namespace, config: Config, report: Report, recorded: bool, code: int) -> int:
    printers = [d.name for d in config.devices if d.driver == "escpos" and d.enabled]
    ctx = visit_context(config.agent.state_dir, recorded, printers)
    ok = True
    if getattr(args, "report", None):
        try:
            write_report(args.report, report, ctx)
            print(_("Visit report written to {path}").format(path=args.report), file=sys.stderr)
        except OSError as e:
            print(_("posagent: cannot write the visit report {path}: {reason}").format(
                path=args.report, reason=e.strerror or e), file=sys.stderr)
            ok = False
    if getattr(args, "print_report", False):
        ok = print_on_receipt(config, report, ctx, _only(args)) and ok
    return code if ok or code else EX_CANTCREAT


def visit_context(state_dir: str, recorded: bool = True, printers: list[str] | None = None) -> VisitContext:
    """Read from the history store, after this run was recorded (``recorded``), and the
    last 30 days' trends for the charts (paper from the ``printers``' counters)."""
    trends = load_trends(state_dir, printers or [])
    if not recorded:
        return VisitContext(history_ok=False, trends=trends)
    prev = history.previous_visit(state_dir)
    since = prev["ts"] if prev else 0.0
    return VisitContext(True, prev, history.cleared_since(state_dir, since), trends)


def _only(args: argparse.Namespace) -> list[str] | None:
    raw = getattr(args, "only", None)
    return [n.strip() for n in raw.split(",") if n.strip()] if raw else None


def find_printer(config: Config, only: list[str] | None = None) -> str | None:
    """Name of the receipt printer: family "printer" with print_lines, --only names first."""
    names = [d.name for d in config.devices if d.enabled]
    names.sort(key=lambda n: 0 if only and n in only else 1)
    for name in names:
        try:
            cls = load_driver(config.device(name).driver)
        except DriverLoadError:
            continue
        if cls.family == "printer" and callable(getattr(cls, "print_lines", None)):
            return name
    return None


def print_on_receipt(config: Config, report: Report, ctx: Any, only: list[str] | None = None) -> bool:
    name = find_printer(config, only)
    if name is None:
        print(_("posagent: no receipt printer in the config: cannot print the visit report"), file=sys.stderr)
        return False
    with DeviceSet(config) as devices:
        driver = devices.get(name)
        if not isinstance(driver, Driver):
            result = Result.unknown(driver.code, driver.message)
        else:
            options = driver.options
            lang = language()
            # A printer without a Chinese code page gets the English version, not question marks.
            if lang != "en" and getattr(options, "text_encoding", "") != "gb18030":
                set_language("en")
            try:
                lines = short_lines(report, ctx, int(getattr(options, "line_columns", 32) or 32))
            finally:
                set_language(lang)
            timeout = float(getattr(options, "job_timeout", 30.0)) + driver.timeout
            print_lines = driver.print_lines  # type: ignore[attr-defined]
            result = call_with_timeout(lambda: print_lines(lines) or Result.ok("PRINTED", "printed"), timeout,
                                       f"{name}.print_report")
    if result.status == Status.OK:
        print(_("Visit report printed on {device}").format(device=name), file=sys.stderr)
        return True
    tip = hint(result.code)
    print(_("posagent: cannot print the visit report on {device}: {reason} ({code})").format(
        device=name, reason=result.message, code=result.code) + (f" {tip}" if tip else ""), file=sys.stderr)
    return False
