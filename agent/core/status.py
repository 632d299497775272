"""Result grades and self-test levels: the two enums every layer shares."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Status(enum.IntEnum):
    """Result grades; the integer is the monitoring-plugins exit code (0 ok, 1 warning,
    2 critical, 3 unknown). Which is worse is ``severity``, not the integer: a failure
    outranks an unknown (Monitoring::Plugin's max_state, Icinga and Zabbix severities), so
    a terminal with its paper out and one silent device is ``fail``. Take the worst of
    several with ``worst()``, never with max()."""

    OK = 0
    WARN = 1
    FAIL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def severity(self) -> int:
        """ok 0 < warn 1 < unknown 2 < fail 3."""
        return _SEVERITY[self]

    @classmethod
    def parse(cls, value: str | Status) -> Status:
        if isinstance(value, Status):
            return value
        return cls[value.upper()]


_SEVERITY = {Status.OK: 0, Status.WARN: 1, Status.UNKNOWN: 2, Status.FAIL: 3}


def worst(statuses: Iterable[Status], default: Status = Status.UNKNOWN) -> Status:
    """The most severe of ``statuses`` (fail > unknown > warn > ok); ``default`` when none."""
    return max(statuses, key=_SEVERITY.__getitem__, default=default)


class Level(enum.IntEnum):
    """UnifiedPOS CheckHealth levels; cumulative (external includes internal)."""

    INTERNAL = 1
    EXTERNAL = 2
    INTERACTIVE = 3

    @property
    def label(self) -> str:
        return self.name.lower()
