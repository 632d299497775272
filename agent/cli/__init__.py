"""The ``posagent`` command line.

Commands are modules imported only when chosen, so ``posagent --version`` and
``posagent --help`` load nothing beyond argparse. Each command module offers
``configure(parser)`` and ``run(args) -> int``; it uses the services (``posagent.fleet``
and below), never the daemon, except ``run``, the command that starts it. This dispatcher
is the one place that imports inside functions: the chosen command, and what running it
and reporting its errors needs.

Exit codes: 0 ok, 1 warn, 2 fail, 3 unknown (monitoring-plugins convention, for
``selftest`` and ``status``); 64 usage error, 78 config error (sysexits), 70 internal
error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from posagent.core.version import __version__

EX_USAGE = 64
EX_SOFTWARE = 70
EX_CONFIG = 78

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "selftest": ("posagent.cli.selftest", "run the self-test now and print a table (or JSON)"),
    "status": ("posagent.cli.status", "current device status, internal level only"),
    "run": ("posagent.cli.run", "the daemon (what systemd starts)"),
    "heartbeat": ("posagent.cli.heartbeat", "the heartbeat the agent would send now"),
    "inventory": ("posagent.cli.inventory", "what the terminal is made of: system, devices, ports, USB"),
    "history": ("posagent.cli.history", "past self-test runs, and when faults appeared and cleared"),
    "schedule": ("posagent.cli.schedule", "the next days' self-tests, their level and the quiet windows"),
    "printer": ("posagent.cli.printer", "printer maintenance (ribbon-changed)"),
    "ups": ("posagent.cli.ups", "UPS maintenance (battery-changed)"),
    "drivers": ("posagent.cli.drivers", "the installed drivers"),
    "config": ("posagent.cli.config", "validate a config file"),
    "commands": ("posagent.cli.commands", "check a signed remote command: what this terminal would do with it"),
    "sim": ("posagent.cli.sim", "start the simulated devices and print their URLs"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with sysexits: usage errors exit 64, not 2 (2 means 'fail' here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: usage error: {message}\n")


def _parser(command: str | None) -> ArgumentParser:
    parser = ArgumentParser(prog="posagent", description="Health agent for POS terminals.")
    parser.add_argument("--version", action="version", version=f"posagent {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="config file (default: $POSAGENT_CONFIG or /etc/posagent/posagent.toml)")
    parser.add_argument("--debug", action="store_true", help="log details, including tracebacks, to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _tolerant_streams()
    # Whoever starts it (systemd, a technician with sudo), what the agent writes is its own:
    # state dir 0700, files 0600. Files others must read say so themselves (the Prometheus
    # textfile 0644, a UUCP lock file 0644, a proxy's pty 0660).
    os.umask(0o077)
    command = next((a for a in argv if a in COMMANDS), None)
    try:
        parser = _parser(command)
    except ModuleNotFoundError as e:
        from posagent.core.i18n import _, detect_language, set_language  # deferred: --version stays light

        set_language(detect_language(None, None))
        print(_("posagent: command '{command}' is not available in this build ({module})").format(
            command=command, module=e.name), file=sys.stderr)
        return EX_SOFTWARE
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EX_USAGE
    _setup_logging(args.debug)
    # deferred: only a command that runs needs these; --version and --help stay light
    from posagent.cli.common import UsageError
    from posagent.config.errors import ConfigError
    from posagent.core.i18n import _, detect_language, set_language

    # Errors before the config is read (or about it) follow --lang and the locale.
    set_language(detect_language(getattr(args, "lang", None), None))

    try:
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args))
    except ConfigError as e:
        for line in e.problems:
            print(_("posagent: config error: {problem}").format(problem=line), file=sys.stderr)
        return EX_CONFIG
    except UsageError as e:
        print(_("posagent: usage error: {problem}").format(problem=e), file=sys.stderr)
        return EX_USAGE
    except KeyboardInterrupt:
        print(_("posagent: interrupted"), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        if args.debug:
            raise
        import logging  # deferred: --version stays light

        logging.getLogger("posagent").error("internal error", exc_info=True)
        print(_("posagent: internal error: {error} (run with --debug for details)").format(
            error=f"{type(e).__name__}: {e}"), file=sys.stderr)
        return EX_SOFTWARE


def _tolerant_streams() -> None:
    """A terminal or pipe that cannot show a character (Chinese text on a latin-1 or ASCII
    console) gets a replacement mark instead of the whole table being lost."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


def _setup_logging(debug: bool) -> None:
    import logging  # deferred: --version stays light

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="posagent: %(levelname)s %(name)s: %(message)s")
    if not debug:
        # Tracebacks go to the log only in --debug; a user never sees one on the console.
        logging.getLogger().handlers[0].addFilter(_NoTraceback())


class _NoTraceback:
    def filter(self, record: object) -> bool:
        record.exc_info = None  # type: ignore[attr-defined]
        record.exc_text = None  # type: ignore[attr-defined]
        return True
