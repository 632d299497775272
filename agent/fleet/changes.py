"""Which device status changes become events, with a dedupe window per device.

The first change of a device is reported at once. Further changes within ``window``
seconds of that event are folded (counted as ``suppressed``); when the window ends, one
trailing event reports the state then, if it differs from the last one reported. So a
flapping device sends at most one event per window, and the dashboard still ends up with
the truth. A DEVICE_BUSY result (the POS application holds the device, selftest/freshness.py)
is no observation at all: it never makes an event. Pure logic: time is passed in
(monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from posagent.core.base import Result


@dataclass(frozen=True)
class Change:
    device: str
    driver: str
    current: Result
    previous: Result | None
    suppressed: int


def _same(a: Result, b: Result) -> bool:
    return a.status == b.status and a.code == b.code


class ChangeTracker:
    def __init__(self, window: float) -> None:
        self.window = window
        self._clear()

    def _clear(self) -> None:
        self._seen: dict[str, tuple[str, Result]] = {}  # the latest observation
        self._reported: dict[str, Result] = {}  # the state the last event (or the baseline) said
        self._event_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._trailing: dict[str, float] = {}  # device -> when its window ends

    def reset(self, window: float | None = None) -> None:
        """Forget everything (after a reload: devices may have changed); next round is a baseline."""
        if window is not None:
            self.window = window
        self._clear()

    def observe(self, results: Mapping[str, tuple[str, Result]], now: float) -> list[Change]:
        """Feed one status round; the changes to report now."""
        out: list[Change] = []
        for name, (driver, r) in results.items():
            if r.code == "DEVICE_BUSY":
                continue  # another program holds the device: not a state of the device
            before = self._seen.get(name)
            self._seen[name] = (driver, r)
            if before is None:
                self._reported[name] = r
                continue
            if _same(r, before[1]):
                continue  # no change since the last round
            last = self._event_at.get(name)
            if last is not None and now - last < self.window:
                self._suppressed[name] = self._suppressed.get(name, 0) + 1
                self._trailing.setdefault(name, last + self.window)
            elif _same(r, self._reported[name]):
                self._suppressed[name] = self._suppressed.get(name, 0) + 1  # back to what was reported
                self._trailing.pop(name, None)
            else:
                out.append(self._emit(name, now))
        for name in [n for n in self._seen if n not in results]:
            self._forget(name)
        return out

    def due(self, now: float) -> list[Change]:
        """Trailing events whose window has ended."""
        out: list[Change] = []
        for name, deadline in list(self._trailing.items()):
            if now < deadline:
                continue
            del self._trailing[name]
            if not _same(self._seen[name][1], self._reported[name]):
                out.append(self._emit(name, now))
        return out

    def latest(self) -> dict[str, tuple[str, Result]]:
        """The latest observation of every device."""
        return dict(self._seen)

    def next_deadline(self) -> float | None:
        return min(self._trailing.values(), default=None)

    def _emit(self, name: str, now: float) -> Change:
        driver, r = self._seen[name]
        change = Change(name, driver, r, self._reported.get(name), self._suppressed.pop(name, 0))
        self._reported[name] = r
        self._event_at[name] = now
        self._trailing.pop(name, None)
        return change

    def _forget(self, name: str) -> None:
        self._seen.pop(name, None)
        self._reported.pop(name, None)
        self._event_at.pop(name, None)
        self._suppressed.pop(name, None)
        self._trailing.pop(name, None)
