"""The driver interface and the result type (design.md, "Drivers").

A driver is built from one ``[[device]]`` table. It offers ``status()`` (cheap, no side
effects, used for every heartbeat), ``checks()`` (self-test checks tagged with a
UnifiedPOS CheckHealth level) and ``close()``. Drivers may raise the exceptions of
``posagent.core.errors``; only the runner turns exceptions into results.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from posagent.core.catalog import Code
from posagent.core.errors import DeviceError
from posagent.core.status import Level, Status

if TYPE_CHECKING:
    from posagent.core.values import HourRange


Measurements = dict[str, float | int | str | bool | None]
Facts = dict[str, Any]


def _is_number(value: object) -> bool:
    return value is None or isinstance(value, int | float)  # bool is an int: a 0/1 flag


#: The steps a driver's ``repair`` may name (docs/self-repair.md): drop and reopen the link,
#: reset the USB port (``usb_reset = true``), initialise the printer (ESC @).
REPAIR_STEPS = ("reopen", "usb_reset", "init")


@dataclass(frozen=True)
class Repair:
    """What a driver tried, before reporting a fault, to clear it (``Driver.repair``):
    ``tried`` the steps in order, ``cleared`` whether the status read after them was no
    longer a fault, ``at`` when (RFC 3339), ``duration_ms`` how long the steps and the
    re-read took, ``timed_out`` when the attempt was cut at the device's timeout."""

    tried: tuple[str, ...]
    cleared: bool
    at: str = ""
    duration_ms: float = 0.0
    timed_out: bool = False

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tried": list(self.tried), "cleared": self.cleared}
        if self.at:
            out["at"] = self.at
        out["duration_ms"] = self.duration_ms
        if self.timed_out:
            out["timed_out"] = True
        return out


@dataclass(frozen=True)
class Result:
    """What a check or a status query found; immutable once built.

    ``fields`` are the device family's heartbeat fields (``paper``, ``on_battery`` ...);
    ``measurements`` are numbers with their unit in the name (``latency_ms``), sent upstream.
    ``facts`` are what the message was built from (``path``, ``host``, ``reason`` as a
    stable token, ``exception``), for messages in other languages; never sent upstream.
    A non-number handed in as a measurement is kept as a fact. A value the device did not
    report is left out, never 0.
    """

    status: Status
    code: str
    message: str
    measurements: Measurements = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    facts: Facts = field(default_factory=dict)
    #: The self-repair tried before this result was reported (selftest.runner), or None.
    repair: Repair | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.measurements, dict) or not isinstance(self.fields, dict):
            return  # a malformed result; the runner's check reports it (DRIVER_BAD_RESULT)
        numbers = {k: v for k, v in self.measurements.items() if _is_number(v)}
        facts = {k: v for k, v in self.measurements.items() if not _is_number(v)}
        object.__setattr__(self, "measurements", numbers)
        object.__setattr__(self, "fields", dict(self.fields))
        object.__setattr__(self, "facts", {**facts, **(self.facts or {})})

    @classmethod
    def from_error(cls, exc: BaseException) -> Result:
        """The one place an exception becomes a result (used by the runner): a DeviceError
        keeps its code, grade and facts; anything else is a driver bug, DRIVER_ERROR."""
        if isinstance(exc, DeviceError):
            return cls(exc.status, exc.code, str(exc), facts=dict(exc.facts))
        return cls(Status.UNKNOWN, "DRIVER_ERROR", f"driver error: {type(exc).__name__}: {exc}",
                   facts={"exception": type(exc).__name__})

    def with_message(self, message: str) -> Result:
        return dataclasses.replace(self, message=message)

    def timed(self, duration_ms: float) -> Result:
        return dataclasses.replace(self, duration_ms=duration_ms)

    def with_repair(self, repair: Repair | None) -> Result:
        return dataclasses.replace(self, repair=repair)

    @classmethod
    def ok(cls, code: str, message: str, **kw: Any) -> Result:
        return cls(Status.OK, code, message, **kw)

    @classmethod
    def warn(cls, code: str, message: str, **kw: Any) -> Result:
        return cls(Status.WARN, code, message, **kw)

    @classmethod
    def fail(cls, code: str, message: str, **kw: Any) -> Result:
        return cls(Status.FAIL, code, message, **kw)

    @classmethod
    def unknown(cls, code: str, message: str, **kw: Any) -> Result:
        return cls(Status.UNKNOWN, code, message, **kw)


@dataclass
class CheckContext:
    """What a running check may use besides its driver."""

    deadline: float  # time.monotonic() value by which the check must finish
    terminal_id: str = ""
    level: Level = Level.INTERNAL
    #: Ask the technician something (interactive checks); returns the typed answer or "".
    prompt: Callable[[str], str] | None = None
    #: Show a line to the technician (interactive checks).
    say: Callable[[str], None] | None = None
    #: Results gathered so far in this run, keyed "device.check" (the test slip prints them).
    results: dict[str, Result] = field(default_factory=dict)
    state_dir: str = ""
    lang: str = "en"

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Check:
    """One self-test check a driver contributes."""

    name: str
    level: Level
    run: Callable[[CheckContext], Result]
    description: str = ""
    timeout: float | None = None  # overrides the device's timeout for this check


class DeviceSpec(Protocol):
    """What a driver is built from: one ``[[device]]`` table (posagent.config.model.DeviceConfig)."""

    @property
    def name(self) -> str: ...
    @property
    def driver(self) -> str: ...
    @property
    def url(self) -> Any: ...
    @property
    def options(self) -> Any: ...
    @property
    def timeout(self) -> float | None: ...


@dataclass(frozen=True)
class DriverEnv:
    """Agent-wide context a driver may need: where to keep state, who we are, and when
    the shop is open (disruptive tests, like a UPS battery test, never run then)."""

    state_dir: str
    terminal_id: str
    check_timeout: float = 10.0
    business_hours: HourRange | None = None
    blackout_dates: tuple[datetime.date, ...] = ()

    def quiet_time_refusal(self, override: HourRange | None = None,
                           now: datetime.datetime | None = None) -> str | None:
        """Why a disruptive test must not run now (inside business hours, on a blackout
        date, or no business hours known to be safe), or None when it may."""
        hours = override or self.business_hours
        now = now or datetime.datetime.now()
        if hours is None:
            return "no business hours configured ([schedule] business_hours), so no time is known to be safe"
        if now.date() in self.blackout_dates:
            return f"{now.date().isoformat()} is a blackout date"
        if hours.contains(now.time()):
            return f"inside business hours {hours}"
        return None


class Missing(str):
    """What ``check_environment()`` returns when a package is missing: the English sentence
    (it is a str), plus ``package`` and ``install`` for messages in other languages."""

    package: str
    install: str

    def __new__(cls, package: str, install: str, sentence: str = "") -> Missing:
        self = super().__new__(cls, sentence or f"{package} is not installed ({install})")
        self.package, self.install = package, install
        return self


@dataclass(frozen=True)
class _Empty:
    pass


class Driver:
    """Base class of all drivers. Subclasses set the class attributes and override
    ``status``, ``checks`` and (if they hold resources) ``close``."""

    #: Registry name, e.g. "escpos".
    name: ClassVar[str] = ""
    #: Device family: printer, ups, reader, keypad, host, system.
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: URL schemes this driver accepts.
    schemes: ClassVar[tuple[str, ...]] = ()
    url_required: ClassVar[bool] = True
    #: The sim:// family that stands in for this driver's device ("" = the driver's name).
    sim_family: ClassVar[str] = ""
    url_example: ClassVar[str] = ""
    #: experimental | beta | stable
    support: ClassVar[str] = "beta"
    #: Options dataclass; ``[device.options]`` is validated into an instance of it.
    Options: ClassVar[type] = _Empty
    #: The catalogue of every code this driver can end in (posagent.core.catalog): grades,
    #: message templates, hints. Codes of posagent.core.codes.SHARED need no entry.
    codes: ClassVar[Mapping[str, Code]] = {}
    #: How the device may be shared with the POS application (the ``share`` key), default
    #: first: "guest" (the POS application owns it; posagent asks only when it is free and
    #: holds nothing between exchanges), "proxy" (posagent owns it and serves the POS
    #: application), "owner" (posagent alone).
    shares: ClassVar[tuple[str, ...]] = ("owner",)
    #: Python modules this driver needs, per URL scheme ("*": whatever the URL): scheme ->
    #: (module, package, how to install it). ``check_environment`` and ``posagent drivers``
    #: read it.
    needs: ClassVar[Mapping[str, tuple[str, str, str]]] = {}
    #: Whether this device's faults are seen by a whole fleet at once (the acquirer host
    #: every terminal probes): their events wait a random part of ``event_spread``.
    fleet_wide: ClassVar[bool] = False

    def __init__(self, device: DeviceSpec, env: DriverEnv) -> None:
        self.device = device
        self.env = env
        self.options: Any = device.options if device.options is not None else self.Options()

    @property
    def timeout(self) -> float:
        return self.device.timeout if self.device.timeout is not None else self.env.check_timeout

    @property
    def share(self) -> str:
        """This device's share mode (the config's, else the driver's default)."""
        mode = getattr(getattr(self.device, "sharing", None), "mode", None)
        return mode if isinstance(mode, str) and mode in self.shares else self.shares[0]

    @classmethod
    def missing(cls, scheme: str = "*") -> Missing | None:
        """What of ``needs`` is not installed for URLs of ``scheme`` ("*": for every URL)."""
        for key in dict.fromkeys(("*", scheme)):
            need = cls.needs.get(key)
            if need is not None and importlib.util.find_spec(need[0]) is None:
                return Missing(need[1], need[2])
        return None

    def check_environment(self) -> str | None:
        """One sentence naming what is missing to use this driver here, or None (default:
        the ``needs`` of this device's URL scheme)."""
        url = self.device.url
        return self.missing(url.scheme if url is not None else "*")

    def status(self) -> Result:
        raise NotImplementedError(f"driver {self.name} has no status()")

    def checks(self) -> list[Check]:
        """Default: one internal check that is the status query."""
        return [Check("status", Level.INTERNAL, lambda ctx: self.status(), "device status")]

    #: Codes of this driver a safe self-repair may clear (``repair``): a link that broke, a
    #: device that went silent or offline; never what a person must fix (paper, cover).
    repairable: ClassVar[frozenset[str]] = frozenset()

    def repair(self, result: Result, deadline: float) -> list[str]:
        """Try what is safe for the device and the sale to clear the fault ``result`` reports
        (one of ``repairable``), before it is reported; return the steps tried, in order
        (``REPAIR_STEPS``), empty when nothing safe could be tried. Called at most once per
        fault episode by the runner, which reads the status again afterwards; must finish
        by ``deadline`` (time.monotonic()). Default: nothing."""
        return []

    def serve(self, notify: Callable[[Result], None]) -> None:
        """Start what this device serves for as long as the daemon runs it (the print proxy
        of ``share = "proxy"``). ``notify`` reports a result as an event of its own (a print
        job that could not be delivered); it may be called from any thread. Raises
        DeviceError when the service cannot start. Default: nothing; ``close()`` stops it."""

    #: The identity keys ``inventory`` gives (``posagent.inventory/1``, docs/daemon.md).
    INVENTORY_KEYS: ClassVar[tuple[str, ...]] = ("maker", "model", "firmware", "serial")

    def inventory(self, last: Result | None) -> dict[str, str | None]:
        """What the device said about itself (``INVENTORY_KEYS``; None where it did not),
        from what the driver already knows: never new traffic to the device. ``last``: the
        device's latest status result, or None. Default: the result's fields of those names."""
        fields = last.fields if last is not None else {}
        return {k: v.strip() or None if isinstance(v, str) else None
                for k in self.INVENTORY_KEYS for v in (fields.get(k),)}

    def close(self) -> None:
        """Release whatever the driver holds; must not raise."""
