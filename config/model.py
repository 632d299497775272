"""Typed configuration objects and the generic table -> dataclass converter.

The same converter validates the core sections and each driver's ``[device.options]``
(a driver declares its options as a dataclass), so every key everywhere gets a type,
a default, and the same one-line errors with "did you mean".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from posagent.config.errors import did_you_mean, problem
from posagent.config.sharing import Sharing
from posagent.config.urls import DeviceURL
from posagent.core.i18n import N_, _
from posagent.core.values import (
    Duration,
    FormError,
    HourRange,
    parse_date,
    parse_duration,
    parse_hour_range,
    parse_time_of_day,
)

T = TypeVar("T")


@dataclass(frozen=True)
class AgentSection:
    terminal_id: str = ""
    state_dir: str = "/var/lib/posagent"
    heartbeat_interval: Duration = Duration(60.0)
    language: str = "auto"
    check_timeout: Duration = Duration(10.0)


#: The shortest status_poll (0.2 s): a site where the POS application and posagent share a
#: printer may poll that often; each round holds a guest's printer for about a millisecond.
MIN_POLL = 0.2


@dataclass(frozen=True)
class ScheduleSection:
    selftest_at: dt.time = dt.time(3, 0)
    jitter: Duration = Duration(1800.0)
    business_hours: HourRange | None = None
    blackout_dates: list[dt.date] = field(default_factory=list)
    startup_jitter: Duration = Duration(60.0)
    event_dedupe: Duration = Duration(300.0)
    status_poll: Duration = Duration(10.0)  # device status between heartbeats, for events; <= heartbeat_interval


@dataclass(frozen=True)
class UpstreamSection:
    url: str = ""
    token_file: str = ""
    timeout: Duration = Duration(10.0)
    spool_max_mb: float = 16.0
    spool_max_age: Duration = Duration(30 * 86400.0)
    ca_file: str = ""
    allow_insecure_http: bool = False


@dataclass(frozen=True)
class ExportSection:
    prometheus_textfile: str = ""


@dataclass(frozen=True)
class HistorySection:
    keep_runs: int = 200
    keep_days: int = 365


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    driver: str
    url: DeviceURL | None
    options: Any  # the driver's Options dataclass instance
    timeout: float | None = None  # per-check cap; None = agent.check_timeout
    enabled: bool = True
    sharing: Sharing = field(default_factory=Sharing)  # share, proxy_*, stale_after, job_*

    @property
    def share(self) -> str:
        return self.sharing.mode


@dataclass(frozen=True)
class Config:
    path: str
    agent: AgentSection
    schedule: ScheduleSection
    upstream: UpstreamSection
    export: ExportSection
    history: HistorySection
    devices: list[DeviceConfig]

    def device(self, name: str) -> DeviceConfig:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)


_SCALAR_PARSERS: dict[Any, Any] = {
    Duration: parse_duration,
    dt.time: parse_time_of_day,
    HourRange: parse_hour_range,
    dt.date: parse_date,
}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return _type_name(next(a for a in typing.get_args(tp) if a is not type(None)))
    if tp is Duration:
        return _('a duration like "60s"')
    if typing.get_origin(tp) is list:
        item = _type_name(typing.get_args(tp)[0]).removeprefix("a ").removeprefix("an ")
        return _("a list of {item}").format(item=item)
    name = _TYPE_NAMES.get(tp)
    return _(name) if name else getattr(tp, "__name__", str(tp))


_TYPE_NAMES: dict[Any, str] = {str: N_("a string"), int: N_("an integer"), float: N_("a number"),
                               bool: N_("true or false"), dt.time: N_('a time like "03:00"'),
                               HourRange: N_('a range like "08:00-22:00"'), dt.date: N_('a date like "2027-02-06"')}


def _got(expected: str, value: Any) -> str:
    return _("expected {expected}, got {value}").format(expected=expected, value=value)


def convert_value(tp: Any, value: Any) -> Any:
    """Convert one raw TOML value to type ``tp``; raise ValueError saying what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return convert_value(args[0], value)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(_got(_type_name(tp), type(value).__name__))
        (inner,) = typing.get_args(tp)
        return [convert_value(inner, v) for v in value]
    if tp in _SCALAR_PARSERS:
        return _SCALAR_PARSERS[tp](value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(_got(_type_name(bool), repr(value)))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(_got(_type_name(int), repr(value)))
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(_got(_type_name(float), repr(value)))
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(_got(_type_name(str), repr(value)))
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(_got(_("a table"), repr(value)))
        return value
    raise ValueError(_("unsupported option type {type}").format(type=repr(tp)))  # a driver bug, caught by tests


def build(cls: type[T], raw: Any, file: str, keypath: str, problems: list[str]) -> T | None:
    """Build dataclass ``cls`` from TOML table ``raw``; append one line per problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(problem(file, keypath, _got(_("a table"), type(raw).__name__),
                                _("write it as [{table}]").format(table=re.sub(r"\[\d+\]( \([^)]*\))?", "", keypath))))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    ok = True
    for key, value in raw.items():
        where = f"{keypath}.{key}" if keypath else key
        if key not in fields:
            problems.append(problem(file, where, _("unknown key"), did_you_mean(key, fields.keys())))
            ok = False
            continue
        try:
            kwargs[key] = convert_value(hints[key], value)
        except ValueError as e:
            fix = "" if isinstance(e, FormError) else _("write {expected}").format(expected=_type_name(hints[key]))
            problems.append(problem(file, where, str(e), fix))
            ok = False
    for name, f in fields.items():
        if (name not in kwargs and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING):
            problems.append(problem(file, f"{keypath}.{name}" if keypath else name,
                                    _("required key is missing"),
                                    _("add {key} = {expected}").format(key=name, expected=_type_name(hints[name]))))
            ok = False
    if not ok:
        return None
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ cross-field checks
        problems.append(problem(file, keypath, str(e)))
        return None
