"""The codes every driver may end in: the runner's, the transports' and the generic device codes."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import UNKNOWN, WARN, Code, code
from posagent.core.i18n import N_

SHARED: dict[str, Code] = {
    "CHECK_SKIPPED": code(
        UNKNOWN, N_("Skipped: an earlier check of this device hung"), hint=N_("Fix the hung check above first.")
    ),
    "CHECK_TIMEOUT": code(
        UNKNOWN,
        N_("No result in time: the device hung or stopped answering"),
        hint=N_("The device stopped answering mid-check: check its cable and power, then run the test again."),
    ),
    "CONFIG_URL_UNSUPPORTED": code(
        UNKNOWN,
        N_("The config gives this device a URL its driver cannot use ({scheme})"),
        N_("The config gives this device a URL its driver cannot use: {detail}"),
        hint=N_("This driver cannot use that kind of URL: fix the device's url in the config."),
    ),
    "DEVICE_BUSY": code(
        UNKNOWN,
        N_("Busy: {where} {reason}"),
        N_("Busy: another program is using the device"),
        hint=N_(
            "The POS application is using the device, which is normal while it prints or reads. If it stays busy for hours, look for a program that hangs on the port, or restart the POS application."
        ),
    ),
    "DEVICE_ERROR": code(
        UNKNOWN,
        N_("Device error: {where} {reason}"),
        N_("Device error: {detail}"),
        hint=N_("Check the device's cable and power and test again; if it stays, send the log to support."),
    ),
    "DEVICE_IO_ERROR": code(
        UNKNOWN,
        N_("The link to the device broke: {where} {reason}"),
        N_("The link to the device broke: {reason}"),
        N_("The link to the device broke: {detail}"),
        hint=N_("The link dropped: reseat the cable or USB adapter, then run the test again."),
    ),
    "DEVICE_NOT_FOUND": code(
        UNKNOWN,
        N_("Device not found: {where} {reason}"),
        N_("Device not found: {detail}"),
        hint=N_(
            "Reseat the device's data cable and power, check it is switched on, and that the config names the right port."
        ),
    ),
    "DEVICE_NO_RESPONSE": code(
        UNKNOWN,
        N_("The device does not answer"),
        hint=N_("Check the data cable and the device's power; power-cycle the device."),
    ),
    "DEVICE_PERMISSION_DENIED": code(
        UNKNOWN,
        N_("No permission to open {where}: add the posagent user to group {group}"),
        N_("No permission to open {where}"),
        N_("No permission to open the device: {detail}"),
        hint=N_("Add the posagent user to the device's group (dialout, lp or input)."),
    ),
    "STATE_STORE_RECOVERED": code(
        WARN,
        N_("The agent's outbox was damaged and replaced: {salvaged} messages saved, the damaged file kept"),
        N_("The agent's outbox was damaged and replaced"),
        hint=N_("The state store was damaged (often a power cut on the storage): the agent replaced it and goes on. If it happens again, check the disk and the power supply."),
    ),
    "SELFTEST_INTERRUPTED": code(
        WARN,
        N_("The last self-test did not finish (started {started_at}): the agent stopped during it"),
        N_("The last self-test did not finish"),
        hint=N_("The agent stopped during the self-test (a crash, a power cut, a restart); it is not run again today. If it happens again, send the agent log to support."),
    ),
    "DRIVER_BAD_RESULT": code(
        UNKNOWN,
        N_("The driver returned an invalid result (software fault)"),
        hint=N_("Software fault in the driver: send the agent log to support."),
    ),
    "DRIVER_ERROR": code(
        UNKNOWN,
        N_("Driver software fault ({exception})"),
        N_("Driver software fault: {detail}"),
        hint=N_("Software fault in the driver: send the agent log to support."),
    ),
    "DRIVER_LOAD_FAILED": code(
        UNKNOWN,
        N_("The driver {driver} cannot be loaded: {reason}"),
        N_("The driver {driver} cannot be loaded"),
        N_("The driver cannot be loaded: {detail}"),
        hint=N_("Reinstall posagent; if a third-party driver, check its installation."),
    ),
    "DRIVER_UNAVAILABLE": code(
        UNKNOWN,
        N_("The driver cannot run here: {package} is not installed ({install})"),
        N_("The driver cannot run here: {package} is missing"),
        N_("The driver cannot run here: {detail}"),
        hint=N_("Install what the message names, then run the test again."),
    ),
    "PROTOCOL_ERROR": code(
        UNKNOWN,
        N_("The device's answer makes no sense (garbled)"),
        hint=N_("The device answered nonsense: check the baud rate in the config and the cable."),
    ),
    "USB_NO_ENDPOINT": code(
        UNKNOWN,
        N_("The USB device {where} has no endpoint this driver can use"),
        N_("The USB device has no endpoint this driver can use: {detail}"),
        hint=N_("The USB device is not the expected kind: check the vendor:product id in the config."),
    ),
    "USB_UNAVAILABLE": code(
        UNKNOWN,
        N_("No USB library (libusb) on this box"),
        hint=N_("Install the USB library (apt-get install libusb-1.0-0), then run the test again."),
    ),
}


#: ``reason`` token -> English phrase (msgid). Most complete a sentence whose subject is
#: ``{where}`` ("{where} {reason}": "/dev/ttyS0 does not exist"); the others stand alone.
REASONS: dict[str, str] = {
    # opening and talking to a device (transport, evdev, usb, upsd)
    "absent": N_("does not exist (unplugged?)"),
    "open_failed": N_("cannot be opened"),
    "refused": N_("refused the connection"),
    "timeout": N_("did not answer in time"),
    "unreachable": N_("cannot be reached (no route)"),
    "dns": N_("cannot be resolved (DNS)"),
    "connect_failed": N_("cannot be connected to"),
    "not_connected": N_("is not connected"),
    "link_lost": N_("lost the link"),
    "closed": N_("closed the connection"),
    "write_failed": N_("did not accept the data"),
    "read_failed": N_("cannot be read"),
    "overlong_reply": N_("sent a reply without its end marker"),
    "gone": N_("went away (unplugged?)"),
    "no_answer": N_("stopped answering"),
    "grab_failed": N_("cannot be held for the key scan"),
    "no_such_name": N_("is not among the input devices"),
    "no_url": N_("no URL is configured"),
    # the agent's own state
    "damaged": N_("was damaged"),
    "interrupted": N_("did not finish"),
    # shared devices (share = "guest"): why posagent did not ask
    "uucp_lock": N_("is locked by another program (lock file in /run/lock)"),
    "flock": N_("is locked by another program (flock)"),
    "exclusive": N_("is opened exclusively by another program"),
    "in_use": N_("is in use by another program"),
    "serving_another": N_("is serving another connection"),
    "quiet_window": N_("is open in another program during business hours"),
    # PC/SC readers
    "no_match": N_("matches none of the readers pcscd lists"),
    "no_reader": N_("pcscd lists no reader"),
    "unusable": N_("is listed by pcscd but cannot be used"),
    "no_state": N_("did not report its state"),
    # upsd
    "no_tls": N_("has no TLS certificate configured (CERTFILE)"),
    "tls_failed": N_("failed the TLS handshake"),
    "no_user": N_("the battery test needs a user with instcmds rights in the device URL"),
    # drivers that cannot be loaded
    "not_installed": N_("it is not installed"),
    "import_failed": N_("its code cannot be imported"),
    "not_a_driver": N_("it is not a posagent driver"),
    "name_mismatch": N_("it is registered under another name"),
    # disruptive tests outside the quiet window (UPS battery test)
    "no_business_hours": N_("no business hours are configured, so no time is known to be safe"),
    "blackout_date": N_("today is a blackout date"),
    "business_hours": N_("inside business hours"),
}
