"""Remediation hints per result code: what a technician should do about it.

Codes shared by every driver are here; each driver class lists its own codes' hints in
its ``hints`` class attribute. The English text is the msgid; translations live in the
gettext catalogs.
"""

from __future__ import annotations

from posagent.core.i18n import N_, _

HINTS: dict[str, str] = {
    "CHECK_TIMEOUT": N_("The device stopped answering mid-check: check its cable and power, then run the test again."),
    "CHECK_SKIPPED": N_("Fix the hung check above first."),
    "DRIVER_ERROR": N_("Software fault in the driver: send the agent log to support."),
    "DRIVER_BAD_RESULT": N_("Software fault in the driver: send the agent log to support."),
    "DRIVER_LOAD_FAILED": N_("Reinstall posagent; if a third-party driver, check its installation."),
    "DRIVER_UNAVAILABLE": N_("Install what the message names, then run the test again."),
    "DEVICE_ERROR": N_("Check the device's cable and power and test again; if it stays, send the log to support."),
    "CONFIG_URL_UNSUPPORTED": N_("This driver cannot use that kind of URL: fix the device's url in the config."),
    "USB_UNAVAILABLE": N_("Install the USB library (apt-get install libusb-1.0-0), then run the test again."),
    "USB_NO_ENDPOINT": N_("The USB device is not the expected kind: check the vendor:product id in the config."),
    "DEVICE_NOT_FOUND": N_("Reseat the device's data cable and power, check it is switched on, and that the "
                           "config names the right port."),
    "DEVICE_NO_RESPONSE": N_("Check the data cable and the device's power; power-cycle the device."),
    "DEVICE_IO_ERROR": N_("The link dropped: reseat the cable or USB adapter, then run the test again."),
    "DEVICE_PERMISSION_DENIED": N_("Add the posagent user to the device's group (dialout, lp or input)."),
    "PROTOCOL_ERROR": N_("The device answered nonsense: check the baud rate in the config and the cable."),
    "HOST_DNS_FAILED": N_("Check the network cable and router, and the DNS server setting."),
    "HOST_UNREACHABLE": N_("Check the network cable, the router, the firewall and the DNS setting; the host may "
                           "be down."),
    "HOST_TLS_FAILED": N_("Check the system clock (wrong after a power cut: replace the RTC battery) and the CA "
                          "certificate; a proxy may be intercepting TLS."),
    "HOST_TIMEOUT": N_("The host accepted the connection but did not answer: report it to the acquirer."),
    "HOST_HTTP_ERROR": N_("The host answered with an error: report it to the acquirer or fleet operator."),
    "HOST_SLOW": N_("The network is slow: check the router and other traffic on the line."),
    "HOST_PACKET_LOSS": N_("Connections fail now and then: check the cable, Wi-Fi signal and router."),
    "DISK_FULL": N_("Free disk space: remove old logs or files; the agent cannot keep reports otherwise."),
    "DISK_LOW": N_("Disk space is running low: remove old logs or files soon."),
    "MEMORY_LOW": N_("Memory is nearly used up: restart the POS application or the box."),
    "LOAD_HIGH": N_("The box is overloaded: check for runaway programs."),
    "TEMP_HIGH": N_("The box runs hot: clear its vents and keep it out of the sun."),
    "TEMP_CRITICAL": N_("The box is overheating: power it off, clear its vents, then power on."),
    "CLOCK_WRONG": N_("The clock is wrong: replace the RTC (CMOS) battery, then set the time."),
}


def all_hints() -> dict[str, str]:
    """Every known code's English hint: the shared ones and every installed driver's."""
    from posagent.core.registry import DriverLoadError, available_drivers, load_driver

    merged = dict(HINTS)
    for name in available_drivers():
        try:
            merged.update(load_driver(name).hints)
        except DriverLoadError:
            continue
    return merged


def driver_catalog(driver: str | None, attr: str) -> dict[str, str]:
    """One driver's ``hints`` (or ``messages``) by registry name; {} if unknown or broken."""
    if not driver:
        return {}
    from posagent.core.registry import DriverLoadError, load_driver

    try:
        return dict(getattr(load_driver(driver), attr, {}) or {})
    except DriverLoadError:
        return {}


def hint(code: str, driver: str | None = None) -> str:
    """The hint for ``code`` in the current language, or "" for codes that need none.

    With ``driver`` (the registry name), that driver's own hint comes first: two drivers
    may use one code (READER_NOT_PRESENT) with different remedies."""
    text = driver_catalog(driver, "hints").get(code) or HINTS.get(code) or all_hints().get(code)
    return _(text) if text else ""
