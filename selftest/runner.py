"""The self-test runner: every device's checks, concurrently, each under its own timeout.

Devices run in parallel (one thread each); a device's checks run in order, since they
share one port. Each check runs in a daemon thread the coordinator waits on with the
check's timeout: a check that hangs is cut and reported ``unknown`` (CHECK_TIMEOUT), the
device's later checks are skipped, and the driver is rebuilt on next use. An exception
becomes ``unknown`` with the reason; a return value that is not a Result becomes
``unknown`` (DRIVER_BAD_RESULT). Interactive checks run after the rest, one at a time,
because they talk to the technician. Only this module turns exceptions into results.

Before a status round (or a self-test's ``status`` check) reports a fault whose code the
driver lists in ``repairable``, the driver's ``repair`` hook is tried, at most once per
fault episode (``posagent.core.repair.Episodes``, kept by the device set), then the status
read again; both in one call cut at the device's timeout, all devices' attempts at once.
The result reported carries the ``Repair`` record (docs/self-repair.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from posagent.core.base import REPAIR_STEPS, Check, CheckContext, Driver, Level, Repair, Result, Status
from posagent.core.errors import DeviceError
from posagent.core.repair import HEALTHY
from posagent.core.status import worst
from posagent.selftest.devices import Broken, DeviceSet

log = logging.getLogger(__name__)

#: Extra time a check thread gets past its timeout to return a result it already has.
_GRACE = 0.05


@dataclass
class CheckRecord:
    device: str
    driver: str
    name: str
    level: Level
    result: Result

    @property
    def key(self) -> str:
        return f"{self.device}.{self.name}"


@dataclass
class Report:
    terminal_id: str
    level: Level
    started_at: dt.datetime
    duration_ms: float = 0.0
    checks: list[CheckRecord] = field(default_factory=list)
    technician: str = ""

    @property
    def status(self) -> Status:
        return worst(c.result.status for c in self.checks)


Progress = Callable[[str, CheckRecord | None, int, int], None]


class Call:
    """``fn`` running in a daemon thread; ``result(deadline)`` turns its outcome into a
    Result, or CHECK_TIMEOUT when the deadline passes first (the thread is abandoned)."""

    def __init__(self, fn: Callable[[], Any], what: str) -> None:
        self._fn, self._what = fn, what
        self._box: list[Result] = []
        self._done = threading.Event()
        self._t0 = time.perf_counter()
        threading.Thread(target=self._target, daemon=True, name=f"check-{what}").start()

    def _target(self) -> None:
        try:
            r = _as_result(self._fn(), self._what)
        except BaseException as e:
            if not isinstance(e, DeviceError):
                log.error("check %s raised %s: %s", self._what, type(e).__name__, e, exc_info=True)
            r = Result.from_error(e)
        self._box.append(r.timed(round((time.perf_counter() - self._t0) * 1000.0, 2)))
        self._done.set()

    def result(self, deadline: float, timeout: float) -> Result:
        """Wait until the monotonic ``deadline`` (``timeout`` names it in the message)."""
        if not self._done.wait(max(0.0, deadline - time.monotonic()) + _GRACE):
            r = Result.unknown("CHECK_TIMEOUT", f"no result within {timeout:g} s (device hung?)")
            return r.timed(round((time.perf_counter() - self._t0) * 1000.0, 2))
        return self._box[0]


def call_with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Result:
    """Run ``fn`` in a daemon thread; turn its outcome into a Result, cut at ``timeout``."""
    return Call(fn, what).result(time.monotonic() + timeout, timeout)


class RepairAttempt:
    """The driver's ``repair`` hook and, when it tried anything, the status read again, in
    a ``Call`` cut at the device's timeout. ``result()`` is what to report: the fresh reading
    with the ``Repair`` record; the fault as it was when the driver had nothing safe to try;
    the fault with ``timed_out`` when the attempt did not finish (the caller rebuilds the
    driver)."""

    def __init__(self, name: str, driver: Driver, fault: Result) -> None:
        self.name, self.driver, self.fault = name, driver, fault
        self.timeout = driver.timeout
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout
        self._at = dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
        self._call = Call(self._run, f"{name}.repair")

    def _run(self) -> Result:
        t0 = time.perf_counter()
        try:
            steps = self.driver.repair(self.fault, self.deadline)
        except Exception as e:  # a failing hook costs the repair, never the fault's report
            log.error("device %s: repair() raised %s: %s", self.name, type(e).__name__, e,
                      exc_info=not isinstance(e, DeviceError))
            return self.fault
        tried = tuple(dict.fromkeys(s for s in steps if s in REPAIR_STEPS))
        if not tried:
            return self.fault
        try:
            after = _as_result(self.driver.status(), f"{self.name}.status")
        except Exception as e:
            if not isinstance(e, DeviceError):
                log.error("device %s: status() raised %s: %s", self.name, type(e).__name__, e, exc_info=True)
            after = Result.from_error(e)
        repair = Repair(tried, after.status in HEALTHY, self._at, round((time.perf_counter() - t0) * 1000.0, 2))
        log.info("device %s: self-repair (%s) %s %s", self.name, ", ".join(tried),
                 "cleared" if repair.cleared else "did not clear", self.fault.code)
        return after.with_repair(repair)

    def result(self) -> Result:
        r = self._call.result(self.deadline, self.timeout)
        if r.code == "CHECK_TIMEOUT":
            log.warning("device %s: self-repair did not finish within %g s", self.name, self.timeout)
            ms = round((time.monotonic() - self.started) * 1000.0, 2)
            return self.fault.with_repair(Repair((), False, self._at, ms, timed_out=True))
        return r.timed(round(self.fault.duration_ms + r.duration_ms, 2))


def _as_result(value: Any, what: str) -> Result:
    if (isinstance(value, Result) and isinstance(value.status, Status) and isinstance(value.code, str)
            and value.code and isinstance(value.message, str) and isinstance(value.measurements, dict)
            and isinstance(value.fields, dict)):
        return value
    return Result.unknown("DRIVER_BAD_RESULT", f"driver returned {type(value).__name__} instead of a result")


class Runner:
    def __init__(self, devices: DeviceSet, *, progress: Progress | None = None,
                 prompt: Callable[[str], str] | None = None, say: Callable[[str], None] | None = None,
                 lang: str = "en") -> None:
        self.devices = devices
        self.progress = progress
        self.prompt = prompt
        self.say = say
        self.lang = lang
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0
        self._hung: set[str] = set()  # devices with a check still stuck in this run

    # -- public --------------------------------------------------------------
    def selftest(self, level: Level, only: list[str] | None = None) -> Report:
        cfg = self.devices.config
        report = Report(cfg.agent.terminal_id, level, dt.datetime.now().astimezone())
        t0 = time.perf_counter()
        plan = self._plan(level, only)
        self._total = sum(len(checks) for _, _, checks in plan)
        self._done = 0
        self._hung.clear()
        shared: dict[str, Result] = {}
        # Non-interactive checks: devices concurrently; external checks after every
        # device's internal ones so the test slip can print the internal results.
        for lvl in (Level.INTERNAL, Level.EXTERNAL):
            threads = []
            for name, driver, checks in plan:
                todo = [c for c in checks if c.level == lvl]
                if todo:
                    th = threading.Thread(target=self._run_device, daemon=True,
                                          args=(name, driver, todo, report, shared, level))
                    th.start()
                    threads.append(th)
            for th in threads:
                th.join()
        for name, driver, checks in plan:
            todo = [c for c in checks if c.level == Level.INTERACTIVE]
            if todo:
                self._run_device(name, driver, todo, report, shared, level)
        order = {n: i for i, n in enumerate(self.devices.names())}
        report.checks.sort(key=lambda c: (order.get(c.device, 0), c.level))
        report.duration_ms = round((time.perf_counter() - t0) * 1000.0, 1)
        return report

    def status(self, only: list[str] | None = None) -> dict[str, tuple[str, Result]]:
        """Every device's status() concurrently; name -> (driver name, result)."""
        out: dict[str, tuple[str, Result]] = {}
        calls: list[tuple[str, Driver, Call, float]] = []
        start = time.monotonic()
        for name in self.devices.names(only):  # one thread per device, all at once
            entry = self.devices.get(name)
            if isinstance(entry, Broken):
                out[name] = (entry.device.driver, Result.unknown(entry.code, entry.message,
                                                                 facts=dict(entry.facts)))
            else:
                calls.append((name, entry, Call(entry.status, f"{name}.status"), entry.timeout))
        read: dict[str, Result] = {}
        for name, _driver, call, timeout in calls:
            read[name] = call.result(start + timeout, timeout)
            if read[name].code == "CHECK_TIMEOUT":
                self.devices.poison(name)
        attempts = [a for name, driver, _c, _t in calls if (a := self._repair(name, driver, read[name]))]
        for attempt in attempts:  # all started at once, each cut at its device's timeout
            read[attempt.name] = self._repaired(attempt)
        for name, driver, _call, _timeout in calls:
            r = self.devices.repairs.settle(name, read[name], time.monotonic())
            stale_after = self.devices.config.device(name).sharing.stale_after
            out[name] = (driver.name, self.devices.freshness.apply(name, r, stale_after))
        return {n: out[n] for n in self.devices.names(only)}

    # -- internals -----------------------------------------------------------
    def _repair(self, name: str, driver: Driver, r: Result) -> RepairAttempt | None:
        """A repair attempt started now, if one is due for this fault (see the module doc)."""
        if not self.devices.repairs.due(name, r, frozenset(driver.repairable)):
            return None
        return RepairAttempt(name, driver, r)

    def _repaired(self, attempt: RepairAttempt) -> Result:
        """The attempt's result, the episode told of it; a hung driver is rebuilt."""
        r = attempt.result()
        if r.repair is not None and r.repair.timed_out:
            self.devices.poison(attempt.name)
        self.devices.repairs.attempted(attempt.name, r.repair, time.monotonic())
        return r

    def _plan(self, level: Level, only: list[str] | None) -> list[tuple[str, Driver | Broken, list[Check]]]:
        plan: list[tuple[str, Driver | Broken, list[Check]]] = []
        for name in self.devices.names(only):
            entry = self.devices.get(name)
            if isinstance(entry, Broken):
                plan.append((name, entry, [Check("setup", Level.INTERNAL, _broken(entry))]))
                continue
            try:
                checks = [c for c in entry.checks() if c.level <= level]
            except Exception as e:
                log.error("device %s: checks() raised %s", name, e, exc_info=True)
                checks = [Check("setup", Level.INTERNAL, _raiser(e))]
            plan.append((name, entry, checks))
        return plan

    def _run_device(self, name: str, driver: Driver | Broken, checks: list[Check], report: Report,
                    shared: dict[str, Result], level: Level) -> None:
        driver_name = driver.device.driver
        timeout_default = driver.timeout if isinstance(driver, Driver) else 1.0
        for check in checks:
            self._notify("start", None, f"{name}.{check.name}")
            if name in self._hung:
                result = Result.unknown("CHECK_SKIPPED", "skipped: an earlier check of this device hung")
            else:
                timeout = check.timeout or timeout_default
                ctx = CheckContext(deadline=time.monotonic() + timeout, terminal_id=report.terminal_id,
                                   level=level, prompt=self.prompt, say=self.say, results=shared,
                                   state_dir=self.devices.config.agent.state_dir, lang=self.lang)
                result = call_with_timeout(functools.partial(check.run, ctx), timeout, f"{name}.{check.name}")
                if result.code == "CHECK_TIMEOUT":
                    self._hung.add(name)
                    self.devices.poison(name)
                elif check.name == "status" and isinstance(driver, Driver):
                    attempt = self._repair(name, driver, result)
                    if attempt is not None:
                        result = self._repaired(attempt)
                    result = self.devices.repairs.settle(name, result, time.monotonic())
            rec = CheckRecord(name, driver_name, check.name, check.level, result)
            with self._lock:
                shared[rec.key] = result
                report.checks.append(rec)
                self._done += 1
            self._notify("done", rec, rec.key)

    def _notify(self, event: str, rec: CheckRecord | None, what: str) -> None:
        if self.progress is not None:
            try:
                self.progress(what if event == "start" else event, rec, self._done, self._total)
            except Exception:  # progress display must never break a run
                pass


def _broken(entry: Broken) -> Callable[[CheckContext], Result]:
    def run(ctx: CheckContext) -> Result:
        return Result.unknown(entry.code, entry.message, facts=dict(entry.facts))

    return run


def _raiser(e: Exception) -> Callable[[CheckContext], Result]:
    def run(ctx: CheckContext) -> Result:
        raise e

    return run
