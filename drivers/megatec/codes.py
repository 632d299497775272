"""Result codes of the megatec driver: grades, message templates, hints (msgids; zh-CN in the .po)."""


from __future__ import annotations

from posagent.core.catalog import FAIL, OK, UNKNOWN, Code, code
from posagent.core.i18n import N_
from posagent.drivers.ups_codes import UPS_CODES

OWN_CODES: dict[str, Code] = {
    "UPS_TEST_FAILED": code(
        FAIL,
        N_("Battery test failed: the battery went low"),
        hint=N_("The battery could not carry the load through a short test: replace the battery."),
    ),
    "UPS_TEST_NOT_CONFIRMED": code(
        UNKNOWN,
        N_("The UPS did not confirm the battery test"),
        hint=N_(
            "The UPS did not show a running battery test: run the test again; if it repeats, test the battery by hand."
        ),
    ),
    "UPS_TEST_PASSED": code(OK, N_("Battery test passed")),
}

CODES = {**UPS_CODES, **OWN_CODES}
