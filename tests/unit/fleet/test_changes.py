"""Events on device status changes, with a per-device dedupe window (injected time)."""

from __future__ import annotations

from posagent.core.base import Result
from posagent.fleet.changes import ChangeTracker

OK = Result.ok("PRINTER_OK", "ready")
NEAR = Result.warn("PAPER_NEAR_END", "paper near end")
END = Result.fail("PAPER_END", "paper end")


def rounds(*states: Result) -> list[dict[str, tuple[str, Result]]]:
    return [{"receipt": ("escpos", s), "ups": ("megatec", Result.ok("UPS_OK", "on mains"))} for s in states]


def test_first_round_is_a_baseline_then_a_change_is_reported_at_once() -> None:
    t = ChangeTracker(window=300)
    r = rounds(OK, OK, NEAR)
    assert t.observe(r[0], 0.0) == []
    assert t.observe(r[1], 60.0) == []
    (change,) = t.observe(r[2], 120.0)
    assert change.device == "receipt" and change.driver == "escpos"
    assert change.current.code == "PAPER_NEAR_END" and change.previous is not None
    assert change.previous.code == "PRINTER_OK" and change.suppressed == 0


def test_a_flapping_device_sends_one_event_per_window_and_ends_with_the_truth() -> None:
    t = ChangeTracker(window=300)
    t.observe(rounds(OK)[0], 0.0)
    assert len(t.observe(rounds(NEAR)[0], 10.0)) == 1  # reported at once
    for i, s in enumerate([OK, NEAR, OK, END, OK, END]):  # flapping inside the window
        assert t.observe(rounds(s)[0], 20.0 + i * 10) == []
    assert t.next_deadline() == 310.0
    assert t.due(309.0) == []
    (trailing,) = t.due(310.0)
    assert trailing.current.code == "PAPER_END" and trailing.previous is not None
    assert trailing.previous.code == "PAPER_NEAR_END" and trailing.suppressed == 6
    assert t.next_deadline() is None


def test_flapping_back_to_the_reported_state_sends_nothing_more() -> None:
    t = ChangeTracker(window=300)
    t.observe(rounds(OK)[0], 0.0)
    t.observe(rounds(NEAR)[0], 10.0)
    t.observe(rounds(OK)[0], 20.0)
    t.observe(rounds(NEAR)[0], 30.0)  # back to what the last event said
    assert t.due(310.0) == []
    # after the window a new change is reported at once again, with the folded count
    (c,) = t.observe(rounds(END)[0], 400.0)
    assert c.current.code == "PAPER_END" and c.suppressed == 2


def test_same_status_other_code_is_a_change_and_reset_forgets() -> None:
    t = ChangeTracker(window=0)
    t.observe(rounds(END)[0], 0.0)
    cover = Result.fail("COVER_OPEN", "cover open")
    assert [c.current.code for c in t.observe(rounds(cover)[0], 1.0)] == ["COVER_OPEN"]
    t.reset()
    assert t.observe(rounds(OK)[0], 2.0) == []  # a new baseline
    assert t.latest()["receipt"][1] is OK
