"""Driver ``battery``: the box's own battery (all-in-one POS terminals), via psutil.

No URL. ``psutil.sensors_battery()`` gives the charge, the time left and whether mains
is plugged in; the reading uses the UPS vocabulary (``ups_status`` "OL", "OB DISCHRG",
with "LB" below ``low_pct``) so a fleet sorts boxes and UPSes alike.

Codes: UPS_OK, UPS_ON_BATTERY (warn), UPS_BATTERY_LOW (fail, charge below ``low_pct``),
BATTERY_NOT_PRESENT (unknown: the kernel reports no battery).
"""

from __future__ import annotations

from dataclasses import dataclass

from posagent.core.base import Driver, Result
from posagent.core.errors import DeviceError
from posagent.drivers.battery_codes import CODES
from posagent.drivers.ups_common import UpsReading, grade


@dataclass(frozen=True)
class BatteryOptions:
    low_pct: float = 10.0  # charge below this: UPS_BATTERY_LOW

    def __post_init__(self) -> None:
        if not 0 <= self.low_pct <= 100:
            raise ValueError("low_pct must be between 0 and 100")


class BatteryDriver(Driver):
    name = "battery"
    family = "ups"
    description = "the terminal's internal battery (laptop-style, via the kernel's power_supply class)"
    schemes = ()
    url_required = False
    url_example = ""
    support = "beta"
    Options = BatteryOptions
    codes = CODES

    def status(self) -> Result:
        import psutil

        try:
            batt = psutil.sensors_battery()
        except (AttributeError, NotImplementedError):
            batt = None
        except OSError as e:
            raise DeviceError(f"cannot read the battery state: {e.strerror or e}", code="BATTERY_NOT_PRESENT") from e
        if batt is None:
            return Result.unknown("BATTERY_NOT_PRESENT", "no internal battery reported by the kernel "
                                  "(/sys/class/power_supply has no battery)")
        percent = round(float(batt.percent), 1) if batt.percent is not None else None
        plugged = batt.power_plugged
        secs = batt.secsleft
        runtime = None if secs in (psutil.POWER_TIME_UNLIMITED, psutil.POWER_TIME_UNKNOWN) or secs is None \
            or secs < 0 else int(secs)
        low = percent is not None and percent < self.options.low_pct
        tokens: list[str] = []
        if plugged is True:
            tokens.append("OL")
        elif plugged is False:
            tokens += ["OB", "DISCHRG"]
        if low:
            tokens.append("LB")
        reading = UpsReading(tokens=tokens, battery_charge_pct=percent, battery_runtime_s=runtime,
                             battery_low=low if percent is not None else None)
        return grade(reading, what="battery")
