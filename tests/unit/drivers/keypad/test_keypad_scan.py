"""The key scan over the raw ``struct input_event`` seam: scripted sequences through a real
pipe, SYN_DROPPED, partial records, skip/abort, and the driver on ``sim://keypad``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posagent.core.base import CheckContext, Level, Result, Status
from posagent.drivers.keypad import KeypadDriver
from posagent.drivers.keypad.keyscan import DEFAULT_KEYS, ScanOutcome, ScanState, parse_key, parse_keys, run_scan
from posagent.drivers.keypad.sim import KeypadSim, SimKeyDevice
from posagent.drivers.transport.evdev import (
    EV_KEY,
    EV_SYN,
    EVENT_SIZE,
    KEYS,
    SYN_DROPPED,
    SYN_REPORT,
    EventReader,
    InputEvent,
    pack_event,
)
from posagent.selftest.devices import DeviceSet
from posagent.selftest.runner import Runner
from tests.conftest import DriverBuilder, device_entry, driver_of, run_cli

KP = {d: KEYS[f"KEY_KP{d}"] for d in "0123456789"}


def scan_sim(keys: list[str] | None = None, **knobs: Any) -> tuple[ScanOutcome, ScanState]:
    sim = KeypadSim(**knobs)
    dev = SimKeyDevice(sim)
    try:
        dev.grab()
        state = ScanState(parse_keys(keys or list(DEFAULT_KEYS)))
        outcome = run_scan(EventReader(dev.fileno()), state, deadline=time.monotonic() + 10, key_timeout=5,
                           active=dev.active_keys)
    finally:
        dev.close()
    return outcome, state


def kinds(outcome: ScanOutcome) -> set[tuple[str, str]]:
    return {(f.kind, f.key) for f in outcome.findings}


def test_missing_stuck_and_bouncing_keys_are_exactly_the_three_findings() -> None:
    outcome, _ = scan_sim(dead="5", stuck="7", bounce="9")
    assert kinds(outcome) == {("dead", "5"), ("stuck", "7"), ("bounce", "9")}
    details = {f.kind: f.detail for f in outcome.findings}
    assert details["bounce"] == "2 presses, 12 ms apart"
    assert details["stuck"] == "still down, never released"
    assert outcome.ended == "input_closed" and outcome.tested == len(DEFAULT_KEYS) - 1


def test_a_clean_keypad_has_no_findings_in_either_layout() -> None:
    for layout in ("kp", "main"):
        outcome, _ = scan_sim(layout=layout)
        assert outcome.findings == [] and outcome.tested == len(DEFAULT_KEYS), layout


def test_wrong_code_is_named_with_the_key_asked_for() -> None:
    outcome, _ = scan_sim(wrong="3")
    assert kinds(outcome) == {("dead", "3"), ("wrong", "KEY_F24")}


def write_records(records: list[bytes], chunk: int | None = None) -> int:
    """A pipe holding ``records`` (written in ``chunk``-byte pieces), closed for writing."""
    r, w = os.pipe()
    data = b"".join(records)
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        os.write(w, data[i:i + step])
    os.close(w)
    return r


def read_all(reader: EventReader) -> list[InputEvent]:
    out: list[InputEvent] = []
    for _ in range(10_000):
        try:
            out += reader.read(1.0)
        except EOFError:
            return out
    raise AssertionError("no EOF")


def press(t: float, code: int) -> list[bytes]:
    return [pack_event(t, EV_KEY, code, 1), pack_event(t, EV_SYN, SYN_REPORT, 0)]


def release(t: float, code: int) -> list[bytes]:
    return [pack_event(t, EV_KEY, code, 0), pack_event(t, EV_SYN, SYN_REPORT, 0)]


def test_partial_records_are_reassembled() -> None:
    records = [pack_event(1000.0 + i * 0.25, EV_KEY, KP["1"], i % 2) for i in range(40)]
    assert EVENT_SIZE == 24 and len(records[0]) == 24
    fd = write_records(records, chunk=7)  # every read(2) returns a piece of a record
    try:
        reader = EventReader(fd)
        events = []
        for _ in range(1000):
            try:
                events += reader.read(1.0)
            except EOFError:
                break
    finally:
        os.close(fd)
    assert [(e.time, e.code, e.value) for e in events] == [(1000.0 + i * 0.25, KP["1"], i % 2) for i in range(40)]


def test_syn_dropped_drops_until_report_and_resyncs_from_the_device() -> None:
    records = [*press(10.0, KP["1"]), *release(10.1, KP["1"]),
               pack_event(10.2, EV_SYN, SYN_DROPPED, 0),
               pack_event(10.2, EV_KEY, KP["2"], 1),  # lost in the overflow
               pack_event(10.3, EV_SYN, SYN_REPORT, 0),
               *release(10.4, KP["2"]), *release(10.5, KP["3"])]
    fd = write_records(records)
    try:
        reader = EventReader(fd)
        events = read_all(reader)
    finally:
        os.close(fd)
    assert (EV_KEY, KP["2"], 1) not in [(e.type, e.code, e.value) for e in events]
    assert [e for e in events if e.code == SYN_DROPPED] == [InputEvent(10.3, EV_SYN, SYN_DROPPED, 0)]
    assert reader.dropped_reports == 1
    state = ScanState(parse_keys(["1", "2", "3"]))
    for ev in events:
        state.feed(ev, active=lambda: {KP["3"]})  # EVIOCGKEY after the overflow: 3 is down
    assert state.resyncs == 1
    assert {(f.kind, f.key) for f in state.findings()} == {("dead", "2")}


def test_sim_overflow_mid_scan_loses_nothing_that_matters() -> None:
    outcome, state = scan_sim(syn_dropped=True)
    assert outcome.findings == [] and state.resyncs == 1


def test_hold_past_threshold_with_release_is_stuck_and_debounce_window_is_respected() -> None:
    state = ScanState(parse_keys(["1", "2"]), stuck_after=2.0, debounce=0.08)
    for ev in [(0.0, KP["1"], 1), (0.5, KP["1"], 2), (3.1, KP["1"], 0),
               (4.0, KP["2"], 1), (4.05, KP["2"], 0), (4.1, KP["2"], 1), (4.15, KP["2"], 0)]:
        state.feed(InputEvent(100 + ev[0], EV_KEY, ev[1], ev[2]))
    assert [(f.kind, f.key, f.detail) for f in state.findings()] == [("stuck", "1", "held 3.1 s")]


def test_skip_and_abort_from_the_technician() -> None:
    events_r, events_w = os.pipe()  # a keypad nobody touches
    ctl_r, ctl_w = os.pipe()
    try:
        os.write(ctl_w, b"\n")
        state = ScanState(parse_keys(["1", "2"]))
        said: list[str] = []
        os.write(events_w, b"".join(press(5.0, KP["2"]) + release(5.1, KP["2"])))
        out = run_scan(EventReader(events_r), state, deadline=time.monotonic() + 10, key_timeout=10,
                       say=said.append, control_fd=ctl_r)
        assert out.ended == "complete" and kinds(out) == {("skipped", "1")}
        assert said[0].startswith("Keypad: press [1]  (0 of 2 done: -;")
        assert "Keypad: skipped [1]" in said
        os.write(ctl_w, b"q\n")
        out = run_scan(EventReader(events_r), ScanState(parse_keys(["3"])), deadline=time.monotonic() + 10,
                       key_timeout=10, control_fd=ctl_r)
        assert out.aborted and out.ended == "aborted"
    finally:
        for fd in (events_r, events_w, ctl_r, ctl_w):
            os.close(fd)


def test_time_runs_out_key_by_key() -> None:
    r, w = os.pipe()
    try:
        t0 = time.monotonic()
        said: list[str] = []
        out = run_scan(EventReader(r), ScanState(parse_keys(["1", "2"])), deadline=t0 + 10, key_timeout=0.05,
                       say=said.append)
        assert out.ended == "timeout" and kinds(out) == {("dead", "1"), ("dead", "2")}
        assert [s.split("]")[0] for s in said] == ["Keypad: press [1", "Keypad: press [2"]
    finally:
        os.close(r)
        os.close(w)


def test_key_specs() -> None:
    assert parse_key("7").codes == (KP["7"], KEYS["KEY_7"])
    assert parse_key("00=KEY_F13|KEY_KPCOMMA").codes == (KEYS["KEY_F13"], KEYS["KEY_KPCOMMA"])
    assert parse_key("KEY_F2").label == "KEY_F2"
    for bad, match in (("00", "no standard code"), ("frobnicate", "unknown key"), ("x=KEY_NOPE", "unknown key")):
        with pytest.raises(ValueError, match=match):
            parse_key(bad)
    with pytest.raises(ValueError, match="twice"):
        parse_keys(["1", "1"])


# -- the driver on sim://keypad -------------------------------------------------------------
@pytest.fixture
def make(build_driver: DriverBuilder) -> Callable[..., tuple[DeviceSet, KeypadDriver]]:
    """make(url, **options) -> (its DeviceSet, the KeypadDriver), built through the config loader."""

    def build(url: str, **options: Any) -> tuple[DeviceSet, KeypadDriver]:
        ds = build_driver.devices(device_entry("keypad", "evdev-keypad", url, options))
        return ds, driver_of(ds, "keypad", KeypadDriver)

    return build


def results(ds: DeviceSet) -> dict[str, Result]:
    said: list[str] = []
    report = Runner(ds, prompt=lambda text: "", say=said.append).selftest(Level.INTERACTIVE)
    return {c.name: c.result for c in report.checks}


def test_driver_scan_reports_the_three_findings(make: Any) -> None:
    ds, _ = make("sim://keypad?dead=5&stuck=7&bounce=9", stuck_after="300ms")
    r = results(ds)
    assert (r["keys"].status, r["keys"].code) == (Status.FAIL, "KEYPAD_KEY_STUCK")  # 7 is down right now
    scan = r["scan"]
    assert (scan.status, scan.code) == (Status.FAIL, "KEYPAD_KEY_STUCK")
    m = scan.facts
    assert (m["dead_keys"], m["stuck_keys"], m["bounce_keys"]) == ("5", "7", "9")
    assert "dead: 5 (never pressed)" in scan.message and "bouncing: 9" in scan.message


def test_driver_internal_check_names_missing_keys(make: Any) -> None:
    ds, driver = make("sim://keypad?missing=clear,backspace")
    r = results(ds)
    assert (r["keys"].status, r["keys"].code) == (Status.FAIL, "KEYPAD_MISSING_KEYS")
    assert r["keys"].facts["missing_keys"] == "clear backspace"
    assert (r["scan"].status, r["scan"].code) == (Status.OK, "KEYPAD_OK")  # the sim's keys still type
    _, driver = make("sim://keypad?keys=1,2,3", keys=["1", "2", "3"])
    assert driver.status().code == "KEYPAD_OK"


def test_one_shot_status_reports_a_key_held_now(make: Any, write_config: Callable[..., Path]) -> None:
    """One status call cannot wait stuck_after: a key down right now is reported at once."""
    _, driver = make("sim://keypad?stuck=enter")
    r = driver.status()
    assert (r.status, r.code, r.facts["held_keys"]) == (Status.WARN, "KEYPAD_KEY_HELD", "enter")
    assert "held down right now" in r.message
    _, calm = make("sim://keypad")
    assert calm.status().code == "KEYPAD_OK"
    cfg = write_config('[[device]]\nname = "keypad"\ndriver = "evdev-keypad"\nurl = "sim://keypad?stuck=enter"\n')
    proc = run_cli("status", "--json", "--config", str(cfg))
    dev = json.loads(proc.stdout)["devices"]["keypad"]
    assert (proc.returncode, dev["status"], dev["code"]) == (1, "warn", "KEYPAD_KEY_HELD"), proc.stderr


def test_driver_grabs_the_sim_and_skip_answer(make: Any) -> None:
    _, driver = make("sim://keypad")
    scan = next(c for c in driver.checks() if c.name == "scan")
    r = scan.run(CheckContext(deadline=time.monotonic() + 30, prompt=lambda text: "s"))
    assert r.code == "KEYPAD_SCAN_SKIPPED"
    r = scan.run(CheckContext(deadline=time.monotonic() + 30, prompt=lambda text: ""))
    assert r.code == "KEYPAD_OK"
    assert driver._dev is not None and driver._dev.sim.grabs == 1 and not driver._dev.grabbed
