"""Result codes of the battery driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import UNKNOWN, Code, code
from posagent.core.i18n import N_
from posagent.drivers.ups_codes import UPS_CODES

OWN_CODES: dict[str, Code] = {
    "BATTERY_NOT_PRESENT": code(
        UNKNOWN,
        N_("No internal battery found"),
        hint=N_(
            "No internal battery found: reseat or replace it if the box should have one, otherwise remove this device from the config."
        ),
    ),
}

CODES = {**UPS_CODES, **OWN_CODES}
