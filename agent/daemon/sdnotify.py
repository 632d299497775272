"""sd_notify(3) written directly: one AF_UNIX datagram of ``KEY=VALUE`` lines.

``$NOTIFY_SOCKET`` is a filesystem path or, starting with ``@``, an abstract socket name.
Without it (not started by systemd) every call is a no-op. Sending never raises: a
notification that cannot be delivered is logged once at debug level.

Watchdog: systemd passes ``WATCHDOG_USEC`` (and usually ``WATCHDOG_PID``); the daemon pings
every half interval from its main loop, and only if ``WATCHDOG_PID`` is unset or its own.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str | None) -> str | bytes | None:
    """The address to send to: a path, or bytes starting with NUL for an abstract socket."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None  # vsock: and relative paths are not supported


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env.get("NOTIFY_SOCKET"))
        self._sock: socket.socket | None = None
        self._warned = False
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (keys upper-cased); True if the datagram went out."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one line per field
            lines.append(f"{key.upper()}={text}")
        payload = "\n".join(lines).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self.address)
            return True
        except OSError as e:
            if not self._warned:
                log.debug("sd_notify to %r failed: %s", self.address, e)
                self._warned = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify(ready=1, status=status) if status else self.notify(ready=1)

    def status(self, text: str) -> bool:
        return self.notify(status=text)

    def reloading(self) -> bool:
        return self.notify(reloading=1)

    def stopping(self, status: str = "") -> bool:
        return self.notify(stopping=1, status=status) if status else self.notify(stopping=1)

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when the watchdog is not ours."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000.0
