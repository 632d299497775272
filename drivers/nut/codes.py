"""Result codes of the nut driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import OK, UNKNOWN, Code, code
from posagent.core.i18n import N_
from posagent.drivers.ups_codes import UPS_CODES

OWN_CODES: dict[str, Code] = {
    "UPSD_TLS_UNAVAILABLE": code(
        UNKNOWN,
        N_("No TLS connection to upsd: {where} {reason}"),
        N_("No TLS connection to upsd: {detail}"),
        hint=N_(
            "upsd has no TLS certificate configured: configure CERTFILE in upsd.conf, or set starttls = false for this device."
        ),
    ),
    "UPSD_UNREACHABLE": code(
        UNKNOWN,
        N_("Cannot reach upsd: {where} {reason}"),
        N_("Cannot reach upsd: {detail}"),
        hint=N_(
            "Cannot reach upsd: check that nut-server runs, that upsd.conf LISTENs on this address and port, and the firewall."
        ),
    ),
    "UPS_ACCESS_DENIED": code(
        UNKNOWN,
        N_("upsd at {where} refused access ({nut_error})"),
        N_("upsd refused access: {reason}"),
        N_("upsd refused access: {detail}"),
        hint=N_(
            "upsd refused the user or password: check them in the device URL against upsd.users (a LOGIN needs an 'upsmon secondary' line)."
        ),
    ),
    "UPS_TEST_STARTED": code(OK, N_("Battery test started; the UPS reports the result itself")),
    "UPS_UNKNOWN_NAME": code(
        UNKNOWN,
        N_("upsd at {where} has no UPS named '{ups}' (it has: {ups_names})"),
        N_("upsd at {where} has no UPS named '{ups}'"),
        N_("upsd does not know this UPS: {detail}"),
        hint=N_(
            "upsd does not know this UPS name: list the names with 'upsc -l HOST' and fix the name in the device URL."
        ),
    ),
}

CODES = {**UPS_CODES, **OWN_CODES}
