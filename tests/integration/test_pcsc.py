"""The pcsc driver against a real pcscd with the vsmartcard virtual reader and virtual cards:
no pcscd, no matching reader, reader without card, card with ATR, a card that answers
SELECT with 6A82 (not a payment card), a payment card, cards that drop or never answer
the SELECT, the interactive prompt, and the bar through the real CLI."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from posagent.core.base import CheckContext, Level, Result, Status
from posagent.drivers.pcsc import PcscDriver
from posagent.selftest.runner import call_with_timeout
from tests.conftest import DriverBuilder, run_cli
from tests.integration.pcsc_fixture import READER, SCRIPTED_ATR, VICC_ATR, PcscLab, pcsc_lab

__all__ = ["pcsc_lab"]  # the fixture, imported so pytest finds it

SELECTS = [bytes.fromhex("00A404000E") + aid + b"\x00" for aid in (b"2PAY.SYS.DDF01", b"1PAY.SYS.DDF01")]


@pytest.fixture
def make_driver(build_driver: DriverBuilder) -> Callable[..., PcscDriver]:
    """make_driver(url="pcsc://?reader=Virtual", **options) -> a PcscDriver, closed at the end."""
    return build_driver.maker(PcscDriver, "chip", "pcsc", default_url="pcsc://?reader=Virtual")


def status(drv: PcscDriver) -> Result:
    """status() through the runner's wrapper, which turns the driver's exceptions into results."""
    return call_with_timeout(drv.status, 20.0, "chip.status")


def card_check(drv: PcscDriver, level: Level = Level.EXTERNAL, say=None, timeout: float = 20.0) -> Result:
    check = next(c for c in drv.checks() if c.name == "card")
    assert check.level == Level.EXTERNAL
    ctx = CheckContext(deadline=time.monotonic() + timeout, level=level, say=say)
    return call_with_timeout(lambda: check.run(ctx), timeout, "chip.card")


def test_no_pcscd(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    pcsc_lab.stop_pcscd()
    drv = make_driver()
    assert drv.check_environment() is None  # pcscd absent is a result, not a missing environment
    r = status(drv)
    assert (r.status, r.code) == (Status.UNKNOWN, "PCSC_NO_SERVICE")
    assert "pcscd is not running" in r.message and "0x8010001D" in r.message
    r = card_check(drv)
    assert r.code == "PCSC_NO_SERVICE"


def test_no_reader_matching_the_prefix(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    r = status(make_driver("pcsc://?reader=ACS"))
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_NOT_PRESENT")
    assert r.fields == {"reader_present": False}
    assert "'ACS...'" in r.message and READER in r.message  # says what pcscd does list


def test_reader_without_card_is_ok(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    drv = make_driver("pcsc://")  # no name: the first reader
    r = status(drv)
    assert (r.status, r.code) == (Status.OK, "PCSC_OK"), r.message
    assert r.fields["reader"] == READER and r.fields["reader_present"] is True
    assert r.fields["card_present"] is False and "atr" not in r.fields
    assert "firmware" not in r.fields  # vpcd reports no vendor attributes: left out, not invented
    # The card check cannot run without a card: it says a test card is needed.
    r = card_check(drv)
    assert (r.status, r.code) == (Status.UNKNOWN, "CARD_ABSENT")
    assert "test card is needed" in r.message


def test_card_present_with_atr(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    pcsc_lab.insert_vicc()
    r = status(make_driver("pcsc://?reader=virtual pcd 00 00"))  # prefix match ignores case
    assert (r.status, r.code) == (Status.OK, "PCSC_OK"), r.message
    assert r.fields["card_present"] is True and r.fields["atr"] == VICC_ATR
    assert VICC_ATR in r.message


def test_non_payment_card_answers_6a82(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    """vicc's ISO 7816 card answers both SELECTs with 6A82: the card answered (the reader
    works) but it is no payment card, graded warn CARD_SW_ERROR."""
    pcsc_lab.insert_vicc()
    r = card_check(make_driver())
    assert (r.status, r.code) == (Status.WARN, "CARD_SW_ERROR"), r.message
    assert r.fields["atr"] == VICC_ATR and r.fields["protocol"] == "T=1"
    assert r.fields["sw_ppse"] == "6A82" and r.fields["sw_pse"] == "6A82"
    assert r.fields["card_answered"] is True
    assert "file or application not found" in r.message
    assert r.measurements["connect_ms"] >= 0 and r.measurements["select_ms"] >= 0


def test_payment_card_answers_9000(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    card = pcsc_lab.insert_scripted("payment")
    r = card_check(make_driver())
    assert (r.status, r.code) == (Status.OK, "PCSC_OK"), r.message
    assert r.fields["atr"] == SCRIPTED_ATR and r.fields["protocol"] == "T=0"
    assert r.fields["sw_ppse"] == "9000" and r.fields["sw_pse"] == "9000"
    assert card.apdus == SELECTS  # exactly the two SELECTs, nothing else reached the card


def test_card_that_drops_the_select_is_no_answer(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    card = pcsc_lab.insert_scripted("drop")
    r = card_check(make_driver())
    assert (r.status, r.code) == (Status.FAIL, "CARD_NO_ANSWER"), r.message
    assert r.fields["atr"] == SCRIPTED_ATR and r.fields["card_answered"] is False
    assert "sw_pse" not in r.fields  # after one dropped SELECT nothing more is sent
    assert card.apdus == SELECTS[:1]


def test_card_that_never_answers_is_cut_unknown(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    """vpcd waits forever for this card: the check is cut by its timeout, unknown, never ok."""
    card = pcsc_lab.insert_scripted("hang")
    r = card_check(make_driver(), timeout=3.0)
    assert (r.status, r.code) == (Status.UNKNOWN, "CHECK_TIMEOUT")
    assert card.apdus == SELECTS[:1]


def test_interactive_prompts_and_waits_for_a_card(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    said: list[str] = []

    def say(text: str) -> None:  # the technician reads the prompt and inserts a card
        said.append(text)
        threading.Thread(target=pcsc_lab.insert_scripted, args=("payment", False), daemon=True).start()

    r = card_check(make_driver(card_wait="20s"), Level.INTERACTIVE, say, timeout=40.0)
    assert len(said) == 1 and "Insert a test card" in said[0] and READER in said[0]
    assert (r.status, r.code) == (Status.OK, "PCSC_OK"), r.message


def test_interactive_without_card_times_out(pcsc_lab: PcscLab, make_driver: Callable[..., PcscDriver]) -> None:
    t0 = time.monotonic()
    r = card_check(make_driver(card_wait="1s"), Level.INTERACTIVE, lambda text: None)
    assert (r.status, r.code) == (Status.UNKNOWN, "CARD_ABSENT")
    assert time.monotonic() - t0 < 10.0


def status_json(config: Path) -> tuple[int, dict, str]:
    p = run_cli("status", "--json", "--config", str(config))
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    return p.returncode, json.loads(p.stdout)["devices"]["chip"], p.stderr


def test_bar_status_json_through_the_cli(pcsc_lab: PcscLab, write_config) -> None:
    config = write_config('[[device]]\nname = "chip"\ndriver = "pcsc"\nurl = "pcsc://?reader=Virtual"\n')
    pcsc_lab.insert_vicc()
    rc, dev, _err = status_json(config)
    assert rc == 0 and dev["status"] == "ok" and dev["code"] == "PCSC_OK"
    assert dev["reader"] == READER and dev["reader_present"] is True
    assert dev["card_present"] is True and dev["atr"] == VICC_ATR
    # The card removed (vicc killed): card absent, still ok.
    pcsc_lab.remove_card()
    rc, dev, _err = status_json(config)
    assert rc == 0 and dev["card_present"] is False and "atr" not in dev
    # pcscd stopped: PCSC_NO_SERVICE, unknown (exit 3), no traceback.
    pcsc_lab.stop_pcscd()
    rc, dev, _err = status_json(config)
    assert rc == 3 and (dev["status"], dev["code"]) == ("unknown", "PCSC_NO_SERVICE")


def test_selftest_external_through_the_cli(pcsc_lab: PcscLab, write_config) -> None:
    config = write_config('[[device]]\nname = "chip"\ndriver = "pcsc"\nurl = "pcsc://?reader=Virtual"\n')
    pcsc_lab.insert_vicc()
    p = run_cli("selftest", "--json", "--level", "external", "--config", str(config))
    assert "Traceback" not in p.stderr
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert checks["status"]["code"] == "PCSC_OK"
    assert (checks["card"]["status"], checks["card"]["code"]) == ("warn", "CARD_SW_ERROR")
    assert checks["card"]["hint"] and p.returncode == 1
