"""The diagnostics bundle a ``diagnostics`` command asks for (``posagent.diagnostics/1``).

What it holds: the config with every secret removed (URLs redacted with
``config.urls.redact_url``; values of keys that name a password, secret, pin or passphrase
dropped; file *paths* such as ``token_file`` kept), the last ``[commands] log_lines`` lines
this agent logged (from the journal when the agent runs under systemd and ``journalctl``
answers in time, else from the in-memory ring the daemon keeps: ``LogRing``), state
summaries (the last self-test, counters, the next planned self-test, the replay cache),
the outbox figures and the identities of the devices (driver, model, firmware). Card data
never reaches a log line or a device's status, so it cannot reach the bundle; every log
line is still passed through the URL redaction and cut to ``MAX_LINE`` characters.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

from posagent.config.model import Config
from posagent.config.urls import redact_url
from posagent.fleet.messages import DeviceResults, devices_json

log = logging.getLogger(__name__)
__all__ = ["IDENTITY_FIELDS", "MAX_LINE", "LogRing", "bundle", "install_ring", "journal_lines", "redacted_config",
           "scrub"]

MAX_LINE = 500
#: The most lines the ring keeps (``[commands] log_lines`` is at most 5000).
RING_MAX = 5000
JOURNAL_TIMEOUT = 5.0
#: What a device's status says about what it is (no readings, no card data).
IDENTITY_FIELDS = ("driver", "status", "code", "model", "firmware", "maker", "serial", "vendor", "product")
#: A config key is secret when one of its words (split at ``_``) is one of these.
_SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "pass", "secret", "pin", "credential", "credentials",
                           "private", "psk", "apikey"})
_URLISH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


class LogRing(logging.Handler):
    """The agent's last log lines in memory (a bounded deque), formatted like stderr."""

    def __init__(self, capacity: int = RING_MAX) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self._ring_lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record_copy = logging.makeLogRecord(record.__dict__)
            record_copy.exc_info = None  # no tracebacks in the bundle
            record_copy.exc_text = None
            text = self.format(record_copy)
        except Exception:  # a log line must never cost the caller
            return
        with self._ring_lock:
            for line in text.splitlines()[:5]:
                self.lines.append(line)

    def last(self, n: int) -> list[str]:
        with self._ring_lock:
            return list(self.lines)[-n:] if n > 0 else []


_ring: LogRing | None = None


def install_ring() -> LogRing:
    """The process's ring on the ``posagent`` logger (added once)."""
    global _ring
    if _ring is None:
        _ring = LogRing()
        logging.getLogger("posagent").addHandler(_ring)
    return _ring


def journal_lines(n: int, env: Mapping[str, str] | None = None) -> list[str] | None:
    """This service's last ``n`` journal lines (``journalctl _SYSTEMD_INVOCATION_ID=...``),
    or None when not under systemd, without journalctl, or when it does not answer in time."""
    environ = os.environ if env is None else env
    invocation = environ.get("INVOCATION_ID", "")
    exe = shutil.which("journalctl")
    if n <= 0 or not exe or not re.fullmatch(r"[0-9a-f]{32}", invocation):
        return None
    argv = [exe, "--no-pager", "-q", "-o", "short-iso", "-n", str(n), f"_SYSTEMD_INVOCATION_ID={invocation}"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=JOURNAL_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    return lines[-n:] if lines else None


def clean_line(line: str) -> str:
    """A log line for the bundle: URLs redacted, cut to MAX_LINE characters."""
    return _URLISH.sub(lambda m: redact_url(m.group(0)), line)[:MAX_LINE]


def scrub(value: Any) -> Any:
    """Config values as JSON: dataclasses as objects, durations as numbers, URLs redacted."""
    redacted = getattr(value, "redacted", None)
    if callable(redacted):  # a DeviceURL
        return str(redacted())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _field(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _field(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub(v) for v in value]
    if isinstance(value, enum.Enum):
        return scrub(value.value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    return str(value)


def _field(name: str, value: Any) -> Any:
    secret = bool(_SECRET_WORDS.intersection(name.lower().replace("-", "_").split("_")))
    if secret and not name.endswith(("_file", "_path", "_files")) and value not in ("", None):
        return "***"
    return scrub(value)


def redacted_config(config: Config) -> dict[str, Any]:
    """``config`` as JSON with every secret removed (see the module doc)."""
    out = scrub(config)
    assert isinstance(out, dict)
    out["path"] = os.path.basename(config.path)
    return out


def identities(results: DeviceResults | None) -> dict[str, dict[str, Any]]:
    """Each device's identity fields from the latest status round."""
    if not results:
        return {}
    return {name: {k: v for k, v in dev.items() if k in IDENTITY_FIELDS and v is not None}
            for name, dev in devices_json(results).items()}


def bundle(config: Config, *, log_lines: list[str], log_source: str, state: dict[str, Any],
           outbox: dict[str, Any], results: DeviceResults | None) -> dict[str, Any]:
    """The bundle's fields (the envelope is added by ``messages.diagnostics``)."""
    return {
        "config": redacted_config(config),
        "log": {"source": log_source, "lines": [clean_line(x) for x in log_lines]},
        "state": state,
        "outbox": outbox,
        "devices": identities(results),
    }
