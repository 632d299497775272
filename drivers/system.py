"""Driver ``system``: the box itself, through psutil.

Disk free on the state dir's filesystem, memory, load, CPU temperature where the kernel
exposes one, uptime, and clock sanity (a year before the build year means the RTC
battery died and TLS certificates will look invalid). No URL.

Power-cycle hygiene from what the daemon recorded of the box's boots (``core.power``):
``boots_24h``, ``unclean_shutdowns_24h``, ``last_off_s``.

Codes: SYSTEM_OK, DISK_LOW (warn), DISK_FULL (fail), MEMORY_LOW (warn), LOAD_HIGH (warn),
TEMP_HIGH (warn) / TEMP_CRITICAL (fail), CLOCK_WRONG (fail), POWER_CYCLED_OFTEN (warn),
POWER_RESTORED_TOO_FAST (warn).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Any

from posagent.core import power
from posagent.core.base import Driver, Measurements, Result, Status
from posagent.core.version import BUILD_YEAR
from posagent.drivers.system_codes import CODES


@dataclass(frozen=True)
class SystemOptions:
    path: str = ""  # filesystem to watch; default: the agent's state dir
    disk_warn_pct: float = 10.0  # free space below this: warn
    disk_fail_pct: float = 3.0
    disk_fail_mb: float = 100.0  # or free space below this many MB: fail
    memory_warn_pct: float = 90.0  # used memory above this: warn
    load_warn_per_cpu: float = 4.0
    temp_warn_c: float = 80.0
    temp_fail_c: float = 95.0
    max_boots_per_day: int = 3  # more boots in 24 h: POWER_CYCLED_OFTEN
    min_off_s: float = 60.0  # switched on again sooner after being off: POWER_RESTORED_TOO_FAST


def snapshot(path: str) -> dict[str, Any]:
    """Figures of the box, also the heartbeat's ``system`` object. Unreadable = absent."""
    import psutil

    out: dict[str, Any] = {}
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe.rstrip("/")) or "/"
    try:
        du = psutil.disk_usage(probe or "/")
        out["disk_path"] = probe or "/"
        out["disk_free_mb"] = round(du.free / 2**20, 1)
        out["disk_free_pct"] = round(100.0 * du.free / du.total, 1) if du.total else None
    except OSError:
        pass
    vm = psutil.virtual_memory()
    out["memory_used_pct"] = round(vm.percent, 1)
    out["memory_available_mb"] = round(vm.available / 2**20, 1)
    try:
        out["load1"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    out["cpu_count"] = os.cpu_count() or 1
    temp = _cpu_temperature()
    if temp is not None:
        out["temperature_c"] = temp
    out["uptime_s"] = int(time.time() - psutil.boot_time())
    out["clock"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return out


def _cpu_temperature() -> float | None:
    import psutil

    try:
        temps = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    best: float | None = None
    for entries in temps.values():
        for e in entries:
            if e.current and (best is None or e.current > best):
                best = float(e.current)
    return round(best, 1) if best is not None else None


class SystemDriver(Driver):
    name = "system"
    family = "system"
    description = "the box: disk, memory, load, temperature, uptime, clock"
    schemes = ()
    url_required = False
    support = "stable"
    Options = SystemOptions
    codes = CODES

    def status(self) -> Result:
        o: SystemOptions = self.options
        s = snapshot(o.path or self.env.state_dir)
        findings: list[tuple[Status, str, str]] = []
        year = dt.date.today().year
        if year < BUILD_YEAR:
            findings.append((Status.FAIL, "CLOCK_WRONG",
                             f"clock says {year}, before this agent was built ({BUILD_YEAR}): RTC battery?"))
        free_pct, free_mb = s.get("disk_free_pct"), s.get("disk_free_mb")
        if free_pct is not None and free_mb is not None:
            if free_pct < o.disk_fail_pct or free_mb < o.disk_fail_mb:
                findings.append((Status.FAIL, "DISK_FULL",
                                 f"{s['disk_path']}: only {free_mb:g} MB ({free_pct:g} %) free"))
            elif free_pct < o.disk_warn_pct:
                findings.append((Status.WARN, "DISK_LOW",
                                 f"{s['disk_path']}: {free_pct:g} % free, below {o.disk_warn_pct:g} %"))
        if s["memory_used_pct"] > o.memory_warn_pct:
            findings.append((Status.WARN, "MEMORY_LOW",
                             f"memory {s['memory_used_pct']:g} % used, above {o.memory_warn_pct:g} %"))
        load = s.get("load1")
        if load is not None and load > o.load_warn_per_cpu * s["cpu_count"]:
            findings.append((Status.WARN, "LOAD_HIGH", f"load {load:g} on {s['cpu_count']} CPUs"))
        temp = s.get("temperature_c")
        if temp is not None and temp >= o.temp_fail_c:
            findings.append((Status.FAIL, "TEMP_CRITICAL", f"CPU at {temp:g} °C"))
        elif temp is not None and temp >= o.temp_warn_c:
            findings.append((Status.WARN, "TEMP_HIGH", f"CPU at {temp:g} °C"))
        measurements: Measurements = {k: v for k, v in s.items() if isinstance(v, int | float)}
        fields = {"uptime_s": s["uptime_s"], "disk_free_pct": free_pct, "clock": s["clock"]}
        findings += self._power(fields, measurements)
        if not findings:
            disk = f"disk {free_pct:g} % free" if free_pct is not None else "disk size not reported"
            msg = f"{disk}, memory {s['memory_used_pct']:g} % used"
            if temp is not None:
                msg += f", CPU {temp:g} °C"
            return Result.ok("SYSTEM_OK", msg, measurements=measurements, fields=fields)
        findings.sort(key=lambda f: f[0].severity, reverse=True)
        status, code, _ = findings[0]
        return Result(status, code, "; ".join(f[2] for f in findings), measurements=measurements,
                      fields=fields)

    def _power(self, fields: dict[str, Any], measurements: Measurements) -> list[tuple[Status, str, str]]:
        """Power-cycle hygiene from what the daemon recorded (``core.power``)."""
        boots = power.load(self.env.state_dir) if self.env.state_dir else []
        if not boots:
            return []
        now = time.time()
        p = power.summary(boots, now)
        fields.update(p.fields())
        measurements.update(p.fields())
        o: SystemOptions = self.options
        found: list[tuple[Status, str, str]] = []
        if p.boots_24h > o.max_boots_per_day:
            found.append((Status.WARN, "POWER_CYCLED_OFTEN",
                          f"{p.boots_24h} boots in 24 h (more than {o.max_boots_per_day})"))
        if p.last_off_s is not None and p.last_off_s < o.min_off_s and now - boots[-1].booted_at < power.DAY:
            found.append((Status.WARN, "POWER_RESTORED_TOO_FAST",
                          f"switched on again {p.last_off_s:g} s after going off (wait at least {o.min_off_s:g} s)"))
        return found
