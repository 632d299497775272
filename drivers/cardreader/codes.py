"""Result codes of the card-reader driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, UNKNOWN, WARN, Code, code
from posagent.core.i18n import N_

CODES: dict[str, Code] = {
    "READER_BAD_CHECKSUM": code(
        UNKNOWN,
        N_("Corrupted frames from the reader (checksum wrong)"),
        hint=N_(
            "Frames arrive corrupted: check the baud rate and parity, reseat or replace the cable, keep it away from power lines."
        ),
    ),
    "READER_BAD_FRAME": code(
        UNKNOWN,
        N_("The reader's frames are malformed"),
        hint=N_("The reader answers in an unknown way: check the profile option and the baud rate."),
    ),
    "READER_BAD_LENGTH": code(
        UNKNOWN,
        N_("The reader's frames have the wrong length"),
        hint=N_("The reader answers in an unknown way: check the profile option and the baud rate."),
    ),
    "READER_BUSY": code(UNKNOWN, N_("The reader is in use by another program")),
    "READER_ECHO_MISMATCH": code(
        FAIL,
        N_("The reader returned different bytes than were sent"),
        hint=N_("The reader returns different bytes than sent: replace the cable or the reader."),
    ),
    "READER_LOOPBACK_ERRORS": code(
        FAIL,
        N_("Loopback test failed: bytes came back wrong"),
        hint=N_("Bytes came back wrong through the loopback plug: the port or cable is faulty."),
    ),
    "READER_LOOPBACK_OK": code(OK, N_("Loopback test passed: the bytes came back intact")),
    "READER_NAK": code(
        UNKNOWN,
        N_("The reader rejects every command (NAK)"),
        hint=N_(
            "The reader rejects every command: set the profile option to the reader's make (idtech, star, generic-len)."
        ),
    ),
    "READER_NOT_PRESENT": code(
        UNKNOWN,
        N_("Reader not found: {where} {reason} (pcscd lists: {readers})"),
        N_("Reader not found: {where} {reason}"),
        N_("Reader not found: {reason}"),
        N_("Reader not found: {detail}"),
        hint=N_("Plug the reader in (USB or serial adapter) and check the URL in the config."),
    ),
    "READER_NO_KERNEL_DRIVER": code(
        WARN,
        N_("Reader present, but no kernel driver is bound to it"),
        hint=N_("No kernel driver is bound: replug the reader; check that usbhid is loaded."),
    ),
    "READER_NO_RESPONSE": code(
        UNKNOWN,
        N_("The reader does not answer"),
        hint=N_(
            "Check the reader's cable and power, then power-cycle the reader (unplug it and plug it in again); check the baud rate in the config."
        ),
    ),
    "READER_NO_SWIPE": code(
        UNKNOWN,
        N_("No swipe arrived in time"),
        hint=N_(
            "No swipe arrived: swipe within the time limit, stripe towards the read head; if you did, clean the head and check the reader's cable."
        ),
    ),
    "READER_OK": code(
        OK, N_("The reader answered in {reply_ms} ms"), N_("Reader {model} present"), N_("Reader present")
    ),
    "READER_PROTOCOL_ERROR": code(
        UNKNOWN,
        N_("The reader answers in an unknown way"),
        hint=N_("The reader answers in an unknown way: check the profile option and the baud rate."),
    ),
    "READER_SWIPE_LUHN": code(
        WARN,
        N_("Swipe read, but the card number fails its check digit"),
        hint=N_(
            "The card's number fails its check digit: use a known good test card; if every card fails, check the card's stripe and clean the read head."
        ),
    ),
    "READER_SWIPE_OK": code(OK, N_("Swipe read: the tracks are well formed")),
    "READER_SWIPE_SKIPPED": code(
        UNKNOWN,
        N_("Swipe test skipped by the technician"),
        hint=N_("Run the interactive self-test at the terminal with a test card."),
    ),
    "READER_SWIPE_UNSUPPORTED": code(
        UNKNOWN,
        N_("This reader's swipe test needs the wedge option"),
        hint=N_("Set the wedge option to the reader's keyboard device (evdev URL)."),
    ),
    "READER_TRACK_ERROR": code(
        FAIL,
        N_("The swipe could not be read cleanly"),
        hint=N_(
            "Check the card's stripe (scratched, dirty, demagnetised?) and swipe again steadily; clean the read head with a cleaning card; try another card; replace the reader if it persists."
        ),
    ),
}
