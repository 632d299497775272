"""``posagent printer``: printer maintenance.

    posagent printer ribbon-changed NAME   reset the ribbon counter of impact printer NAME
    posagent printer counters NAME         show the printer's consumables counters (JSON)

The counters live in the state dir (``printer-NAME.json``); the daemon reads them on
every status, so a reset shows in the next heartbeat.
"""

from __future__ import annotations

import argparse
import json
import sys

from posagent.cli.common import UsageError, add_config, load
from posagent.drivers.escpos.counters import CounterStore, counter_path, ribbon_grade

EX_IOERR = 74


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    sub.required = True
    for name, help_text in (("ribbon-changed", "the ribbon of printer NAME was replaced: reset its counter"),
                            ("counters", "show printer NAME's consumables counters as JSON")):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("name", metavar="NAME", help="the printer's device name in the config")
        add_config(sp)
        sp.add_argument("--sim", action="store_true", help="the built-in simulated terminal's printer")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    printers = [d for d in config.devices if d.driver == "escpos"]
    device = next((d for d in printers if d.name == args.name), None)
    if device is None:
        names = ", ".join(d.name for d in printers) or "none"
        raise UsageError(f"no printer named '{args.name}' in {config.path} (printers: {names})")
    store = CounterStore(counter_path(config.agent.state_dir, device.name))
    opts = device.options
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
        print(f"posagent printer: cannot update {store.path}: {e.strerror or e}", file=sys.stderr)
        return EX_IOERR
    _state, pct = ribbon_grade(old, opts.ribbon_life_lines, opts.ribbon_warn_pct)
    used = f" ({pct:g} % of its rated life)" if pct is not None else ""
    print(f"{device.name}: ribbon counter reset at {counters.ribbon_changed_at}; "
          f"the old ribbon printed {old} lines{used}")
    return 0
