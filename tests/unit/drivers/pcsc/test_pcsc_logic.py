"""The pcsc driver's pure logic: reader choice, card states (a mute card cannot be made with
vpcd, which only reports a card once it has an ATR), SELECT grading, attribute decoding,
and the environment check when pyscard is missing. No pcscd needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from posagent.config.errors import ConfigError
from posagent.core.base import Status
from posagent.drivers.pcsc import PcscDriver
from posagent.drivers.pcsc.proto import (
    NOT_INSTALLED,
    attr_text,
    card_state,
    firmware_text,
    grade_select,
    pick_reader,
    sw_answered,
)
from posagent.selftest.devices import Broken, DeviceSet
from tests.conftest import device_entry, device_set

READERS = ["Virtual PCD 00 00", "Virtual PCD 00 01", "ACS ACR39U ICC Reader 00 00"]


def test_pick_reader() -> None:
    assert pick_reader(READERS, "") == "Virtual PCD 00 00"
    assert pick_reader(READERS, "acs") == "ACS ACR39U ICC Reader 00 00"
    assert pick_reader(READERS, "Virtual PCD 00 01") == "Virtual PCD 00 01"
    assert pick_reader(READERS, "Gemalto") is None
    assert pick_reader([], "") is None


@pytest.mark.parametrize(("event", "state"), [
    (0x10022, "present"),  # PRESENT | CHANGED, event counter 1 in the upper 16 bits
    (0x20012, "absent"),   # EMPTY | CHANGED, counter 2
    (0x10, "absent"),
    (0x30232, "mute"),     # PRESENT | MUTE (no ATR)
    (0x0008, "unavailable"),
    (0x0004, "unavailable"),
    (0x0000, "unknown"),
    (0xFFFF0000, "unknown"),  # only counter bits: no state flag at all
])
def test_card_state_masks_the_event_counter(event: int, state: str) -> None:
    assert card_state(event) == state


def test_grade_payment_card() -> None:
    fields: dict = {}
    r = grade_select({"PPSE": 0x6A82, "PSE": 0x9000}, fields)
    assert (r.status, r.code) == (Status.OK, "PCSC_OK")
    assert fields == {"sw_ppse": "6A82", "sw_pse": "9000", "card_answered": True}
    assert grade_select({"PPSE": 0x6116}, {}).code == "PCSC_OK"  # 61xx: data waiting = found


def test_grade_non_payment_card_is_warn() -> None:
    r = grade_select({"PPSE": 0x6A82, "PSE": 0x6D00}, {})
    assert (r.status, r.code) == (Status.WARN, "CARD_SW_ERROR")
    assert "6A82 file or application not found" in r.message and "6D00 instruction not supported" in r.message


def test_grade_no_answer_and_garbage() -> None:
    fields: dict = {}
    r = grade_select({"PPSE": None}, fields)
    assert (r.status, r.code) == (Status.FAIL, "CARD_NO_ANSWER")
    assert fields["card_answered"] is False and fields["sw_ppse"] is None
    r = grade_select({"PPSE": 0x0000, "PSE": 0x6A82}, {})
    assert (r.status, r.code) == (Status.UNKNOWN, "CARD_SW_ERROR")
    assert not sw_answered(0x6000) and not sw_answered(0x1234) and sw_answered(0x6283)


def test_attribute_decoding() -> None:
    assert firmware_text([0, 0, 0x14, 0x02]) == "2.14"  # CCID: bcdDevice 0x0214 << 16, little-endian
    assert firmware_text([5, 0, 0x00, 0x01]) == "1.00.5"
    assert firmware_text([1, 2]) is None
    assert attr_text(list(b"ACS\x00junk")) == "ACS"
    assert attr_text([0, 0]) is None


def make_driver(tmp_path: Path, url: str = "pcsc://?reader=ACS", **options: object) -> tuple[DeviceSet, PcscDriver]:
    """The set, and a PcscDriver made directly (no environment check: that is under test here)."""
    devices = device_set(tmp_path, device_entry("chip", "pcsc", url, options))
    return devices, PcscDriver(devices.config.devices[0], devices.env)


def test_options_and_url(tmp_path: Path) -> None:
    _, drv = make_driver(tmp_path, card_wait="45s")
    assert drv.prefix == "ACS" and drv.options.card_wait == 45.0
    card = next(c for c in drv.checks() if c.name == "card")
    assert card.timeout is not None and card.timeout >= 45.0  # the interactive wait fits in the check
    with pytest.raises(ConfigError, match="card_wait"):
        make_driver(tmp_path, card_wait="0s")
    with pytest.raises(ConfigError, match="unknown pcsc option"):
        make_driver(tmp_path, "pcsc://?slot=1")


def test_without_pyscard_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smartcard", None)  # import smartcard now fails
    monkeypatch.setitem(sys.modules, "smartcard.scard", None)
    devices, drv = make_driver(tmp_path)
    assert drv.check_environment() == NOT_INSTALLED
    assert "pip install 'posagent[pcsc]'" in NOT_INSTALLED and "swig" in NOT_INSTALLED
    entry = devices.get("chip")
    assert isinstance(entry, Broken) and (entry.code, entry.message) == ("DRIVER_UNAVAILABLE", NOT_INSTALLED)
