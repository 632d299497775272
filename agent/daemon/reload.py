"""The daemon's reload (SIGHUP), first half: the new config is loaded and the old devices are
closed in a thread while the main loop goes on (pinging the watchdog, committing events).

``Reload.begin()`` sends sd_notify ``RELOADING=1`` and loads the new config; a bad one is
logged, the old one kept (``READY=1`` with a status saying so). A good one starts the close;
``ready()`` hands the new config over once the old devices are closed, or after
``STOP_GRACE`` seconds (a device that does not let go is left behind). The second half,
building the new services and switching them in, is ``posagent.daemon.services.build``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from posagent.config.errors import ConfigError
from posagent.config.model import Config
from posagent.daemon.sdnotify import Notifier
from posagent.daemon.services import STOP_GRACE, close_devices
from posagent.selftest.devices import DeviceSet

log = logging.getLogger("posagent.daemon.loop")  # the daemon's lines keep the loop's logger name


class Reload:
    def __init__(self, load: Callable[[], Config], notifier: Notifier) -> None:
        self._load = load
        self._notifier = notifier
        self._closing: tuple[threading.Thread, float, Config] | None = None  # closer, deadline, new config

    @property
    def closing(self) -> bool:
        """True while the old devices are being closed: there are no devices to run jobs on."""
        return self._closing is not None

    @property
    def deadline(self) -> float | None:
        """When ``ready()`` gives up waiting for the close (time.monotonic()), while closing."""
        return self._closing[1] if self._closing is not None else None

    def begin(self, devices: DeviceSet) -> bool:
        """Load the new config; if it is good, start closing ``devices`` and return True."""
        self._notifier.reloading()
        try:
            new = self._load()
        except ConfigError as e:
            for line in e.problems:
                log.error("reload failed, keeping the old config: %s", line)
            self._notifier.ready(status="reload failed: config error, old config kept (see the log)")
            return False
        except Exception as e:
            log.error("reload failed, keeping the old config: %s: %s", type(e).__name__, e)
            self._notifier.ready(status="reload failed, old config kept")
            return False
        self._closing = (close_devices(devices), time.monotonic() + STOP_GRACE, new)
        return True

    def ready(self, now: float) -> Config | None:
        """The new config, once the old devices are closed or given up on; else None."""
        if self._closing is None:
            return None
        closer, deadline, new = self._closing
        if closer.is_alive() and now < deadline:
            return None
        self._closing = None
        if closer.is_alive():
            log.warning("reload: a device did not close within %g s; it is left behind", STOP_GRACE)
        return new

    def join(self) -> None:
        """At stop: wait for a close in progress, up to its deadline."""
        if self._closing is not None:
            closer, deadline, _new = self._closing
            closer.join(max(0.0, deadline - time.monotonic()))
