"""The set of driver instances built from a config, kept open between uses.

A device whose driver fails to build, or whose environment check fails, is still in the
set: as a ``Broken`` entry that yields an ``unknown`` result with the reason, so one bad
driver never takes a run down. A device poisoned by a hung call is rebuilt on next use. The set also remembers each
device's last fresh reading (``freshness``) for the times the POS application holds it,
and each device's fault episode (``repairs``: the self-repair tried at most once per
episode, posagent.core.repair), across rounds and driver rebuilds, in memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from posagent.config.calendar import blackout_days
from posagent.config.model import Config, DeviceConfig
from posagent.core.base import Driver, DriverEnv, Result
from posagent.core.errors import DeviceError
from posagent.core.registry import DriverLoadError, load_driver
from posagent.core.repair import Episodes
from posagent.selftest.freshness import Freshness

log = logging.getLogger(__name__)


@dataclass
class Broken:
    """A device that could not be set up: ``code`` and ``message`` say why."""

    device: DeviceConfig
    code: str
    message: str
    #: Facts for messages in other languages (``driver``, ``exception``, ``package`` ...).
    facts: dict[str, Any] = field(default_factory=dict)


#: Where a device's own notices go (``Driver.serve``): device name, driver name, result.
Notify = Callable[[str, str, Result], None]


class DeviceSet:
    """``notify``: given by the daemon, which runs what devices serve (``Driver.serve``: the
    print proxy); a set without it (the CLI) starts no such service."""

    def __init__(self, config: Config, notify: Notify | None = None) -> None:
        self.config = config
        self._notify = notify
        self.env = DriverEnv(state_dir=config.agent.state_dir, terminal_id=config.agent.terminal_id,
                             check_timeout=config.agent.check_timeout,
                             business_hours=config.schedule.business_hours,
                             blackout_dates=tuple(config.schedule.blackout_dates)
                             + _calendar_days(config))
        self._drivers: dict[str, Driver | Broken] = {}
        self._lock = threading.Lock()
        #: Each device's last fresh reading, stood in while another program holds it.
        self.freshness = Freshness()
        #: Each device's fault episode and its self-repair; a repair that cleared a fault is
        #: shown for one heartbeat interval (and the round that makes the heartbeat), so the
        #: next heartbeat carries it.
        slowest = max((float(d.timeout) for d in config.devices if d.timeout is not None),
                      default=float(config.agent.check_timeout))
        self.repairs = Episodes(linger=float(config.agent.heartbeat_interval)
                                + max(slowest, float(config.agent.check_timeout)))

    def names(self, only: list[str] | None = None) -> list[str]:
        return [d.name for d in self.config.devices if d.enabled and (not only or d.name in only)]

    def get(self, name: str) -> Driver | Broken:
        with self._lock:
            entry = self._drivers.get(name)
            if entry is None:
                entry = self._build(self.config.device(name))
                self._drivers[name] = entry
            return entry

    def _build(self, dev: DeviceConfig) -> Driver | Broken:
        try:
            cls = load_driver(dev.driver)
        except DriverLoadError as e:
            return Broken(dev, "DRIVER_LOAD_FAILED", str(e),
                          {"driver": dev.driver, **({"reason": e.reason} if e.reason else {})})
        try:
            driver = cls(dev, self.env)
        except Exception as e:
            log.error("driver %s for device %s failed to start: %s", dev.driver, dev.name, e, exc_info=True)
            return Broken(dev, "DRIVER_ERROR", f"driver failed to start: {type(e).__name__}: {e}",
                          {"exception": type(e).__name__})
        facts: dict[str, Any] = {}
        try:
            missing = driver.check_environment()
        except Exception as e:
            missing, facts = f"environment check failed: {e}", {"exception": type(e).__name__}
        if missing:
            # A Missing (drivers.base) names the package and how to install it.
            facts.update({k: v for k, v in (("package", getattr(missing, "package", "")),
                                            ("install", getattr(missing, "install", ""))) if v})
            return Broken(dev, "DRIVER_UNAVAILABLE", str(missing), facts)
        if self._notify is not None:
            notify = self._notify
            try:
                driver.serve(lambda r: notify(dev.name, dev.driver, r))
            except DeviceError as e:
                _close_quietly(driver)
                log.error("device %s: %s", dev.name, e)
                return Broken(dev, e.code, str(e), dict(e.facts))
        return driver

    def poison(self, name: str) -> None:
        """Forget a driver stuck in a hung call; it is rebuilt on next use."""
        with self._lock:
            entry = self._drivers.pop(name, None)
        if isinstance(entry, Driver):
            threading.Thread(target=_close_quietly, args=(entry,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            entries, self._drivers = list(self._drivers.values()), {}
        for entry in entries:
            if isinstance(entry, Driver):
                _close_quietly(entry)

    def __enter__(self) -> DeviceSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(driver: Driver) -> None:
    try:
        driver.close()
    except Exception as e:
        log.warning("closing %s failed: %s", driver.device.name, e)


def _calendar_days(config: Config) -> tuple[dt.date, ...]:
    """The coming year's holidays and calendar events, as blackout dates for the drivers
    (no disruptive test, such as a UPS battery test, runs on them)."""
    sched = config.schedule
    if not sched.blackout_country and not sched.blackout_ics:
        return ()
    return blackout_days(sched.blackout_country, sched.blackout_ics, dt.date.today(), 366)
