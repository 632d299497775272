"""Shared command-line pieces: --sim/--config/--only handling, language, exit codes."""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import shutil
import sys
import tempfile
from typing import Any

from posagent.config import Config, DeviceConfig, load_config, resolve_path, sim_config_path
from posagent.config.errors import did_you_mean
from posagent.core.base import Level, Status
from posagent.core.i18n import _, detect_language, set_language
from posagent.core.status import worst
from posagent.fleet import messages
from posagent.fleet.messages import Finalizer
from posagent.fleet.outbox import OutboxError
from posagent.fleet.outbox_db import peek

EX_IOERR = 74
EX_NOPERM = 77


def cannot_read(prog: str, path: str) -> int | None:
    """A state file this user cannot read (the state dir is the service's) is said as such,
    not shown as empty: the exit code (77 permission, 74 other), or None when it can be
    read or is not there yet."""
    try:
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        return None
    except OSError as e:
        return state_file_error(prog, "read", path, e)


def state_file_error(prog: str, verb: str, path: str, e: OSError) -> int:
    """Say why a state file could not be read or written; the exit code (77 permission, 74 other)."""
    reason = e.strerror or str(e)
    said = (_("cannot read {path}: {reason}") if verb == "read" else
            _("cannot update {path}: {reason}")).format(path=path, reason=reason)
    print(f"{prog}: {said}", file=sys.stderr)
    if isinstance(e, PermissionError):
        print(f"{prog}: " + _("The state dir is the service's: run it with sudo."), file=sys.stderr)
        return EX_NOPERM
    return EX_IOERR


class UsageError(Exception):
    """Bad command-line use that argparse cannot see (exit 64)."""


def add_config(p: argparse.ArgumentParser) -> None:
    """--config accepted after the command too (``posagent status --config F``)."""
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="config file (default: $POSAGENT_CONFIG or /etc/posagent/posagent.toml)")


def add_maintenance(p: argparse.ArgumentParser, what: str, actions: tuple[tuple[str, str], ...]) -> None:
    """``posagent <family> ACTION NAME``: one subcommand per action, each on one device."""
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    sub.required = True
    for name, help_text in actions:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("name", metavar="NAME", help=f"the {what}'s device name in the config")
        add_config(sp)
        sp.add_argument("--sim", action="store_true", help=f"the built-in simulated terminal's {what}")


def device_named(config: Config, name: str, drivers: tuple[str, ...], what: str) -> DeviceConfig:
    """The device ``name`` of one of ``drivers``; a UsageError naming the ones there are."""
    devices = [d for d in config.devices if d.driver in drivers]
    device = next((d for d in devices if d.name == name), None)
    if device is None:
        names = ", ".join(d.name for d in devices) or "none"
        raise UsageError(f"no {what} named '{name}' in {config.path} ({what} devices: {names})")
    return device


def add_common(p: argparse.ArgumentParser, *, sim: bool = True, json: bool = True, lang: bool = True) -> None:
    add_config(p)
    if sim:
        p.add_argument("--sim", action="store_true",
                       help="use the built-in simulated terminal instead of the config's devices")
        p.add_argument("--state-dir", metavar="DIR",
                       help="with --sim: keep the simulated terminal's state (history, counters) here "
                            "(default: a temporary directory of this run, removed at exit)")
    if json:
        p.add_argument("--json", action="store_true", help="print one JSON object for machines (= --format json)")
        p.add_argument("--format", choices=["table", "json", "nagios"], default="table",
                       help="table (default), json, or nagios: one line with perfdata for monitoring systems "
                            "(Nagios, Icinga, Zabbix), exit 0/1/2/3")
    if lang:
        p.add_argument("--lang", choices=["en", "zh-CN"], help="language of the table and messages")
    p.add_argument("--only", metavar="NAMES", help="comma-separated device names")


def output_format(args: argparse.Namespace) -> str:
    """table, json or nagios (``--json`` is ``--format json``)."""
    return "json" if getattr(args, "json", False) else str(getattr(args, "format", "table"))


def sim_state_dir(given: str | None = None) -> str:
    """The simulated terminal's state dir: ``--state-dir``, else a directory of this run
    alone (removed at exit), so two checkouts or two users never share one."""
    if given:
        return given
    path = tempfile.mkdtemp(prefix="posagent-sim-")
    atexit.register(shutil.rmtree, path, True)
    return path


def load(args: argparse.Namespace) -> Config:
    if getattr(args, "sim", False):
        path = args.config or sim_config_path()
        return load_config(path, state_dir_override=sim_state_dir(getattr(args, "state_dir", None)))
    return load_config(resolve_path(args.config))


def load_selected(args: argparse.Namespace) -> Config:
    """The config with only the ``--only`` devices (all without it)."""
    config = load(args)
    names = only_names(args, config)
    if names:
        config = dataclasses.replace(config, devices=[d for d in config.devices if d.name in names])
    return config


def setup_language(args: argparse.Namespace, config: Config | None) -> str:
    lang = detect_language(getattr(args, "lang", None), config.agent.language if config else None)
    if lang == "zh-CN" and not _can_show("中文"):
        lang = "en"  # a console that cannot show Chinese (latin-1, ASCII) gets English, not "???"
    set_language(lang)
    return lang


def _can_show(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def only_names(args: argparse.Namespace, config: Config) -> list[str] | None:
    raw = getattr(args, "only", None)
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise UsageError("--only needs at least one device name")
    known = {d.name for d in config.devices}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(_("--only: no device named '{name}' in {file} ({suggestion})").format(
            name=unknown[0], file=config.path, suggestion=did_you_mean(unknown[0], known)))
    return names


def parse_level(text: str) -> Level:
    return Level[text.upper()]


def exit_code(statuses: list[Status]) -> int:
    """0/1/2/3 by worst result; no results at all is unknown."""
    return int(worst(statuses))


def preview(config: Config, finalize: Finalizer) -> dict[str, Any]:
    """A message as the fleet would receive it, not committed: its seq is the one the outbox
    would give it next (``posagent heartbeat --json``, ``selftest --json``)."""
    try:
        stats = peek(config.agent.state_dir)
    except OutboxError as e:
        print(f"posagent: {e}; the outbox figures below read 0", file=sys.stderr)
        stats = None
    return messages.preview(finalize, stats.seq + 1 if stats is not None else 1, stats)
