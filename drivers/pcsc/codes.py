"""Result codes of the pcsc driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, UNKNOWN, WARN, Code, code
from posagent.core.i18n import N_

CODES: dict[str, Code] = {
    "CARD_ABSENT": code(
        UNKNOWN,
        N_("No test card in the reader"),
        hint=N_(
            "Insert a test card chip-first, face up, and run the test again (at --level interactive the test asks for one and waits)."
        ),
    ),
    "CARD_MUTE": code(
        {WARN, FAIL},
        N_("The card gives no answer to reset (no ATR)"),
        hint=N_(
            "The card does not answer reset: reinsert it the right way round; if every card is mute, clean the reader's contacts or replace the reader."
        ),
    ),
    "CARD_NO_ANSWER": code(
        FAIL,
        N_("The card stopped answering"),
        hint=N_("The card stopped answering: try another test card; if all fail, replace the reader."),
    ),
    "CARD_SW_ERROR": code(
        {WARN, UNKNOWN},
        N_("The card answered but is not a payment card"),
        hint=N_(
            "The card answered with an error status, so the reader works; to test payment selection use an EMV test card."
        ),
    ),
    "PCSC_ERROR": code(
        UNKNOWN,
        N_("PC/SC error {pcsc_code} (reader {reader})"),
        N_("PC/SC error {pcsc_code}"),
        N_("The PC/SC call {pcsc_call} failed ({exception})"),
        N_("PC/SC error: reader {reader} {reason}"),
        N_("PC/SC error: {detail}"),
        hint=N_("PC/SC error: restart pcscd, replug the reader, and send the agent log to support if it persists."),
    ),
    "PCSC_NO_SERVICE": code(
        UNKNOWN,
        N_("The smart-card service (pcscd) is not running"),
        hint=N_("Start the smart-card service: systemctl start pcscd.socket (install pcscd and libccid)."),
    ),
    "PCSC_OK": code(OK, N_("Chip reader {reader} ready"), N_("Chip reader ready")),
    "READER_BUSY": code(
        UNKNOWN,
        N_("The reader is in use by another program"),
        hint=N_("Another program holds the reader exclusively: close the POS application and test again."),
    ),
    "READER_NOT_PRESENT": code(
        UNKNOWN,
        N_("Reader not found: {where} {reason} (pcscd lists: {readers})"),
        N_("Reader not found: {where} {reason}"),
        N_("Reader not found: {reason}"),
        N_("Reader not found: {detail}"),
        hint=N_(
            "Plug the chip reader in (try another USB port); check the reader name in the config against 'pcsc_scan -n'."
        ),
    ),
}
