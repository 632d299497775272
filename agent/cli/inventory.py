"""``posagent inventory``: what the terminal is made of (``posagent.inventory/1``).

The devices are asked for their status (internal level, as ``posagent status``); their
identities come from what the drivers already know (a printer's GS I answers are
remembered from its self-test's identity check): nothing else is sent to a device.
``--json`` prints the message the fleet would receive, not committed: its ``trigger`` is
``cli`` and its ``seq`` the one the outbox would give it next (as ``selftest --json``).
Exit 0 (78 for a config error, 64 for a usage error).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from posagent.cli.common import add_config, load_selected, preview, setup_language
from posagent.core.base import Driver
from posagent.core.i18n import _
from posagent.fleet import inventory, messages
from posagent.selftest.devices import Broken, DeviceSet
from posagent.selftest.runner import Runner
from posagent.selftest.textwidth import pad, width

NONE = "-"


def configure(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--sim", action="store_true",
                   help="use the built-in simulated terminal instead of the config's devices")
    p.add_argument("--state-dir", metavar="DIR",
                   help="with --sim: keep the simulated terminal's state here (default: a temporary directory)")
    p.add_argument("--json", action="store_true", help="print the posagent.inventory/1 message (not sent)")
    p.add_argument("--lang", choices=["en", "zh-CN"], help="language of the table")
    p.add_argument("--only", metavar="NAMES", help="comma-separated device names")


def run(args: argparse.Namespace) -> int:
    config = load_selected(args)
    setup_language(args, config)
    with DeviceSet(config) as devices:
        results = Runner(devices).status()
        drivers: dict[str, Driver | None] = {}
        for name in devices.names():
            entry = devices.get(name)
            drivers[name] = None if isinstance(entry, Broken) else entry
        content = inventory.collect(config, drivers, results)
    if args.json:
        message = preview(config, messages.inventory(config, content, "cli"))
        json.dump(message, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        render(config.agent.terminal_id, content, sys.stdout)
    return 0


def _v(value: Any) -> str:
    return NONE if value in (None, "") else str(value)


def _table(heads: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(heads)]
    print("  " + "  ".join(pad(h, w) for h, w in zip(heads, widths, strict=True)).rstrip(), file=out)
    for row in rows:
        print("  " + "  ".join(pad(c, w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def render(terminal: str, content: dict[str, Any], out: TextIO) -> None:
    """The inventory as a technician reads it, in the chosen language."""
    system = content["system"]
    os_info = system.get("os") or {}
    print(_("Inventory of {terminal}").format(terminal=terminal), file=out)
    print("", file=out)
    print(_("System"), file=out)
    pairs = [(_("Operating system"), _v(os_info.get("pretty_name") or os_info.get("name"))),
             (_("Kernel"), _v(system.get("kernel"))), (_("Architecture"), _v(system.get("arch"))),
             (_("Python"), _v(system.get("python"))), ("posagent", _v(system.get("posagent"))),
             (_("Host name"), _v(system.get("hostname")))]
    label_w = max(width(k) for k, _x in pairs)
    for key, value in pairs:
        print(f"  {pad(key, label_w)}  {value}", file=out)
    print("", file=out)
    print(_("Devices"), file=out)
    rows = [[name, d["driver"], _v(d.get("maker")), _v(d.get("model")), _v(d.get("firmware")), _v(d.get("serial")),
             _usb_text(d.get("usb"))] for name, d in content["devices"].items()]
    _table([_("DEVICE"), _("DRIVER"), _("MAKER"), _("MODEL"), _("FIRMWARE"), _("SERIAL NO."), _("USB")], rows, out)
    print("", file=out)
    ports = content["serial_ports"]
    names = ", ".join(p["path"] + (f" (USB {p['usb']})" if p.get("usb") else "") for p in ports)
    print(_("Serial ports: {ports}").format(ports=names or _("none")), file=out)
    print("", file=out)
    usb = content["usb"]
    if not usb:
        print(_("USB devices: none"), file=out)
        return
    print(_("USB devices"), file=out)
    _table([_("BUS"), _("ID"), _("MANUFACTURER"), _("PRODUCT"), _("SERIAL NO.")],
           [[u["bus_id"], f"{u['vendor_id']}:{u['product_id']}", _v(u.get("manufacturer")), _v(u.get("product")),
             _v(u.get("serial"))] for u in usb], out)


def _usb_text(usb: dict[str, Any] | None) -> str:
    if not usb:
        return NONE
    return f"{usb['vendor_id']}:{usb['product_id']}" + (f" {usb['serial']}" if usb.get("serial") else "")
