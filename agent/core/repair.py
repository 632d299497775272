"""Self-repair bookkeeping: at most one attempt per device and fault episode (docs/self-repair.md).

A device's **fault episode** runs from the first status round whose result is a fault
(``fail`` or ``unknown``) until a round whose result says the device works again (``ok``,
or ``warn``: what still works). A DEVICE_BUSY round (the POS application held the device,
selftest/freshness.py) is no observation: it neither starts nor ends an episode.

``Episodes`` remembers, per device name and in memory only, whether this episode's repair
was tried and what it gave. The result a round reports carries the episode's repair for as
long as the fault lasts (``cleared: false``: the fleet sees it was tried), and a repair that
cleared the fault for ``linger`` seconds after it (one heartbeat interval), so the next
heartbeat carries it although no fault was reported. Pure bookkeeping: time is passed in
(monotonic seconds); thread-safe, since devices are polled concurrently.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from posagent.core.base import Repair, Result
from posagent.core.status import Status

#: Results that say the device works: they end an episode, and a repair that led to one cleared the fault.
HEALTHY = frozenset({Status.OK, Status.WARN})
#: Codes that are no observation of the device at all.
NO_OBSERVATION = frozenset({"DEVICE_BUSY"})


@dataclass
class _Episode:
    attempted: bool = False
    repair: Repair | None = None  # what the attempt tried (None: nothing safe to try)


class Episodes:
    """Per device: the open fault episode and the last repair that cleared one."""

    def __init__(self, linger: float = 60.0) -> None:
        self.linger = linger
        self._open: dict[str, _Episode] = {}
        self._shown: dict[str, tuple[float, Repair]] = {}  # a cleared repair, shown until then
        self._lock = threading.Lock()

    def due(self, name: str, result: Result, repairable: frozenset[str]) -> bool:
        """Whether to try a repair now: ``result`` is a fault with a code the driver says a
        repair may clear, and none was tried in this episode."""
        if result.status in HEALTHY or result.code in NO_OBSERVATION or result.code not in repairable:
            return False
        with self._lock:
            episode = self._open.get(name)
            return episode is None or not episode.attempted

    def attempted(self, name: str, repair: Repair | None, now: float) -> None:
        """This episode's attempt was made (``repair`` None: the driver had nothing safe to try)."""
        with self._lock:
            episode = self._open.setdefault(name, _Episode())
            episode.attempted, episode.repair = True, repair
            if repair is not None and repair.cleared:
                self._shown[name] = (now + self.linger, repair)

    def settle(self, name: str, result: Result, now: float) -> Result:
        """Feed one round's result; the result to report, with the repair it should carry."""
        if result.code in NO_OBSERVATION:
            return result
        with self._lock:
            if result.status in HEALTHY:
                self._open.pop(name, None)  # the episode is over
                shown = self._shown.get(name)
                if shown is None:
                    return result
                if now >= shown[0]:
                    del self._shown[name]
                    return result
                return result if result.repair is not None else result.with_repair(shown[1])
            episode = self._open.get(name)
            if episode is None:  # a new episode: what cleared the last one is history
                episode = self._open[name] = _Episode()
                self._shown.pop(name, None)
            if result.repair is None and episode.repair is not None:
                return result.with_repair(episode.repair)
            return result

    def in_episode(self, name: str) -> bool:
        with self._lock:
            return name in self._open

    def forget(self, name: str) -> None:
        with self._lock:
            self._open.pop(name, None)
            self._shown.pop(name, None)
