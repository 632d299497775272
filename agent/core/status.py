"""Result grades and self-test levels: the two enums every layer shares."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Result grades; the integer is the monitoring-plugins exit code, and max() is 'worst'."""

    OK = 0
    WARN = 1
    FAIL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | Status) -> Status:
        if isinstance(value, Status):
            return value
        return cls[value.upper()]


class Level(enum.IntEnum):
    """UnifiedPOS CheckHealth levels; cumulative (external includes internal)."""

    INTERNAL = 1
    EXTERNAL = 2
    INTERACTIVE = 3

    @property
    def label(self) -> str:
        return self.name.lower()
