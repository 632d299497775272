"""When the daemon sends ``posagent.inventory/1`` (``fleet/inventory.py`` builds it).

After a status round (so after the startup hold, and with each device's latest result),
``InventoryTracker.after_round`` decides:

- at the daemon's start: sent, unless the very same inventory (same digest) was already
  sent in this boot (a restart of the agent alone is no news; a boot is);
- once a day: at this terminal's instant of the day (a stable offset from its id,
  ``fleet/phase.py``), so a fleet's inventories spread over the whole day; sent whatever
  it holds, at least 12 h after the last one;
- when it changed: the content is collected again at most every ``CHECK_EVERY`` seconds
  (and at the first round after a reload) and sent only if its digest differs from the
  last one sent.

The last digest sent (with when, the boot and the devices' identities) is kept in the state
dir, so an unchanged inventory is not sent again after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from posagent.config.model import Config
from posagent.core.base import Driver
from posagent.fleet import inventory, messages, phase
from posagent.fleet.inventory import REAL, Roots, Sent
from posagent.fleet.messages import DeviceResults, Finalizer
from posagent.fleet.schedule import read_boot_id
from posagent.selftest.devices import Broken, DeviceSet

log = logging.getLogger("posagent.daemon.loop")  # the daemon's lines keep the loop's logger name
__all__ = ["CHECK_EVERY", "DAY", "InventoryTracker"]

CHECK_EVERY = 300.0  # seconds between two looks for a change
DAY = 86400.0

#: What commits a built inventory: (finalizer, trigger) -> whether it was saved.
Commit = Callable[[Finalizer, str], bool]


class InventoryTracker:
    def __init__(self, config: Config, roots: Roots = REAL,
                 wall: Callable[[], float] = time.time, boot_id: Callable[[], str | None] = read_boot_id) -> None:
        self._roots = roots
        self._wall = wall
        self._boot_id = boot_id
        self._started = False  # the start inventory was decided on
        self._last_check = float("-inf")  # time.monotonic()
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """A new config (a reload): devices may have been added, so look at the next round."""
        self.config = config
        self.sent = inventory.load_sent(config.agent.state_dir)
        self._last_check = float("-inf")

    def next_daily(self) -> float:
        """The Unix time of the next daily inventory: this terminal's instant of the day, at
        least half a day after the last one sent (at once if none was)."""
        if self.sent is None:
            return 0.0
        offset = phase.heartbeat_offset("inventory:" + self.config.agent.terminal_id, DAY)
        return phase.next_beat(self.sent.at + DAY / 2, DAY, offset)

    def trigger(self, now: float) -> str | None:
        """What is due at monotonic ``now``: start | daily | change (a look), or None."""
        if not self._started:
            return "start"
        if self._wall() >= self.next_daily():
            return "daily"
        if now - self._last_check >= CHECK_EVERY:
            return "change"
        return None

    def after_round(self, devices: DeviceSet, results: DeviceResults, commit: Commit,
                    now: float | None = None) -> str | None:
        """Collect and send the inventory if due (see the module doc); the trigger it was
        sent for, or None. ``commit(finalizer, trigger)`` commits it to the outbox."""
        mono = time.monotonic() if now is None else now
        trigger = self.trigger(mono)
        if trigger is None:
            return None
        self._last_check = mono
        drivers: dict[str, Driver | None] = {}
        for name in devices.names():
            entry = devices.get(name)
            drivers[name] = None if isinstance(entry, Broken) else entry
        previous = self.sent.devices if self.sent is not None else None
        content = inventory.collect(self.config, drivers, results, self._roots, previous)
        boot = self._boot_id()
        start, self._started = not self._started, True
        same = self.sent is not None and self.sent.digest == content["digest"]
        if trigger == "change" and same:
            return None
        if start and same and self.sent is not None and self.sent.boot_id == boot:
            log.info("inventory unchanged since it was sent in this boot: not sent again")
            return None
        if trigger == "change":
            log.info("inventory changed: sending it")
        if not commit(messages.inventory(self.config, content, trigger), trigger):
            return None  # not saved: the next look sends it
        self.sent = Sent(content["digest"], self._wall(), boot, content["devices"])
        try:
            inventory.record_sent(self.config.agent.state_dir, self.sent)
        except OSError as e:
            log.warning("inventory: %s not written: %s (an unchanged inventory may be sent again)",
                        inventory.STATE_FILE, e)
        return trigger
