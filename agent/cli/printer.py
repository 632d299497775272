"""``posagent printer``: printer maintenance.

    posagent printer ribbon-changed NAME   reset the ribbon counter of impact printer NAME
    posagent printer counters NAME         show the printer's consumables counters (JSON)

The counters live in the state dir (``printer-NAME.json``); the daemon reads them on
every status, so a reset shows in the next heartbeat.
Exit 0; 64 for a usage error, 77 when this user may not read or write the counters (run it
with sudo: the state dir is the service's), 74 for another I/O error.
"""

from __future__ import annotations

import argparse
import json
import sys

from posagent.cli.common import UsageError, add_maintenance, cannot_read, device_named, load, state_file_error
from posagent.drivers.escpos.counters import CounterStore, counter_path, ribbon_grade


def configure(p: argparse.ArgumentParser) -> None:
    add_maintenance(p, "printer", (
        ("ribbon-changed", "the ribbon of printer NAME was replaced: reset its counter"),
        ("counters", "show printer NAME's consumables counters as JSON")))


def run(args: argparse.Namespace) -> int:
    config = load(args)
    device = device_named(config, args.name, ("escpos",), "printer")
    store = CounterStore(counter_path(config.agent.state_dir, device.name))
    opts = device.options
    code = cannot_read("posagent printer", store.path)
    if code is not None:
        return code
    try:
        if args.action == "counters":
            json.dump({"printer": device.name, "file": store.path, **vars(store.read())}, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        if not opts.impact:
            raise UsageError(f"printer '{device.name}' is not an impact printer (set impact = true in its "
                             "[device.options] to track a ribbon)")
        counters, old = store.ribbon_changed()
    except OSError as e:
        return state_file_error("posagent printer", "update", store.path, e)
    _state, pct = ribbon_grade(old, opts.ribbon_life_lines, opts.ribbon_warn_pct)
    used = f" ({pct:g} % of its rated life)" if pct is not None else ""
    print(f"{device.name}: ribbon counter reset at {counters.ribbon_changed_at}; "
          f"the old ribbon printed {old} lines{used}")
    return 0
