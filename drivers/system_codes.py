"""Result codes of the system driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, WARN, Code, code
from posagent.core.i18n import N_

CODES: dict[str, Code] = {
    "CLOCK_WRONG": code(
        FAIL,
        N_("The system clock is wrong: it says {clock}"),
        hint=N_("The clock is wrong: replace the RTC (CMOS) battery, then set the time."),
    ),
    "DISK_FULL": code(
        FAIL,
        N_("Disk full: only {disk_free_mb} MB ({disk_free_pct} %) free"),
        hint=N_("Free disk space: remove old logs or files; the agent cannot keep reports otherwise."),
    ),
    "DISK_LOW": code(
        WARN,
        N_("Disk space low: {disk_free_pct} % free"),
        hint=N_("Disk space is running low: remove old logs or files soon."),
    ),
    "LOAD_HIGH": code(
        WARN,
        N_("System load high: {load1} on {cpu_count} CPUs"),
        hint=N_("The box is overloaded: check for runaway programs."),
    ),
    "POWER_CYCLED_OFTEN": code(
        WARN,
        N_("Switched on {boots_24h} times in 24 hours"),
        N_("Switched off and on too often"),
        hint=N_("The terminal is switched off and on too often: each cycle wears the power supply, the disk and the printer. Leave it on; if it restarts by itself, check the power cable, the socket and the UPS."),
    ),
    "POWER_RESTORED_TOO_FAST": code(
        WARN,
        N_("Switched on again {last_off_s} s after it went off"),
        N_("Switched on again too soon after it went off"),
        hint=N_("After switching the terminal off, wait at least a minute before switching it on again, so the power supply and the devices reset fully."),
    ),
    "MEMORY_LOW": code(
        WARN,
        N_("Memory low: {memory_used_pct} % used"),
        hint=N_("Memory is nearly used up: restart the POS application or the box."),
    ),
    "SYSTEM_OK": code(OK, N_("Disk {disk_free_pct} % free, memory {memory_used_pct} % used")),
    "TEMP_CRITICAL": code(
        FAIL,
        N_("CPU overheating: {temperature_c} °C"),
        hint=N_("The box is overheating: power it off, clear its vents, then power on."),
    ),
    "TEMP_HIGH": code(
        WARN,
        N_("CPU temperature high: {temperature_c} °C"),
        hint=N_("The box runs hot: clear its vents and keep it out of the sun."),
    ),
}
