"""Driver discovery through the ``posagent.drivers`` entry-point group.

Built-in drivers are registered the same way as third-party ones (pyproject.toml).
Loading checks that the object is a Driver subclass whose ``name`` matches its entry
point; each driver gets a load status for ``posagent drivers``. A broken driver never
stops the agent: it is reported, and devices using it become ``unknown``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from posagent.drivers.base import Driver

GROUP = "posagent.drivers"


@dataclass
class DriverInfo:
    name: str
    target: str
    status: str  # enabled | load_error | env_check_failed
    detail: str = ""
    cls: type[Driver] | None = None


class DriverLoadError(Exception):
    """A driver cannot be loaded; ``reason`` is a stable token (not_installed, import_failed,
    not_a_driver, name_mismatch) for messages in other languages."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        # First registration wins; a duplicate is reported by describe_drivers().
        found.setdefault(ep.name, ep)
    return found


def available_drivers() -> list[str]:
    return sorted(_entry_points())


@functools.cache
def load_driver(name: str) -> type[Driver]:
    ep = _entry_points().get(name)
    if ep is None:
        raise DriverLoadError(f"no driver named '{name}' is installed", "not_installed")
    try:
        obj = ep.load()
    except ImportError as e:
        raise DriverLoadError(f"cannot import {ep.value}: {e}", "import_failed") from e
    if not (isinstance(obj, type) and issubclass(obj, Driver)):
        raise DriverLoadError(f"{ep.value} is not a posagent Driver class", "not_a_driver")
    if obj.name != name:
        raise DriverLoadError(f"{ep.value} calls itself '{obj.name}' but is registered as '{name}'",
                              "name_mismatch")
    return obj


def describe_drivers() -> list[DriverInfo]:
    """Every registered driver with its load status, for ``posagent drivers``."""
    infos: list[DriverInfo] = []
    names = [ep.name for ep in entry_points(group=GROUP)]
    for name, ep in sorted(_entry_points().items()):
        try:
            cls = load_driver(name)
        except DriverLoadError as e:
            infos.append(DriverInfo(name, ep.value, "load_error", str(e)))
            continue
        detail = cls.description
        if names.count(name) > 1:
            detail = f"registered {names.count(name)} times; using {ep.value}"
        infos.append(DriverInfo(name, ep.value, "enabled", detail, cls))
    return infos
