"""``posagent status``: current device status at the internal level; exit 0/1/2/3."""

from __future__ import annotations

import argparse
import json
import sys

from posagent.cli.common import add_common, exit_code, load, only_names, output_format, setup_language
from posagent.core.i18n import _
from posagent.core.status import worst
from posagent.selftest import nagios
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import device_json, render_table, summary_line
from posagent.selftest.runner import Runner


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    setup_language(args, config)
    with DeviceSet(config) as devices:
        results = Runner(devices).status(only_names(args, config))
    statuses = [r.status for _d, r in results.values()]
    fmt = output_format(args)
    if fmt == "nagios":
        text, code = nagios.render([(name, r) for name, (_drv, r) in results.items()], "devices")
        sys.stdout.write(text)
        return code
    if fmt == "json":
        out = {"schema": "posagent.status/1", "terminal_id": config.agent.terminal_id,
               "status": worst(statuses).label,
               "devices": {name: device_json(drv, r) for name, (drv, r) in results.items()}}
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        rows = [(name, "status", r, drv) for name, (drv, r) in results.items()]
        render_table(rows, sys.stdout, _("Status of {terminal}").format(terminal=config.agent.terminal_id))
        print(summary_line(statuses))
    return exit_code(statuses)
