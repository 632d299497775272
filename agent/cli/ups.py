"""``posagent ups``: UPS maintenance.

    posagent ups battery-changed NAME   a new battery in UPS NAME: its health is measured afresh
    posagent ups battery NAME           the battery tests kept for UPS NAME, and its health (JSON)

The battery's health is its trend against the first tests posagent saw
(``battery-NAME.json`` in the state dir, docs/battery-health.md); after a battery change
the old battery's tests would make the new one look like the old. ``battery-changed``
forgets them (keeping their count and last health figure as ``replaced``), so the next
battery tests set the new baseline, and records the day: a NUT UPS's battery age counts
from it when it is later than the UPS's own ``battery.date``. The daemon reads the file
at every status, so the next heartbeat shows the change.
Exit 0; 64 for a usage error (no such UPS), 77 when this user may not read or write the
battery file (run it with sudo), 74 for another I/O error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from posagent.cli.common import add_maintenance, cannot_read, device_named, load, state_file_error
from posagent.drivers import battery_health as bh

UPS_DRIVERS = ("nut", "megatec")


def configure(p: argparse.ArgumentParser) -> None:
    add_maintenance(p, "UPS", (
        ("battery-changed", "a new battery in UPS NAME: forget the old one's tests"),
        ("battery", "show the battery tests kept for UPS NAME and its health, as JSON")))


def run(args: argparse.Namespace) -> int:
    config = load(args)
    device = device_named(config, args.name, UPS_DRIVERS, "UPS")
    log = bh.BatteryLog(bh.log_path(config.agent.state_dir, device.name))
    aged_pct = float(getattr(device.options, "battery_aged_pct", 70.0))
    code = cannot_read("posagent ups", log.path)
    if code is not None:
        return code
    if args.action == "battery":
        kept = log.load()
        shown = {"ups": device.name, "file": log.path,
                 "battery_health_pct": bh.assess(kept.tests, aged_pct=aged_pct).health_pct,
                 "changed_at": kept.changed_at, "replaced": kept.replaced,
                 "tests": [t.to_json() for t in kept.tests]}
        json.dump(shown, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    try:
        count, last = log.changed(time.time(), aged_pct=aged_pct)
    except OSError as e:
        return state_file_error("posagent ups", "update", log.path, e)
    old = f"{count} test(s), last health ~{last:g} %" if last is not None else f"{count} test(s), no health figure"
    print(f"{device.name}: battery change recorded; the old battery's {old} set aside. "
          f"The next {bh.BASELINE_TESTS} battery tests set the new battery's baseline.")
    return 0
