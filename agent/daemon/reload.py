"""The daemon's reload (SIGHUP): the new config is loaded, the old devices are closed in a
thread while the main loop goes on, then the new devices, outbox and upstream are switched in.

A mixin of ``Daemon`` (``posagent.daemon.loop``), with the helpers that open the outbox and the
upstream of a config (used at start and on reload). A bad new config is logged and the
old one kept.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from posagent.config.errors import ConfigError
from posagent.config.model import Config
from posagent.daemon.sdnotify import Notifier
from posagent.fleet.changes import ChangeTracker
from posagent.fleet.delivery import Delivery
from posagent.fleet.messages import AgentState
from posagent.fleet.outbox import Outbox, OutboxError
from posagent.fleet.upstream import RetryPolicy, Upstream, UpstreamError
from posagent.selftest.devices import DeviceSet
from posagent.selftest.runner import Runner

log = logging.getLogger("posagent.daemon.loop")

STOP_GRACE = 5.0  # seconds a running check may take to finish on SIGTERM before it is abandoned


def open_outbox(config: Config) -> Outbox:
    up = config.upstream
    return Outbox(config.agent.state_dir, max_bytes=int(up.spool_max_mb * 2**20), max_age=float(up.spool_max_age))


def make_upstream(config: Config, policy: RetryPolicy | None = None) -> tuple[Upstream | None, str | None]:
    """(upstream, problem): no URL configured is (None, None); a bad setting is (None, reason)."""
    if not config.upstream.url:
        return None, None
    try:
        return Upstream(config.upstream, policy=policy or RetryPolicy()), None
    except UpstreamError as e:
        return None, str(e)



class ReloadMixin:
    """SIGHUP for ``Daemon``; ``_finish_reload`` is called from the main loop on every wake."""

    config: Config
    _reload_fn: Callable[[], Config]
    notifier: Notifier
    state: AgentState
    devices: DeviceSet | None
    runner: Runner | None
    outbox: Outbox | None
    delivery: Delivery | None
    changes: ChangeTracker
    _wake: threading.Event
    _closing: tuple[threading.Thread, float, Config] | None
    _latest: Any
    _hold_until: float
    _next_hb: float
    _next_poll: float

    if TYPE_CHECKING:  # provided by Daemon
        def _open(self, config: Config) -> None:
            ...  # declared for mypy; the driver class provides it

        def _start_delivery(self, config: Config) -> None:
            ...  # declared for mypy; the driver class provides it

        def _plan_selftest(self) -> None:
            ...  # declared for mypy; the driver class provides it

    def _reload(self) -> None:
        """Load the new config; if it is good, close the old devices in a thread (the loop
        goes on pinging) and switch in ``_finish_reload`` once they are closed or given up."""
        self.notifier.reloading()
        try:
            new = self._reload_fn()
        except ConfigError as e:
            for line in e.problems:
                log.error("reload failed, keeping the old config: %s", line)
            self.notifier.ready(status="reload failed: config error, old config kept (see the log)")
            return
        except Exception as e:
            log.error("reload failed, keeping the old config: %s: %s", type(e).__name__, e)
            self.notifier.ready(status="reload failed, old config kept")
            return
        devices, self.devices, self.runner = self.devices, None, None
        closer = threading.Thread(target=devices.close if devices is not None else (lambda: None),
                                  name="close-devices", daemon=True)
        closer.start()
        self._closing = (closer, time.monotonic() + STOP_GRACE, new)
        self._wake.set()

    def _finish_reload(self, now: float) -> None:
        if self._closing is None:
            return
        closer, deadline, new = self._closing
        if closer.is_alive() and now < deadline:
            return
        self._closing = None
        if closer.is_alive():
            log.warning("reload: a device did not close within %g s; it is left behind", STOP_GRACE)
        old = self.config
        self.config = new
        self._open(new)
        if new.agent.state_dir != old.agent.state_dir:
            if self.delivery is not None:
                self.delivery.stop(STOP_GRACE)
            if self.outbox is not None:
                self.outbox.close()
            try:
                self.outbox = open_outbox(new)
            except OutboxError as e:
                log.error("%s; keeping the old state dir", e)
                self.config = dataclasses.replace(new, agent=dataclasses.replace(new.agent,
                                                                                  state_dir=old.agent.state_dir))
                self.outbox = open_outbox(self.config)
            self._start_delivery(self.config)
        else:
            assert self.outbox is not None and self.delivery is not None
            self.outbox.set_limits(int(new.upstream.spool_max_mb * 2**20), float(new.upstream.spool_max_age))
            upstream, problem = make_upstream(new)
            if problem:
                log.error("upstream not usable: %s; reports are kept in the outbox", problem)
            self.state.last_error = problem
            self.delivery.replace_upstream(upstream)
        self.changes.reset(float(new.schedule.event_dedupe))
        self._latest = None
        self._plan_selftest()
        now = time.monotonic()  # a heartbeat at once shows the new config took (after any startup hold)
        self._next_hb = self._next_poll = max(now, self._hold_until)
        log.info("config reloaded from %s", new.path)
        self.notifier.ready(status="config reloaded")
