"""``posagent status``: current device status at the internal level; exit 0/1/2/3."""

from __future__ import annotations

import argparse
import json
import sys
import time

from posagent.cli.common import add_common, exit_code, load, only_names, output_format, setup_language
from posagent.core.i18n import N_, _
from posagent.core.status import worst
from posagent.fleet.outbox_recover import recovered_stores
from posagent.selftest import nagios
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import device_json, render_table, summary_line
from posagent.selftest.runner import Runner

#: A damaged state store replaced in the last 30 days is shown by ``posagent status``.
RECOVERED_SHOWN = 30 * 86400.0
#: The store names, translated in the line above.
_STORE_NAMES = (N_("outbox"), N_("history"))


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
    recovered = recovered_stores(config.agent.state_dir, time.time() - RECOVERED_SHOWN)
    if fmt == "json":
        out: dict[str, object] = {"schema": "posagent.status/1", "terminal_id": config.agent.terminal_id,
                                  "status": worst(statuses).label,
                                  "devices": {name: device_json(drv, r) for name, (drv, r) in results.items()}}
        if recovered:
            out["state_recovered"] = recovered
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        rows = [(name, "status", r, drv) for name, (drv, r) in results.items()]
        render_table(rows, sys.stdout, _("Status of {terminal}").format(terminal=config.agent.terminal_id))
        print(summary_line(statuses))
        for r in recovered:
            print(_("The agent's {store} store was damaged and replaced at {at}; the damaged file is kept as "
                    "{kept_as}. If it happens again, check the disk and the power supply.").format(
                store=_(r["store"]), at=r["at"][:16].replace("T", " "), kept_as=r["kept_as"]))
    return exit_code(statuses)
