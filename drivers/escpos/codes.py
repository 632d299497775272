"""Result codes of the escpos driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, UNKNOWN, WARN, Code, code
from posagent.core.i18n import N_

CODES: dict[str, Code] = {
    "CUTTER_ERROR": code(
        FAIL,
        N_("Autocutter error (paper jam?)"),
        hint=N_("Open the cover, clear the paper jam at the cutter, close the cover."),
    ),
    "PAPER_END": code(FAIL, N_("Paper end"), hint=N_("Load a new paper roll of the right width and close the cover.")),
    "PAPER_LOW_FORECAST": code(
        WARN,
        N_("Paper for about {paper_days_left} days left"),
        N_("The paper roll will run out soon"),
        hint=N_("At the usual use the paper roll runs out within days: have a new roll of the right width ready, or change it at the next quiet moment."),
    ),
    "PAPER_NEAR_END": code(
        WARN,
        N_("Paper near end"),
        hint=N_("The paper roll is nearly used up: have a new roll of the right width ready."),
    ),
    "PRINT_JOB_LOST": code(
        FAIL,
        N_("A receipt from the POS application ({client}) could not be printed: {bytes_lost} bytes lost"),
        N_("A receipt from the POS application could not be printed"),
        hint=N_("The printer did not take a receipt the POS application sent through posagent: check the printer (paper, cover, cable, power) and print the receipt again from the POS application."),
    ),
    "PRINT_PROXY_UNAVAILABLE": code(
        UNKNOWN,
        N_("The print proxy cannot listen on its port or path"),
        hint=N_("Another program uses the proxy's port or path (proxy_listen, proxy_pty): stop it or choose another, then restart posagent."),
    ),
    "PRINTER_COVER_OPEN": code(
        FAIL, N_("Printer cover open"), hint=N_("Close the printer cover firmly until it clicks.")
    ),
    "PRINTER_ID_NOT_READ": code(
        UNKNOWN,
        N_("Identity not read: the printer is offline"),
        hint=N_("Bring the printer back online (see its status check), then test again to read its model."),
    ),
    "PRINTER_ID_NOT_REPORTED": code(OK, N_("The printer does not report its model and firmware")),
    "PRINTER_ID_OK": code(OK, N_("Model {model}, firmware {firmware}")),
    "PRINTER_MECHANICAL_ERROR": code(
        FAIL,
        N_("Printer mechanical error"),
        hint=N_("Open the cover, clear any paper jam and free the print head carriage, then power-cycle the printer."),
    ),
    "PRINTER_NOT_CONNECTED": code(
        UNKNOWN,
        N_("Printer not connected: {where} {reason}"),
        N_("Printer not connected: {reason}"),
        N_("Printer not connected: {detail}"),
        hint=N_(
            "Reseat the printer's data cable and power cable, check that the printer is switched on, and check the port in the config."
        ),
    ),
    "PRINTER_NO_RESPONSE": code(
        UNKNOWN,
        N_("The printer does not answer"),
        hint=N_("Check the data cable and the printer's power; power-cycle the printer."),
    ),
    "PRINTER_OFFLINE": code(
        FAIL,
        N_("Printer offline"),
        hint=N_("Press the printer's online/feed button or power-cycle it; check for a paper jam."),
    ),
    "PRINTER_OK": code(OK, N_("Printer ready: paper ok, cover closed")),
    "PRINTER_OVERHEAT": code(
        WARN,
        N_("Print head too hot (recovers by itself)"),
        hint=N_("The print head is hot: let the printer cool down; it recovers by itself."),
    ),
    "PRINTER_PROTOCOL_ERROR": code(
        UNKNOWN,
        N_("The printer's answer makes no sense (garbled)"),
        hint=N_("The printer answered nonsense: check the baud rate in the config and the cable."),
    ),
    "PRINTER_UNRECOVERABLE_ERROR": code(
        FAIL,
        N_("Unrecoverable printer error"),
        hint=N_("Power-cycle the printer; if the error stays, send it for service."),
    ),
    "RIBBON_WORN": code(
        WARN,
        N_("Ribbon at {ribbon_used_pct} % of its rated life"),
        hint=N_(
            "Check that the ribbon lever is closed and the ribbon advances while printing (print turns faint when it does not); replace the ribbon, then run: posagent printer ribbon-changed NAME"
        ),
    ),
    "SLIP_FAILED": code(
        UNKNOWN,
        N_("The test slip could not be composed: the Python module {package} is missing"),
        N_("The test slip could not be composed: {detail}"),
        hint=N_("The test slip could not be composed: reinstall posagent (python-escpos)."),
    ),
    "SLIP_INTERRUPTED": code(
        FAIL,
        N_("The link to the printer broke during the test slip"),
        hint=N_("The link dropped while printing: reseat the data cable, then print the test again."),
    ),
    "SLIP_NOT_CONFIRMED": code(
        UNKNOWN,
        N_("The printer did not confirm the end of the test slip"),
        hint=N_("The printer did not finish the test slip: check the paper path and the slip."),
    ),
    "SLIP_OK": code(OK, N_("Test slip printed; printer ready")),
}
