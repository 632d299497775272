"""Typed configuration objects and the generic table -> dataclass converter.

The same converter validates the core sections and each driver's ``[device.options]``
(a driver declares its options as a dataclass), so every key everywhere gets a type,
a default, and the same one-line errors with "did you mean".

**Limits.** A field's range sits next to it: ``ranged(default, lo, hi)`` (a ``Range`` in
the field's metadata), its longest text ``text(default, max_len)``; ``build()`` reads them.
What no field says, every value keeps: numbers finite and at most ``MAX_NUMBER`` in size,
durations at most ``MAX_DURATION`` (a year), strings at most ``MAX_TEXT`` characters with
no control or format character (newline, ESC, NUL, bidi overrides), lists at most
``MAX_ITEMS`` items. config/example.toml names each range in its comments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
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
    MAX_DURATION,
    MAX_NUMBER,
    Duration,
    FormError,
    HourRange,
    Range,
    control_char,
    format_seconds,
    parse_date,
    parse_duration,
    parse_hour_range,
    parse_time_of_day,
    shown,
)

T = TypeVar("T")

#: The longest string any config value may be (a path: PATH_MAX), unless its field says less.
MAX_TEXT = 4096
#: The most items a config list may hold.
MAX_ITEMS = 1000
DAY = 86400.0


def ranged(default: T, lo: float, hi: float, *, above: bool = False) -> T:
    """A dataclass field whose value must be within ``lo``..``hi`` (more than ``lo`` when ``above``)."""
    return field(default=default, metadata={"range": Range(lo, hi, above)})


def text(default: str, max_len: int = MAX_TEXT, *, absolute_path: bool = False) -> str:
    """A string field of at most ``max_len`` characters; an ``absolute_path`` is never empty."""
    return field(default=default, metadata={"max_len": max_len, "absolute_path": absolute_path})


# Ranges are in seconds for durations; config/example.toml says them in its comments.
@dataclass(frozen=True)
class AgentSection:
    terminal_id: str = text("", 128)  # "" = the hostname
    state_dir: str = text("/var/lib/posagent", absolute_path=True)
    heartbeat_interval: Duration = ranged(Duration(60.0), 1.0, DAY)
    language: str = text("auto", 16)
    check_timeout: Duration = ranged(Duration(10.0), 0.01, 3600.0)


#: The shortest status_poll (0.2 s): a site where the POS application and posagent share a
#: printer may poll that often; each round holds a guest's printer for about a millisecond.
MIN_POLL = 0.2


@dataclass(frozen=True)
class ScheduleSection:
    selftest_at: dt.time = dt.time(3, 0)
    jitter: Duration = ranged(Duration(1800.0), 0.0, DAY)
    business_hours: HourRange | None = None
    blackout_dates: list[dt.date] = field(default_factory=list)
    blackout_country: str = text("", 8)  # "CN": that country's public holidays are blackout days too
    blackout_ics: str = text("", 4096)  # an iCalendar file: every day an event covers is a blackout day
    startup_jitter: Duration = ranged(Duration(60.0), 0.0, 3600.0)
    event_dedupe: Duration = ranged(Duration(300.0), 0.0, DAY)
    # fleet-wide faults (the acquirer down): their events wait a random part of this
    event_spread: Duration = ranged(Duration(30.0), 0.0, 3600.0)
    # device status between heartbeats, for events; <= heartbeat_interval
    status_poll: Duration = ranged(Duration(10.0), MIN_POLL, DAY)


@dataclass(frozen=True)
class UpstreamSection:
    url: str = text("", 2048)  # config/urls.py MAX_URL
    token_file: str = ""
    timeout: Duration = ranged(Duration(10.0), 0.1, 600.0)
    spool_max_mb: float = ranged(16.0, 0.01, 4096.0)
    spool_max_age: Duration = ranged(Duration(30 * DAY), 60.0, 366 * DAY)
    ca_file: str = ""
    allow_insecure_http: bool = False
    # a backlog goes out as JSON arrays of up to this many reports, one POST each
    batch_max: int = ranged(50, 1, 1000)
    # Content-Encoding: gzip on request bodies (a 415 answer turns it off for that collector)
    gzip: bool = True
    # the longest a Retry-After (or a RateLimit reset) may hold every request back
    retry_after_max: Duration = ranged(Duration(3600.0), 1.0, DAY)
    # HTTP: how long an idle connection is kept for the next report (default 5 min, above
    # heartbeat_interval); MQTT: the keepalive the broker uses to fire the last will (default 60 s)
    keepalive: Duration | None = ranged(None, 0.0, DAY)
    # failover: more collectors or brokers of the same kind, tried in turn (url first, if set)
    urls: list[str] = field(default_factory=list)
    # MQTT: every message goes to <prefix>/<terminal_id>/<kind>
    prefix: str = text("posagent", 64)
    # MQTT protocol: "auto" (5, then 3.1.1 if the broker does not speak 5), "5" or "3.1.1"
    mqtt_version: str = text("auto", 8)
    # MQTT over TLS: a client certificate and its key (PEM), when the broker asks for one
    client_cert: str = ""
    client_key: str = ""
    # MQTT: a user name, and its password from a file (mode 600) or the credential upstream-password
    username: str = text("", 256)
    password_file: str = ""

    def all_urls(self) -> list[str]:
        """Every upstream URL in the order tried: ``url`` first, then ``urls``."""
        out = [self.url] if self.url else []
        return out + [u for u in self.urls if u not in out]

    def keepalive_s(self) -> float:
        """``keepalive`` or the transport's default (MQTT 60 s, HTTP 5 min)."""
        if self.keepalive is not None:
            return float(self.keepalive)
        return 60.0 if self.url_scheme() in ("mqtt", "mqtts") else 300.0

    def url_scheme(self) -> str:
        urls = self.all_urls()
        return urls[0].split(":", 1)[0].lower() if urls else ""


#: The actions a remote command may ask for (``[commands] allow`` picks among them).
COMMAND_ACTIONS = ("heartbeat", "selftest", "slip", "diagnostics")


@dataclass(frozen=True)
class CommandsSection:
    # PEM SubjectPublicKeyInfo files of the fleet's Ed25519 command-signing keys (several: rotation)
    public_keys: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=lambda: ["heartbeat", "selftest"])
    # diagnostics: the most log lines of this agent put in the bundle
    log_lines: int = ranged(200, 0, 5000)


@dataclass(frozen=True)
class ExportSection:
    prometheus_textfile: str = ""


@dataclass(frozen=True)
class HistorySection:
    keep_runs: int = ranged(200, 1, 100_000)
    keep_days: int = ranged(365, 0, 36_500)  # 0 = no age limit


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
    commands: CommandsSection = field(default_factory=CommandsSection)

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
        if len(value) > MAX_ITEMS:
            raise FormError(_("a list of {count} items; at most {limit} are accepted").format(
                count=len(value), limit=MAX_ITEMS))
        (inner,) = typing.get_args(tp)
        return [convert_value(inner, v) for v in value]
    if tp in _SCALAR_PARSERS:
        return _SCALAR_PARSERS[tp](value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(_got(_type_name(bool), shown(value)))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(_got(_type_name(int), shown(value)))
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(_got(_type_name(float), shown(value)))
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits: out of every range
            return math.inf
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(_got(_type_name(str), shown(value)))
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(_got(_("a table"), shown(value)))
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
            continue
        limit = limit_problem(hints[key], kwargs[key], fields[key])
        if limit is not None:
            problems.append(problem(file, where, *limit))
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
    except (ValueError, ArithmeticError) as e:  # __post_init__ cross-field checks
        problems.append(problem(file, keypath, str(e)))
        return None


def _base(tp: Any) -> Any:
    """``X`` of ``X | None``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _example(tp: Any, default: Any) -> str:
    if default is dataclasses.MISSING or default is None:
        return ""
    if tp is Duration:  # "60s" rather than "1m", as the example config writes it
        seconds = float(default)
        value = f'"{seconds:g}s"' if 1 <= seconds < 120 else f'"{format_seconds(seconds)}"'
    else:
        value = f"{default:g}" if isinstance(default, float) else str(default)
    return _("e.g. {example}").format(example=value)


def limit_problem(tp: Any, value: Any, f: dataclasses.Field[Any] | None = None) -> tuple[str, str] | None:
    """(what, fix) when converted ``value`` of type ``tp`` breaks a limit of field ``f`` (its
    ``ranged``/``text`` metadata) or the limits every value keeps; None when it is fine."""
    meta: Any = f.metadata if f is not None else {}
    default = f.default if f is not None else dataclasses.MISSING
    tp = _base(tp)
    if value is None:
        return None
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        return next((p for p in (limit_problem(inner, v) for v in value) if p is not None), None)
    if tp in (Duration, float, int) and not isinstance(value, bool):
        rng = meta.get("range")
        if rng is None:
            rng = Range(0.0, MAX_DURATION) if tp is Duration else Range(-MAX_NUMBER, MAX_NUMBER)
        if not rng.contains(value):
            return rng.describe(tp is Duration), _example(tp, default)
        return None
    if tp is str and isinstance(value, str):
        max_len = int(meta.get("max_len", MAX_TEXT))
        if len(value) > max_len:
            return (_("is {length} characters long; at most {limit} are accepted").format(
                length=len(value), limit=max_len), _("shorten it"))
        bad = control_char(value)
        if bad is not None:
            return (_("holds the control character {char}").format(char=bad),
                    _("remove it: config text is one line without escape sequences"))
        if meta.get("absolute_path") and not os.path.isabs(value):
            return (_("must be an absolute path, got {value}").format(value=shown(value)),
                    _("e.g. {example}").format(example=f'"{default}"'))
    return None
