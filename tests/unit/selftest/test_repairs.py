"""Self-repair (docs/self-repair.md): the episode bookkeeping (``posagent.core.repair``), and
the runner's status rounds against the real escpos driver and ESC/POS simulator over a
real pty: once per episode, cleared or not, never as a guest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.config.loader import validate
from posagent.core.base import Repair, Result, Status
from posagent.core.repair import Episodes
from posagent.drivers.escpos.sim import EscposSim
from posagent.drivers.simulator import SimHandle
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import device_json, render_table
from posagent.selftest.runner import Runner

ESC_INIT = b"\x1b\x40"
REPAIRABLE = frozenset({"PRINTER_OFFLINE"})
OFFLINE = Result.fail("PRINTER_OFFLINE", "printer offline")
OK = Result.ok("PRINTER_OK", "ready")
BUSY = Result.unknown("DEVICE_BUSY", "held by the POS application")


# -- the bookkeeping alone ----------------------------------------------------------------
def test_a_repair_is_due_only_for_a_repairable_fault() -> None:
    ep = Episodes()
    assert ep.due("p", OFFLINE, REPAIRABLE)
    assert not ep.due("p", OK, REPAIRABLE)
    assert not ep.due("p", Result.warn("PRINTER_OFFLINE", "odd but working"), REPAIRABLE)
    assert not ep.due("p", Result.fail("PAPER_END", "paper end"), REPAIRABLE)  # a person must act
    assert not ep.due("p", BUSY, REPAIRABLE | {"DEVICE_BUSY"})  # no observation at all
    assert not ep.due("p", OFFLINE, frozenset())  # a driver without a repair hook


def test_once_per_episode_and_again_in_the_next() -> None:
    ep = Episodes()
    tried = Repair(("init",), False, "2026-01-01T00:00:00+00:00")
    assert ep.due("p", OFFLINE, REPAIRABLE)
    ep.attempted("p", tried, now=0.0)
    for t in (1.0, 2.0, 3.0):  # the fault lasts: never again, and every round shows the attempt
        assert not ep.due("p", OFFLINE, REPAIRABLE)
        assert ep.settle("p", OFFLINE, t).repair == tried
    assert ep.settle("p", BUSY, 4.0).repair is None  # busy: neither ends the episode nor shows it
    assert not ep.due("p", OFFLINE, REPAIRABLE)
    assert ep.settle("p", OK, 5.0).repair is None  # the episode ends; an uncleared repair is not shown
    assert not ep.in_episode("p")
    assert ep.due("p", OFFLINE, REPAIRABLE)  # a new episode may try again


def test_nothing_safe_to_try_still_counts_as_the_attempt() -> None:
    ep = Episodes()
    ep.attempted("p", None, now=0.0)
    assert not ep.due("p", OFFLINE, REPAIRABLE)
    assert ep.settle("p", OFFLINE, 1.0).repair is None


def test_a_cleared_repair_is_shown_for_one_linger_then_dropped() -> None:
    ep = Episodes(linger=10.0)
    cleared = Repair(("init",), True, "2026-01-01T00:00:00+00:00")
    ep.attempted("p", cleared, now=100.0)
    assert ep.settle("p", OK.with_repair(cleared), 100.0).repair == cleared
    assert ep.settle("p", OK, 105.0).repair == cleared  # the next heartbeat carries it
    assert ep.settle("p", OK, 110.0).repair is None
    assert ep.settle("p", OK, 111.0).repair is None


def test_a_new_fault_hides_the_last_cleared_repair() -> None:
    ep = Episodes(linger=10.0)
    ep.attempted("p", Repair(("init",), True, "t0"), now=0.0)
    ep.settle("p", OK, 0.0)
    assert ep.settle("p", OFFLINE, 1.0).repair is None  # a new episode, not yet repaired
    assert ep.settle("p", OK, 2.0).repair is None
    assert ep.settle("q", OK, 2.0).repair is None  # devices are apart


# -- status rounds: the runner, the real driver, the simulator over a pty ------------------
@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., tuple[EscposSim, Runner]]]:
    made: list[tuple[SimHandle, DeviceSet]] = []

    def start(share: str = "owner", timeout: str = "3s", **knobs: Any) -> tuple[EscposSim, Runner]:
        handle = EscposSim(**knobs).start()
        raw = {"agent": {"terminal_id": "T-1", "state_dir": str(tmp_path), "check_timeout": timeout,
                         "heartbeat_interval": "60s"},
               "device": [{"name": "receipt", "driver": "escpos", "url": handle.url, "share": share,
                           "options": {"reply_timeout": "300ms", "identity_timeout": "100ms"}}]}
        devices = DeviceSet(validate(raw, str(tmp_path / "posagent.toml")))
        made.append((handle, devices))
        assert isinstance(handle.sim, EscposSim)
        return handle.sim, Runner(devices)

    yield start
    for handle, devices in made:
        devices.close()
        handle.stop()


def receipt(runner: Runner) -> Result:
    return runner.status()["receipt"][1]


def inits(sim: EscposSim) -> int:
    with sim.lock:
        return bytes(sim.received).count(ESC_INIT)


def test_offline_until_init_is_cleared_and_reported_ok(terminal: Callable[..., tuple[EscposSim, Runner]]) -> None:
    sim, runner = terminal(offline_until_init="1")
    r = receipt(runner)
    assert (r.status, r.code) == (Status.OK, "PRINTER_OK"), r.message
    assert r.repair is not None and r.repair.tried == ("init",) and r.repair.cleared
    assert 0 < r.repair.duration_ms < 3000
    assert sim.resets == 1 and inits(sim) == 1
    obj = device_json("escpos", r)
    assert obj["repair"]["tried"] == ["init"] and obj["repair"]["cleared"] is True
    again = receipt(runner)  # within one heartbeat interval the next round still shows it
    assert again.status == Status.OK and again.repair == r.repair
    assert inits(sim) == 1
    print(f"\nrepair cleared the fault in {r.repair.duration_ms:.1f} ms")


def test_stuck_offline_is_reported_and_repaired_once_per_episode(
        terminal: Callable[..., tuple[EscposSim, Runner]]) -> None:
    sim, runner = terminal(offline="1")
    rounds = [receipt(runner) for _ in range(4)]
    assert all((r.status, r.code) == (Status.FAIL, "PRINTER_OFFLINE") for r in rounds)
    assert all(r.repair is not None and r.repair.tried == ("init",) and not r.repair.cleared for r in rounds)
    assert len({r.repair.at for r in rounds if r.repair}) == 1  # one attempt, shown every round
    assert inits(sim) == 1
    sim.k["offline"] = False  # a person puts it right: the episode ends (and the queued ESC @ runs)
    ok = receipt(runner)
    assert ok.status == Status.OK and ok.repair is None
    sim.k["offline"] = True  # a new episode: one more attempt
    assert receipt(runner).repair is not None and receipt(runner).code == "PRINTER_OFFLINE"
    assert inits(sim) == 2


def test_a_guest_never_sends_esc_at(terminal: Callable[..., tuple[EscposSim, Runner]]) -> None:
    sim, runner = terminal(share="guest", offline_until_init="1")
    rounds = [receipt(runner) for _ in range(3)]
    assert all((r.status, r.code) == (Status.FAIL, "PRINTER_OFFLINE") and r.repair is None for r in rounds)
    assert inits(sim) == 0 and sim.resets == 0
    assert sim.realtime_queries > 0  # it was asked: only nothing but DLE EOT was sent


def test_a_silent_printer_gets_the_link_reopened_then_init(
        terminal: Callable[..., tuple[EscposSim, Runner]]) -> None:
    sim, runner = terminal(no_answer="1")
    r = receipt(runner)
    assert (r.status, r.code) == (Status.UNKNOWN, "PRINTER_NO_RESPONSE")
    assert r.repair is not None and r.repair.tried == ("reopen", "init") and not r.repair.cleared
    assert inits(sim) == 1
    receipt(runner)
    assert inits(sim) == 1


def test_paper_end_is_left_to_a_person(terminal: Callable[..., tuple[EscposSim, Runner]]) -> None:
    sim, runner = terminal(paper="end")
    r = receipt(runner)
    assert r.code == "PAPER_END" and r.repair is None and inits(sim) == 0


def test_the_self_test_status_check_repairs_too(terminal: Callable[..., tuple[EscposSim, Runner]]) -> None:
    from posagent.core.status import Level

    sim, runner = terminal(offline_until_init="1")
    report = runner.selftest(Level.INTERNAL)
    status = next(c.result for c in report.checks if c.name == "status")
    assert status.status == Status.OK and status.repair is not None and status.repair.cleared
    assert inits(sim) == 1


def test_the_table_says_what_the_repair_did(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setenv("COLUMNS", "400")  # one line per row
    out = io.StringIO()
    render_table([("receipt", "status", OK.with_repair(Repair(("reopen", "init"), True, "t")), "escpos"),
                  ("spare", "status", OFFLINE.with_repair(Repair(("init",), False, "t")), "escpos")], out, "t")
    text = out.getvalue()
    assert "self-repair cleared the fault: reopened the link, initialised the printer (ESC @)" in text
    assert "self-repair did not clear the fault: initialised the printer (ESC @)" in text


def test_a_failing_repair_hook_costs_the_repair_not_the_fault(
        terminal: Callable[..., tuple[EscposSim, Runner]], monkeypatch: pytest.MonkeyPatch) -> None:
    from posagent.drivers.escpos import EscposDriver

    def broken(self: EscposDriver, result: Result, deadline: float) -> list[str]:
        raise RuntimeError("bug in a repair hook")

    monkeypatch.setattr(EscposDriver, "repair", broken)
    sim, runner = terminal(offline="1")
    r = receipt(runner)
    assert (r.status, r.code, r.repair) == (Status.FAIL, "PRINTER_OFFLINE", None)
    assert receipt(runner).code == "PRINTER_OFFLINE" and inits(sim) == 0


def test_a_hung_repair_is_cut_at_the_device_timeout(
        terminal: Callable[..., tuple[EscposSim, Runner]], monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from posagent.drivers.escpos import EscposDriver

    release = threading.Event()

    def hangs(self: EscposDriver, result: Result, deadline: float) -> list[str]:
        release.wait(30)  # a hook that ignores its deadline
        return ["init"]

    monkeypatch.setattr(EscposDriver, "repair", hangs)
    _sim, runner = terminal(timeout="1s", offline="1")
    try:
        t0 = time.monotonic()
        r = receipt(runner)
        took = time.monotonic() - t0
    finally:
        release.set()
    assert (r.status, r.code) == (Status.FAIL, "PRINTER_OFFLINE")
    assert r.repair is not None and r.repair.timed_out and not r.repair.cleared and r.repair.tried == ()
    assert took < 2.5  # the status read (< 1 s) plus the attempt cut at 1 s
    assert device_json("escpos", r)["repair"]["timed_out"] is True
