"""``posagent run [--sim] [--once] [--upstream URL]``: the daemon (what systemd starts).

Logs go to stderr, which systemd hands to the journal (``journalctl -u posagent``); under
systemd each line carries its syslog priority so ``journalctl -p warning`` works.
``--once`` sends one heartbeat (and the backlog), then exits: for tests and benchmarks
(``posagent heartbeat``'s send, no daemon). The only command that imports the daemon.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from typing import ClassVar

from posagent.cli.common import UsageError, add_common, load_selected
from posagent.cli.heartbeat import send
from posagent.config.model import Config
from posagent.config.urls import redact_url
from posagent.daemon.loop import Daemon


def configure(p: argparse.ArgumentParser) -> None:
    add_common(p, json=False, lang=False)
    p.add_argument("--once", action="store_true", help="send one heartbeat (and any backlog), then exit")
    p.add_argument("--upstream", metavar="URL", help="send reports to URL instead of the config's [upstream] url")
    p.add_argument("--allow-insecure-http", action="store_true",
                   help="allow a plain http:// upstream (tests, lab networks)")


def load_for_run(args: argparse.Namespace) -> Config:
    config = load_selected(args)
    url = args.upstream or config.upstream.url
    insecure = args.allow_insecure_http or config.upstream.allow_insecure_http
    if args.upstream:
        shown = redact_url(url)  # a token in its query string must not reach the terminal's scrollback
        scheme = url.split(":", 1)[0].lower()
        if scheme not in ("http", "https", "mqtt", "mqtts"):
            raise UsageError(f"--upstream {shown}: not an http(s) or mqtt(s) URL")
        if scheme in ("http", "mqtt") and not insecure:
            raise UsageError(f"--upstream {shown} is plain {scheme}: add --allow-insecure-http (lab networks only)")
    if (url, insecure) != (config.upstream.url, config.upstream.allow_insecure_http):
        config = dataclasses.replace(config, upstream=dataclasses.replace(config.upstream, url=url,
                                                                           allow_insecure_http=insecure))
    return config


def run(args: argparse.Namespace) -> int:
    if not args.once:  # a reload request before the daemon is up must not kill it
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = load_for_run(args)
    _setup_logging(args.debug if hasattr(args, "debug") else False)
    if args.once:
        return send(config, drain=True)
    return Daemon(config, reload=lambda: load_for_run(args)).run()


class _JournalFormatter(logging.Formatter):
    """``<N>`` syslog priority prefixes, which journald turns into the entry's priority."""

    _PRIO: ClassVar[dict[int, int]] = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                                       logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = self._PRIO.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def _under_journal() -> bool:
    value = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def _setup_logging(debug: bool) -> None:
    logging.getLogger("posagent").setLevel(logging.DEBUG if debug else logging.INFO)
    if _under_journal():
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
