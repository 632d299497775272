"""The last fresh reading of each device, for the times another program holds it.

With ``share = "guest"`` a status query finds the device busy (DEVICE_BUSY) whenever the
POS application holds it: printing a receipt, reading a card. That is not a fault and
must not look like one. ``Freshness.apply`` turns such a result into the device's last
fresh reading, marked ``busy: true`` with its age (``status_age_s``), as long as that
reading is younger than the device's ``stale_after``. Past that, or with no reading yet,
the result is ``unknown`` DEVICE_BUSY with the age of what is known. Either way a busy
device never becomes ``fail`` and never changes state for the event logic
(fleet/changes.py ignores DEVICE_BUSY).
"""

from __future__ import annotations

import dataclasses
import threading
import time

from posagent.core.base import Result

BUSY = "DEVICE_BUSY"


class Freshness:
    """Per device name: the last reading that was not DEVICE_BUSY, and when it was made."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, Result]] = {}
        self._busy_since: dict[str, float] = {}
        self._lock = threading.Lock()

    def apply(self, name: str, result: Result, stale_after: float, now: float | None = None) -> Result:
        """``result`` as the heartbeat should carry it (see the module doc)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if result.code != BUSY:
                self._last[name] = (now, result)
                self._busy_since.pop(name, None)
                return result
            since = self._busy_since.setdefault(name, now)
            last = self._last.get(name)
        busy_s = round(now - since, 1)
        if last is None:
            return dataclasses.replace(result, fields={**result.fields, "busy": True, "status_age_s": None},
                                       facts={**result.facts, "busy_s": busy_s})
        age = round(now - last[0], 1)
        if age < stale_after:
            fresh = last[1]
            return dataclasses.replace(fresh, fields={**fresh.fields, "busy": True, "status_age_s": age},
                                       facts={**fresh.facts, "busy_s": busy_s})
        message = f"{result.message} (last reading {age:.0f} s ago)"
        return dataclasses.replace(result, message=message,
                                   fields={**last[1].fields, **result.fields, "busy": True, "status_age_s": age},
                                   facts={**result.facts, "busy_s": busy_s, "age_s": age})

    def forget(self, name: str) -> None:
        with self._lock:
            self._last.pop(name, None)
            self._busy_since.pop(name, None)
