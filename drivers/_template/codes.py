"""Result codes of the template driver: grades, message templates, hints (msgids).

Every code the driver's package can end in has an entry here (the unit tests scan the
package's source for codes and fail on one that is missing, or used with a grade not
listed). Codes of ``posagent.core.codes.SHARED`` (DEVICE_PERMISSION_DENIED, CHECK_TIMEOUT
...) need none. Prefix the codes with the family (``LAMP_``, ``SCALE_``) when you copy it.

Templates are tried in order, most specific first; a placeholder is a measurement, field
or fact of the result (``{where}`` and ``{reason}`` are derived from the facts a transport
error carries). ``{detail}``, the driver's English message, is only ever the last resort.
A code that can be a problem (any grade but ok) needs a hint: what the technician does.
The texts are gettext msgids; ``python3 tools/i18n_update.py`` extracts them from a
registered copy, and the zh-CN texts are filled in ``agent/locale`` (the template itself
is skipped: the catalogs ship no fictional device).
"""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, UNKNOWN, WARN, Code, code
from posagent.core.i18n import N_

CODES: dict[str, Code] = {
    "TEMPLATE_BLINKED": code(OK, N_("The lamp blinked")),
    "TEMPLATE_FAN_STALLED": code(
        WARN,
        N_("The lamp's fan has stopped ({temperature_c} °C)"),
        N_("The lamp's fan has stopped"),
        hint=N_("Clean the lamp's air vents; if the fan stays stopped, replace the lamp before it overheats."),
    ),
    "TEMPLATE_HOT": code(
        WARN,
        N_("The lamp runs hot: {temperature_c} °C"),
        N_("The lamp runs hot"),
        hint=N_("Give the lamp room to breathe (nothing on or against it) and keep it out of direct sun."),
    ),
    "TEMPLATE_LAMP_OUT": code(
        FAIL,
        N_("The lamp's bulb is out"),
        hint=N_("Replace the bulb (switch the lamp off first)."),
    ),
    "TEMPLATE_NOT_CONNECTED": code(
        UNKNOWN,
        N_("Lamp not connected: {where} {reason}"),
        N_("Lamp not connected: {detail}"),
        hint=N_("Reseat the lamp's data cable and power, check it is switched on, and that the config names the right port."),
    ),
    "TEMPLATE_NO_RESPONSE": code(
        UNKNOWN,
        N_("The lamp does not answer"),
        hint=N_("Check the lamp's data cable and power and the baud rate in the config; power-cycle the lamp."),
    ),
    "TEMPLATE_OK": code(
        OK,
        N_("Lamp lit, {temperature_c} °C"),
        N_("Lamp lit"),
    ),
    "TEMPLATE_PROTOCOL_ERROR": code(
        UNKNOWN,
        N_("The lamp's answer makes no sense (garbled)"),
        hint=N_("The lamp answered nonsense: check the baud rate in the config and the cable."),
    ),
}
