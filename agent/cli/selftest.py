"""``posagent selftest``: run the self-test now; table or JSON; exit 0/1/2/3."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys

from posagent.cli.common import (
    UsageError,
    add_common,
    exit_code,
    load,
    only_names,
    output_format,
    parse_level,
    preview,
    setup_language,
)
from posagent.core.i18n import _, language
from posagent.fleet import messages
from posagent.fleet.history import record_selftest
from posagent.fleet.visit import visit_outputs
from posagent.selftest import nagios
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import ProgressLine, render_table, report_json, summary_line
from posagent.selftest.runner import Runner
from posagent.selftest.visit_report import report_format


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--level", choices=["internal", "external", "interactive"], default="external",
                   help="internal: no visible effect; external: prints a test slip; "
                        "interactive: also key scan and card swipe (default: external)")
    p.add_argument("--technician", metavar="NAME", help="who ran this test (default: the login name)")
    p.add_argument("--report", metavar="FILE",
                   help="also write a visit report to FILE (.md for Markdown, .html for HTML, .pdf for A4 PDF "
                        "through headless Chromium); "
                        "exit 73 if it cannot be written and the test passed")
    p.add_argument("--print-report", action="store_true",
                   help="also print a short visit report on the receipt printer")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    setup_language(args, config)
    level = parse_level(args.level)
    only = only_names(args, config)
    if getattr(args, "report", None):
        _check_report_path(args.report)
    fmt = output_format(args)
    progress = None if fmt != "table" else ProgressLine()
    with DeviceSet(config) as devices:
        runner = Runner(devices, progress=progress, prompt=_prompt, say=_say, lang=language())
        report = runner.selftest(level, only)
    if progress is not None:
        progress.clear()
    report = dataclasses.replace(report, technician=args.technician or _login_name())
    recorded = record_selftest(config, report)  # False when the history store could not keep it
    if fmt == "nagios":
        text, _code = nagios.render([(f"{c.device}.{c.name}", c.result) for c in report.checks], "checks")
        sys.stdout.write(text)
    elif fmt == "json":  # the posagent.selftest/1 object the fleet receives (trigger "cli"; not committed)
        message = preview(config, messages.selftest(config, report_json(report), "cli", ""))
        json.dump(message, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        title = _("Self-test of {terminal} ({level}), {seconds:.1f} s").format(
            terminal=report.terminal_id, level=_(report.level.label), seconds=report.duration_ms / 1000)
        render_table([(c.device, c.name, c.result, c.driver) for c in report.checks], sys.stdout, title)
        print(summary_line([c.result.status for c in report.checks]))
    code = exit_code([c.result.status for c in report.checks])
    if getattr(args, "report", None) or getattr(args, "print_report", False):
        code = visit_outputs(args, config, report, recorded, code)
    return code


def _check_report_path(path: str) -> None:
    """A usage error before the test runs, not after, for a report name we cannot write."""
    try:
        report_format(path)
    except ValueError as e:
        raise UsageError(f"--report: {e}") from None


def _prompt(text: str) -> str:
    if not sys.stdin.isatty():
        return ""
    try:
        return input(text + " ")
    except EOFError:
        return ""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
