"""``posagent selftest``: run the self-test now; table or JSON; exit 0/1/2/3."""

from __future__ import annotations

import argparse
import json
import sys

from posagent.cli.common import add_common, exit_code, load, only_names, parse_level, setup_language


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--level", choices=["internal", "external", "interactive"], default="external",
                   help="internal: no visible effect; external: prints a test slip; "
                        "interactive: also key scan and card swipe (default: external)")
    p.add_argument("--technician", metavar="NAME", help="who ran this test (default: the login name)")
    p.add_argument("--report", metavar="FILE",
                   help="also write a visit report to FILE (.md for Markdown, .html for HTML); "
                        "exit 73 if it cannot be written and the test passed")
    p.add_argument("--print-report", action="store_true",
                   help="also print a short visit report on the receipt printer")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    setup_language(args, config)
    from posagent.core.i18n import _
    from posagent.selftest.devices import DeviceSet
    from posagent.selftest.render import ProgressLine, render_table, report_json, summary_line
    from posagent.selftest.runner import Runner

    level = parse_level(args.level)
    only = only_names(args, config)
    if getattr(args, "report", None):
        _check_report_path(args.report)
    progress = None if args.json else ProgressLine()
    with DeviceSet(config) as devices:
        runner = Runner(devices, progress=progress, prompt=_prompt, say=_say, lang=_language())
        report = runner.selftest(level, only)
    if progress is not None:
        progress.clear()
    report.technician = args.technician or _login_name()
    recorded = _after_run(config, report)
    if args.json:
        json.dump(report_json(report), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        title = _("Self-test of {terminal} ({level}), {seconds:.1f} s").format(
            terminal=report.terminal_id, level=_(report.level.label), seconds=report.duration_ms / 1000)
        render_table([(c.device, c.name, c.result, c.driver) for c in report.checks], sys.stdout, title)
        print(summary_line([c.result.status for c in report.checks]))
    code = exit_code([c.result.status for c in report.checks])
    if getattr(args, "report", None) or getattr(args, "print_report", False):
        from posagent.fleet.visit import visit_outputs

        code = visit_outputs(args, config, report, recorded, code)
    return code


def _after_run(config: object, report: object) -> bool:
    """Hooks that keep a record of the run (history store), when installed; True if recorded."""
    import importlib

    try:
        hooks = importlib.import_module("posagent.fleet.history")
    except ModuleNotFoundError:
        return False
    return hooks.record_selftest(config, report) is not False


def _check_report_path(path: str) -> None:
    """A usage error before the test runs, not after, for a report name we cannot write."""
    from posagent.cli.common import UsageError
    from posagent.selftest.visit_report import report_format

    try:
        report_format(path)
    except ValueError as e:
        raise UsageError(f"--report: {e}") from None


def _language() -> str:
    from posagent.core.i18n import language

    return language()


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
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
