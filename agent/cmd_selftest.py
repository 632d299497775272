"""``posagent selftest``: run the self-test now; table or JSON; exit 0/1/2/3."""

from __future__ import annotations

import argparse
import json
import sys

from posagent.clicommon import add_common, exit_code, load, only_names, parse_level, setup_language


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--level", choices=["internal", "external", "interactive"], default="external",
                   help="internal: no visible effect; external: prints a test slip; "
                        "interactive: also key scan and card swipe (default: external)")
    p.add_argument("--technician", metavar="NAME", help="who ran this test (default: the login name)")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    setup_language(args, config)
    from posagent.i18n import _
    from posagent.selftest.devices import DeviceSet
    from posagent.selftest.render import ProgressLine, render_table, report_json, summary_line
    from posagent.selftest.runner import Runner

    level = parse_level(args.level)
    only = only_names(args, config)
    progress = None if args.json else ProgressLine()
    with DeviceSet(config) as devices:
        runner = Runner(devices, progress=progress, prompt=_prompt, say=_say)
        report = runner.selftest(level, only)
    if progress is not None:
        progress.clear()
    report.technician = args.technician or _login_name()
    _after_run(config, report)
    if args.json:
        json.dump(report_json(report), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        title = _("Self-test of {terminal} ({level}), {seconds:.1f} s").format(
            terminal=report.terminal_id, level=_(report.level.label), seconds=report.duration_ms / 1000)
        render_table([(c.device, c.name, c.result) for c in report.checks], sys.stdout, title)
        print(summary_line([c.result.status for c in report.checks]))
    return exit_code([c.result.status for c in report.checks])


def _after_run(config: object, report: object) -> None:
    """Hooks that keep a record of the run (history store), when installed."""
    import importlib

    try:
        hooks = importlib.import_module("posagent.history")
    except ModuleNotFoundError:
        return
    hooks.record_selftest(config, report)


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
