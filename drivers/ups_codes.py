"""The codes of every UPS and battery driver (``ups_common.grade`` and the NUT/Megatec specifics)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, UNKNOWN, WARN, Code, code
from posagent.core.i18n import N_

UPS_CODES: dict[str, Code] = {
    "BATTERY_AGED": code(
        WARN,
        N_("Battery aged: health about {battery_health_pct} % (voltage drop under test {battery_drop_first_v} V at first, {battery_drop_v} V now)"),
        N_("Battery aged: health about {battery_health_pct} %"),
        N_("Battery aged: installed {battery_age_years} years ago"),
        N_("Battery aged"),
        hint=N_(
            "The battery tests show the battery wearing out (it holds less and its voltage sags more under load): order a new battery and replace it at the next visit, then run `posagent ups battery-changed` with the UPS's name so the new battery is measured afresh; UPS batteries last about 3-5 years."
        ),
    ),
    "UPS_BATTERY_LOW": code(
        FAIL,
        N_("Battery low: {battery_charge_pct} %"),
        N_("Battery low"),
        hint=N_(
            "The battery is nearly empty: finish the sale and shut the box down now. If mains is on and it stays low after a night of charging, replace the battery. After a power cut wait at least a minute before powering the UPS on again."
        ),
    ),
    "UPS_DATA_STALE": code(
        UNKNOWN,
        N_("upsd gets no fresh data from the UPS"),
        hint=N_(
            "The NUT driver stopped getting data from the UPS: check the UPS's data cable, then restart the NUT driver (upsdrvctl stop; upsdrvctl start)."
        ),
    ),
    "UPS_DRIVER_NOT_CONNECTED": code(
        UNKNOWN,
        N_("upsd's driver for this UPS is not running"),
        hint=N_("upsd runs but its UPS driver does not: check the UPS cable and start the driver (upsdrvctl start)."),
    ),
    "UPS_FAULT": code(
        FAIL,
        N_("UPS fault or output off ({ups_status})"),
        N_("UPS fault or output off"),
        hint=N_(
            "The UPS reports a fault or its output is off: switch it off, wait at least a minute, switch it on again; if the fault stays, replace the UPS."
        ),
    ),
    "UPS_NO_RESPONSE": code(
        UNKNOWN,
        N_("The UPS does not answer"),
        hint=N_(
            "The UPS does not answer: check that it is switched on and its data cable (serial or USB) is plugged in at both ends."
        ),
    ),
    "UPS_OK": code(OK, N_("On mains power, battery {battery_charge_pct} %"), N_("On mains power")),
    "UPS_ON_BATTERY": code(
        WARN,
        N_("On battery: mains power lost; battery {battery_charge_pct} %"),
        N_("On battery: mains power lost"),
        hint=N_(
            "Mains power is off at the UPS: check the wall socket, the mains (circuit breaker, power in the shop) and the UPS's input plug. Save work; the till runs on battery only for minutes. After a power cut wait at least a minute before powering the UPS on again."
        ),
    ),
    "UPS_OVERLOAD": code(
        FAIL,
        N_("UPS overloaded: load {load_pct} %"),
        N_("UPS overloaded"),
        hint=N_(
            "Too much is plugged into the UPS: move printers, heaters and monitors to an ordinary socket so only the till is protected."
        ),
    ),
    "UPS_PROTOCOL_ERROR": code(
        UNKNOWN,
        N_("The UPS's answer makes no sense (garbled)"),
        hint=N_(
            "The UPS answered something unreadable: check the cable, the baud rate (2400 for Megatec) and that the UPS speaks the Megatec Q1 protocol."
        ),
    ),
    "UPS_REPLACE_BATTERY": code(
        WARN,
        N_("The UPS says its battery needs replacing"),
        hint=N_("The battery is worn out (aged): replace it; UPS batteries last about 3-5 years."),
    ),
    "UPS_TEST_NOT_SUPPORTED": code(
        UNKNOWN,
        N_("This UPS has no battery test"),
        hint=N_(
            "This UPS does not offer the battery test: test it by hand (unplug the UPS from the wall for 10 s outside business hours), or set battery_test = false."
        ),
    ),
    "UPS_TEST_SKIPPED": code(OK, N_("Battery test not run: {reason}")),
}
