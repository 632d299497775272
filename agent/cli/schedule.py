"""``posagent schedule``: the next 7 days of this terminal's self-tests, at which level
(internal inside business hours and on blackout dates: no test slip), and the quiet
windows, so an operator can announce maintenance to the merchant.

    posagent schedule [--json] [--days N] [--sim]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from posagent.cli.common import add_common, load, setup_language
from posagent.core.i18n import _
from posagent.fleet import schedule


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--days", type=int, default=7, choices=range(1, 32), metavar="N",
                   help="how many days ahead (1-31, default 7)")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    setup_language(args, config)
    now = dt.datetime.now().astimezone()
    plan = schedule.week_ahead(now, config.schedule, config.agent.terminal_id, args.days)
    if getattr(args, "json", False):
        out = {"terminal_id": config.agent.terminal_id, "days": [
            {"date": d.date.isoformat(), "selftest_at": d.selftest_at.isoformat(timespec="seconds"),
             "level": d.level.label, "reason": d.reason or None, "blackout": d.blackout,
             "business_hours": d.business_hours} for d in plan]}
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    print(_("Self-tests of {terminal}, next {days} days").format(terminal=config.agent.terminal_id, days=args.days))
    for d in plan:
        note = _("blackout date") if d.blackout else (d.business_hours and _("business hours {hours}").format(
            hours=d.business_hours)) or ""
        print(f"{d.date.isoformat()} {d.date.strftime('%a')}  {d.selftest_at.strftime('%H:%M')}  "
              f"{_(d.level.label):<9}  {note}")
    return 0
