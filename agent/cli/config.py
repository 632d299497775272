"""``posagent config check [FILE]``: validate a config without running anything.

Besides the file itself it runs the daemon's check of ``[upstream] token_file`` (private
to the agent's user, one line, not empty: ``posagent.fleet.upstream.read_token``), so a
token file readable by others fails here (exit 78) and not first in the journal. A token
file that does not exist on this machine (checking a config written for another) is a
warning only.
"""

from __future__ import annotations

import argparse
import os
import sys

from posagent.cli.common import add_config
from posagent.config import Config, ConfigError, load_config, resolve_path
from posagent.config.errors import problem
from posagent.config.loader import example_config_path
from posagent.core.i18n import _
from posagent.fleet.commands import load_keys
from posagent.fleet.upstream import UpstreamError, read_token


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
    check_token_file(config)
    check_command_keys(config)
    names = ", ".join(f"{d.name} ({d.driver})" for d in config.devices) or _("no devices")
    print(_("{file}: OK: terminal {terminal}, {count} device(s): {names}").format(
        file=path, terminal=config.agent.terminal_id, count=len(config.devices), names=names))
    return 0


def check_token_file(config: Config) -> None:
    """The daemon's token-file check; raises ConfigError (exit 78) with its one line."""
    token_file = config.upstream.token_file
    if not token_file:
        return
    if not os.path.lexists(token_file):
        print(_("posagent: warning: {file}: upstream.token_file {token} does not exist here; "
                "the daemon needs it (mode 600)").format(file=config.path, token=token_file), file=sys.stderr)
        return
    try:
        read_token(config.upstream)
    except UpstreamError as e:
        raise ConfigError([problem(config.path, "upstream.token_file", str(e))]) from None


def check_command_keys(config: Config) -> None:
    """The daemon's check of ``[commands] public_keys``: each a PEM Ed25519 public key;
    raises ConfigError (exit 78) naming every file that is not."""
    _keys, bad = load_keys(list(config.commands.public_keys))
    if bad:
        raise ConfigError([problem(config.path, "commands.public_keys", str(e)) for e in bad])
