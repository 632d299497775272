"""Plug-ins through entry points: drivers, transports and simulators.

Three entry-point groups, each keyed by a short name, filled the same way by the built-in
code (pyproject.toml) and by third parties:

    posagent.drivers      driver name  -> Driver subclass          (``driver = "escpos"``)
    posagent.transports   URL scheme   -> opener(url, **kw)         (``serial://``, ``tcp://``)
    posagent.sims         sim family   -> Simulator subclass        (``sim://escpos``)

Loading a driver checks that the object is a Driver subclass whose ``name`` matches its
entry point; each driver gets a load status for ``posagent drivers``. A broken driver
never stops the agent: it is reported, and devices using it become ``unknown``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from posagent.core.base import Driver
from posagent.core.i18n import did_you_mean

GROUP = "posagent.drivers"
TRANSPORTS = "posagent.transports"
SIMS = "posagent.sims"


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
def _group(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        # First registration wins; a duplicate is reported by describe_drivers().
        found.setdefault(ep.name, ep)
    return found


def _entry_points() -> dict[str, EntryPoint]:
    return _group(GROUP)


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


def available(group: str) -> list[str]:
    """The names registered in an entry-point group (transports' schemes, sim families)."""
    return list(_group(group))  # in registration order (pyproject lists the built-ins)


@functools.cache
def load_plugin(group: str, name: str) -> Any:
    """The object registered as ``name`` in ``group``; ValueError (one sentence, with a
    suggestion) when there is none or it does not import."""
    loaded = _loaded.get((group, name))
    if loaded is not None:
        return loaded  # (a guest's every exchange opens its port: the lookup must cost nothing)
    what = {SIMS: "simulator", TRANSPORTS: "transport"}.get(group, group)
    ep = _group(group).get(name)
    if ep is None:
        prefix = "sim://" if group == SIMS else ""
        raise ValueError(f"no {what} for '{prefix}{name}' ({did_you_mean(name, _group(group))})")
    try:
        loaded = _loaded[(group, name)] = ep.load()
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what} '{name}' is not available in this build ({e})") from e
    return loaded


_loaded: dict[tuple[str, str], Any] = {}
