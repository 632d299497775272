"""Result messages in the technician's language: one template per result code.

A driver's ``message`` is English with the numbers in it; it stays English in JSON and
upstream (codes and messages are the stable, searchable part). For a table in another
language, the message is rebuilt from a per-code template whose English text is the
gettext msgid and whose ``{placeholders}`` are filled from the result's own
``fields`` and ``measurements`` (numbers printed as measured, "~" before an estimate
that a ``<name>_estimated`` measurement marks). Facts that are text come as values too:
``path``, ``host``/``port``, ``usb_id``, ``exception`` (a class name), ``package`` ... and
``reason``, a short stable token that the template shows as its translated phrase
(``REASONS``; an unknown token leaves ``{reason}`` unfilled). ``{where}`` is derived: the
result's ``path``, else ``host[:port]``, ``usb_id``, ``input_name`` or ``reader``.
``{detail}``, the driver's English message, is the last resort of a code whose result
carries none of these facts (a third-party driver's, say).

If a template needs a value the driver left out, or no translation exists, the table
shows the driver's English message instead: a number is never invented or shown as 0.

A code may have several templates, most specific first: the first whose values the
result carries is used (``HOST_HTTP_ERROR`` with or without an HTTP status). Drivers may
add templates for their own codes in an optional ``messages`` class attribute (code ->
template or tuple of templates), like ``hints``; the shared ones live here.
"""

from __future__ import annotations

import logging
import string
from typing import Any

from posagent.core.base import Result
from posagent.core.i18n import N_, _, language

log = logging.getLogger(__name__)

#: code -> English template, or several, most specific first (the first one whose values
#: the result carries is used).
MESSAGES: dict[str, str | tuple[str, ...]] = {
    # runner and shared device codes
    "CHECK_TIMEOUT": N_("No result in time: the device hung or stopped answering"),
    "CHECK_SKIPPED": N_("Skipped: an earlier check of this device hung"),
    "DRIVER_ERROR": (N_("Driver software fault ({exception})"), N_("Driver software fault: {detail}")),
    "DRIVER_BAD_RESULT": N_("The driver returned an invalid result (software fault)"),
    "DRIVER_LOAD_FAILED": (N_("The driver {driver} cannot be loaded: {reason}"),
                           N_("The driver {driver} cannot be loaded"), N_("The driver cannot be loaded: {detail}")),
    "DRIVER_UNAVAILABLE": (N_("The driver cannot run here: {package} is not installed ({install})"),
                           N_("The driver cannot run here: {package} is missing"),
                           N_("The driver cannot run here: {detail}")),
    "DEVICE_ERROR": (N_("Device error: {where} {reason}"), N_("Device error: {detail}")),
    "DEVICE_NOT_FOUND": (N_("Device not found: {where} {reason}"), N_("Device not found: {detail}")),
    "DEVICE_NO_RESPONSE": N_("The device does not answer"),
    "DEVICE_IO_ERROR": (N_("The link to the device broke: {where} {reason}"),
                        N_("The link to the device broke: {reason}"), N_("The link to the device broke: {detail}")),
    "DEVICE_PERMISSION_DENIED": (N_("No permission to open {where}: add the posagent user to group {group}"),
                                 N_("No permission to open {where}"),
                                 N_("No permission to open the device: {detail}")),
    "PROTOCOL_ERROR": N_("The device's answer makes no sense (garbled)"),
    "CONFIG_URL_UNSUPPORTED": (N_("The config gives this device a URL its driver cannot use ({scheme})"),
                               N_("The config gives this device a URL its driver cannot use: {detail}")),
    "USB_UNAVAILABLE": N_("No USB library (libusb) on this box"),
    "USB_NO_ENDPOINT": (N_("The USB device {where} has no endpoint this driver can use"),
                        N_("The USB device has no endpoint this driver can use: {detail}")),
    # host
    "HOST_OK": N_("{host} reachable, {latency_ms} ms"),
    "HOST_SLOW": N_("{host} answers slowly ({latency_ms} ms to connect)"),
    "HOST_PACKET_LOSS": N_("{host}: {loss_pct} % of connections failed"),
    "HOST_DNS_FAILED": N_("Cannot resolve the host name {host}"),
    "HOST_UNREACHABLE": N_("Cannot connect to {host}"),
    "HOST_TLS_FAILED": N_("TLS handshake with {host} failed"),
    "HOST_TIMEOUT": N_("{host} accepted the connection but sent no reply"),
    "HOST_HTTP_ERROR": (N_("{host} answered HTTP {http_status}"), N_("HTTP request to {host} failed ({exception})"),
                        N_("HTTP request failed: {detail}")),
    # system
    "SYSTEM_OK": N_("Disk {disk_free_pct} % free, memory {memory_used_pct} % used"),
    "DISK_LOW": N_("Disk space low: {disk_free_pct} % free"),
    "DISK_FULL": N_("Disk full: only {disk_free_mb} MB ({disk_free_pct} %) free"),
    "MEMORY_LOW": N_("Memory low: {memory_used_pct} % used"),
    "LOAD_HIGH": N_("System load high: {load1} on {cpu_count} CPUs"),
    "TEMP_HIGH": N_("CPU temperature high: {temperature_c} °C"),
    "TEMP_CRITICAL": N_("CPU overheating: {temperature_c} °C"),
    "CLOCK_WRONG": N_("The system clock is wrong: it says {clock}"),
    # UPS and battery (drivers/ups_common.py: the fields every UPS driver reports)
    "UPS_OK": (N_("On mains power, battery {battery_charge_pct} %"), N_("On mains power")),
    "UPS_ON_BATTERY": (N_("On battery: mains power lost; battery {battery_charge_pct} %"),
                       N_("On battery: mains power lost")),
    "UPS_BATTERY_LOW": (N_("Battery low: {battery_charge_pct} %"), N_("Battery low")),
    "UPS_REPLACE_BATTERY": N_("The UPS says its battery needs replacing"),
    "UPS_OVERLOAD": (N_("UPS overloaded: load {load_pct} %"), N_("UPS overloaded")),
    "UPS_FAULT": (N_("UPS fault or output off ({ups_status})"), N_("UPS fault or output off")),
    "UPS_NO_RESPONSE": N_("The UPS does not answer"),
    "UPS_PROTOCOL_ERROR": N_("The UPS's answer makes no sense (garbled)"),
    "UPS_DATA_STALE": N_("upsd gets no fresh data from the UPS"),
    "UPS_DRIVER_NOT_CONNECTED": N_("upsd's driver for this UPS is not running"),
    "UPS_UNKNOWN_NAME": (N_("upsd at {where} has no UPS named '{ups}' (it has: {ups_names})"),
                         N_("upsd at {where} has no UPS named '{ups}'"), N_("upsd does not know this UPS: {detail}")),
    "UPS_ACCESS_DENIED": (N_("upsd at {where} refused access ({nut_error})"), N_("upsd refused access: {reason}"),
                          N_("upsd refused access: {detail}")),
    "UPSD_UNREACHABLE": (N_("Cannot reach upsd: {where} {reason}"), N_("Cannot reach upsd: {detail}")),
    "UPSD_TLS_UNAVAILABLE": (N_("No TLS connection to upsd: {where} {reason}"),
                             N_("No TLS connection to upsd: {detail}")),
    "UPS_TEST_PASSED": N_("Battery test passed"),
    "UPS_TEST_STARTED": N_("Battery test started; the UPS reports the result itself"),
    "UPS_TEST_SKIPPED": N_("Battery test not run: {reason}"),
    "UPS_TEST_FAILED": N_("Battery test failed: the battery went low"),
    "UPS_TEST_NOT_SUPPORTED": N_("This UPS has no battery test"),
    "UPS_TEST_NOT_CONFIRMED": N_("The UPS did not confirm the battery test"),
    "BATTERY_NOT_PRESENT": N_("No internal battery found"),
    # chip-card reader (PC/SC)
    "PCSC_OK": (N_("Chip reader {reader} ready"), N_("Chip reader ready")),
    "PCSC_NO_SERVICE": N_("The smart-card service (pcscd) is not running"),
    "PCSC_ERROR": (N_("PC/SC error {pcsc_code} (reader {reader})"), N_("PC/SC error {pcsc_code}"),
                   N_("The PC/SC call {pcsc_call} failed ({exception})"), N_("PC/SC error: reader {reader} {reason}"),
                   N_("PC/SC error: {detail}")),
    "READER_NOT_PRESENT": (N_("Reader not found: {where} {reason} (pcscd lists: {readers})"),
                           N_("Reader not found: {where} {reason}"), N_("Reader not found: {reason}"),
                           N_("Reader not found: {detail}")),
    "READER_BUSY": N_("The reader is in use by another program"),
    "CARD_ABSENT": N_("No test card in the reader"),
    "CARD_MUTE": N_("The card gives no answer to reset (no ATR)"),
    "CARD_NO_ANSWER": N_("The card stopped answering"),
    "CARD_SW_ERROR": N_("The card answered but is not a payment card"),
    # keypad (drivers/keypad.py measurements: keys_expected, keys_pressed, <finding>_keys)
    "KEYPAD_OK": (N_("All {keys_pressed} keys pressed once, none stuck or bouncing"),
                  N_("All {keys_reported} keys reported, none held"), N_("Keypad present")),
    "KEYPAD_NOT_PRESENT": (N_("Keypad not found: {where} {reason}"), N_("Keypad not found: {detail}")),
    "KEYPAD_BUSY": N_("Another program holds the keypad"),
    "KEYPAD_KEY_STUCK": N_("Key stuck: {stuck_keys}"),
    "KEYPAD_MISSING_KEYS": N_("The keypad does not report key(s): {missing_keys}"),
    "KEYPAD_KEY_DEAD": N_("{keys_pressed} of {keys_expected} keys pressed; dead key(s): {dead_keys}"),
    "KEYPAD_KEY_BOUNCE": N_("Key(s) registering twice: {bounce_keys}"),
    "KEYPAD_KEY_WRONG_CODE": N_("Key(s) sending an unexpected code: {wrong_keys}"),
    "KEYPAD_SCAN_INCOMPLETE": N_("{keys_pressed} of {keys_expected} keys tested; skipped: {skipped_keys}"),
    "KEYPAD_SCAN_ABORTED": N_("Key scan aborted after {keys_pressed} of {keys_expected} keys"),
    "KEYPAD_SCAN_SKIPPED": N_("Key scan skipped by the technician"),
    # magstripe card reader (drivers/cardreader.py, swipe.py, frames.py)
    "READER_OK": (N_("The reader answered in {reply_ms} ms"), N_("Reader {model} present"), N_("Reader present")),
    "READER_NO_RESPONSE": N_("The reader does not answer"),
    "READER_NAK": N_("The reader rejects every command (NAK)"),
    "READER_BAD_CHECKSUM": N_("Corrupted frames from the reader (checksum wrong)"),
    "READER_BAD_FRAME": N_("The reader's frames are malformed"),
    "READER_BAD_LENGTH": N_("The reader's frames have the wrong length"),
    "READER_ECHO_MISMATCH": N_("The reader returned different bytes than were sent"),
    "READER_PROTOCOL_ERROR": N_("The reader answers in an unknown way"),
    "READER_LOOPBACK_OK": N_("Loopback test passed: the bytes came back intact"),
    "READER_LOOPBACK_ERRORS": N_("Loopback test failed: bytes came back wrong"),
    "READER_NO_KERNEL_DRIVER": N_("Reader present, but no kernel driver is bound to it"),
    "READER_SWIPE_OK": N_("Swipe read: the tracks are well formed"),
    "READER_SWIPE_LUHN": N_("Swipe read, but the card number fails its check digit"),
    "READER_NO_SWIPE": N_("No swipe arrived in time"),
    "READER_TRACK_ERROR": N_("The swipe could not be read cleanly"),
    "READER_SWIPE_SKIPPED": N_("Swipe test skipped by the technician"),
    "READER_SWIPE_UNSUPPORTED": N_("This reader's swipe test needs the wedge option"),
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


def all_messages() -> dict[str, str | tuple[str, ...]]:
    """Every known code's English message template: the shared ones and every driver's."""
    from posagent.core.registry import DriverLoadError, available_drivers, load_driver

    merged = dict(MESSAGES)
    for name in available_drivers():
        try:
            merged.update(getattr(load_driver(name), "messages", {}) or {})
        except DriverLoadError:
            continue
    return merged


def templates_for(code: str, driver: str | None = None) -> tuple[str, ...]:
    """The code's templates, most specific first (the driver's own first); () if none."""
    from posagent.selftest.hints import driver_catalog

    found = driver_catalog(driver, "messages").get(code) or MESSAGES.get(code) or all_messages().get(code) or ()
    return (found,) if isinstance(found, str) else tuple(found)


def fmt_value(value: Any) -> str | None:
    """A field or measurement as the template shows it; None for what cannot be shown."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a template uses."""
    try:
        return {f for _t, f, _s, _c in string.Formatter().parse(template) if f}
    except ValueError:
        return set()


def localized_message(code: str, message: str, measurements: dict[str, Any] | None = None,
                      fields: dict[str, Any] | None = None, driver: str | None = None) -> str:
    """The message in the current language; the driver's English message when it cannot be built."""
    if language() == "en":
        return message
    values: dict[str, str] = {"detail": message}
    estimated = {k.removesuffix("_estimated") for k, v in (measurements or {}).items()
                 if k.endswith("_estimated") and v is True}
    for source in (fields or {}, measurements or {}):
        for key, value in source.items():
            shown = fmt_value(value)
            if shown is not None:
                # battery_charge_estimated marks battery_charge_pct as an estimate: "~87"
                values[key] = "~" + shown if key.rpartition("_")[0] in estimated else shown
    _add_facts(values)
    for template in templates_for(code, driver):
        translated = _(template)
        if translated == template:
            continue
        try:
            return translated.format_map(_Strict(values))
        except (KeyError, ValueError, IndexError, AttributeError) as e:
            log.debug("message template for %s not filled (%s)", code, e)
    return message


def _add_facts(values: dict[str, str]) -> None:
    """``reason`` as its phrase in the current language, and the derived ``where``."""
    token = values.pop("reason", None)
    if token in REASONS:
        values["reason"] = _(REASONS[token])
    if "where" in values:
        return
    host, port = values.get("host"), values.get("port")
    if "path" in values:
        values["where"] = values["path"]
    elif host:
        values["where"] = f"{host}:{port}" if port and not host.endswith(f":{port}") else host
    elif "usb_id" in values:
        values["where"] = "USB " + values["usb_id"]
    elif "input_name" in values:
        values["where"] = f"'{values['input_name']}'"
    elif "reader" in values:
        values["where"] = f"'{values['reader']}'"


def display_message(r: Result, driver: str | None = None) -> str:
    return localized_message(r.code, r.message, r.measurements, r.fields, driver)


class _Strict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)
