"""Result codes of the evdev-keypad driver: grades, message templates, hints (msgids; zh-CN in the .po)."""
# ruff: noqa: E501 (each text is one gettext msgid, kept on one line so it can be searched)

from __future__ import annotations

from posagent.core.catalog import FAIL, OK, UNKNOWN, WARN, Code, code
from posagent.core.i18n import N_

CODES: dict[str, Code] = {
    "KEYPAD_BUSY": code(
        UNKNOWN,
        N_("Another program holds the keypad"),
        hint=N_("Another program holds the keypad exclusively: close it, then run the scan again."),
    ),
    "KEYPAD_KEY_BOUNCE": code(
        WARN,
        N_("Key(s) registering twice: {bounce_keys}"),
        hint=N_("The key registers twice: clean the contacts or replace the keypad."),
    ),
    "KEYPAD_KEY_DEAD": code(
        FAIL,
        N_("{keys_pressed} of {keys_expected} keys pressed; dead key(s): {dead_keys}"),
        hint=N_("Press the key firmly again; clean or replace the keypad if it never registers."),
    ),
    "KEYPAD_KEY_HELD": code(
        WARN,
        N_("Key held down right now: {held_keys}"),
        hint=N_(
            "A key is down right now: if nobody is pressing it, free it (debris, spilled drink) and check the status again."
        ),
    ),
    "KEYPAD_KEY_STUCK": code(
        FAIL,
        N_("Key stuck: {stuck_keys}"),
        hint=N_("Free the stuck key (debris, spilled drink); replace the keypad if it stays down."),
    ),
    "KEYPAD_KEY_WRONG_CODE": code(
        WARN,
        N_("Key(s) sending an unexpected code: {wrong_keys}"),
        hint=N_("A key sends an unexpected code: check the keypad's mode switch or the key list."),
    ),
    "KEYPAD_MISSING_KEYS": code(
        FAIL,
        N_("The keypad does not report key(s): {missing_keys}"),
        hint=N_(
            "The device does not report these keys: wrong device in the config, or a different keypad model; fix the key list or the URL."
        ),
    ),
    "KEYPAD_NOT_PRESENT": code(
        UNKNOWN,
        N_("Keypad not found: {where} {reason}"),
        N_("Keypad not found: {detail}"),
        hint=N_("Check the keypad's USB cable and that the URL's path or name matches (ls /dev/input/by-id)."),
    ),
    "KEYPAD_OK": code(
        OK,
        N_("All {keys_pressed} keys pressed once, none stuck or bouncing"),
        N_("All {keys_reported} keys reported, none held"),
        N_("Keypad present"),
    ),
    "KEYPAD_SCAN_ABORTED": code(
        UNKNOWN,
        N_("Key scan aborted after {keys_pressed} of {keys_expected} keys"),
        hint=N_("The scan was aborted: run it again to test the keypad."),
    ),
    "KEYPAD_SCAN_INCOMPLETE": code(
        WARN,
        N_("{keys_pressed} of {keys_expected} keys tested; skipped: {skipped_keys}"),
        hint=N_("Some keys were skipped: run the scan again to test them."),
    ),
    "KEYPAD_SCAN_SKIPPED": code(
        UNKNOWN,
        N_("Key scan skipped by the technician"),
        hint=N_("Run the interactive self-test at the terminal to scan the keys."),
    ),
}
