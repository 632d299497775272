"""``posagent config check [FILE]``: validate a config without running anything."""

from __future__ import annotations

import argparse

from posagent.cli.common import add_config
from posagent.config import load_config, resolve_path
from posagent.config.loader import example_config_path
from posagent.core.i18n import _


def configure(p: argparse.ArgumentParser) -> None:
    add_config(p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    check = sub.add_parser("check", help="validate a config file and report every problem")
    check.add_argument("file", nargs="?", help="config file (default: the agent's config)")
    sub.add_parser("example", help="print the commented example config")


def run(args: argparse.Namespace) -> int:
    if args.action == "example":
        with open(example_config_path(), encoding="utf-8") as fh:
            print(fh.read(), end="")
        return 0
    path = args.file or resolve_path(getattr(args, "config", None))
    config = load_config(path)  # ConfigError -> one line per problem, exit 78
    names = ", ".join(f"{d.name} ({d.driver})" for d in config.devices) or _("no devices")
    print(_("{file}: OK: terminal {terminal}, {count} device(s): {names}").format(
        file=path, terminal=config.agent.terminal_id, count=len(config.devices), names=names))
    return 0
