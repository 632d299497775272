"""The escpos driver against the ESC/POS simulator over real ptys and a TCP socket.

Each knob gives its code and heartbeat fields; a printer that is silent, garbled,
unplugged or absent is never ok; a disconnect mid-slip is reported and the agent goes
on; the slip is printed and cut; the ribbon counter and ``posagent printer
ribbon-changed`` work through the real command line.
"""

from __future__ import annotations

import functools
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.config.model import DeviceConfig
from posagent.config.urls import parse_url
from posagent.core.base import CheckContext, DriverEnv, Level, Result, Status
from posagent.core.errors import DeviceError
from posagent.core.values import Duration
from posagent.drivers.escpos import EscposDriver, EscposOptions
from posagent.drivers.escpos.sim import EscposSim
from posagent.selftest.runner import call_with_timeout
from tests.conftest import run_cli

FAST = {"reply_timeout": Duration(0.3), "identity_timeout": Duration(0.1)}


def make_driver(url: str, state_dir: Path, name: str = "receipt", **opts: Any) -> EscposDriver:
    options = EscposOptions(**{**FAST, **opts})
    return EscposDriver(DeviceConfig(name, "escpos", parse_url(url), options), DriverEnv(str(state_dir), "T-0042"))


Start = Callable[..., tuple[EscposSim, EscposDriver]]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Start]:
    """rig(opts={...}, **knobs) -> (simulator, driver) over a pty (or transport=tcp)."""
    made: list[tuple[EscposDriver, Any]] = []

    def start(opts: dict[str, Any] | None = None, **knobs: Any) -> tuple[EscposSim, EscposDriver]:
        sim = EscposSim(**knobs)
        handle = sim.start()
        driver = make_driver(handle.url, tmp_path / "state", **(opts or {}))
        made.append((driver, handle))
        return sim, driver

    yield start
    for driver, handle in made:
        driver.close()
        handle.stop()


def ctx(results: dict[str, Result] | None = None, seconds: float = 10.0) -> CheckContext:
    return CheckContext(deadline=time.monotonic() + seconds, terminal_id="T-0042", level=Level.EXTERNAL,
                        results=results or {})


def run_checks(driver: EscposDriver, seconds: float = 10.0) -> dict[str, Result]:
    """Every check as the runner runs it (exceptions become results)."""
    out: dict[str, Result] = {}
    shared: dict[str, Result] = {}  # keyed "device.check", as the runner shares them
    for check in driver.checks():
        r = call_with_timeout(functools.partial(check.run, ctx(shared, seconds)), seconds, check.name)
        out[check.name] = shared[f"{driver.device.name}.{check.name}"] = r
    return out


KNOBS = [
    ({}, Status.OK, "PRINTER_OK", "ok", "closed"),
    ({"paper": "near_end"}, Status.WARN, "PAPER_NEAR_END", "near_end", "closed"),
    ({"paper": "end"}, Status.FAIL, "PAPER_END", "end", "closed"),
    ({"cover": "open"}, Status.FAIL, "PRINTER_COVER_OPEN", "ok", "open"),
    ({"cutter_error": "true"}, Status.FAIL, "CUTTER_ERROR", "ok", "closed"),
    ({"offline": "true"}, Status.FAIL, "PRINTER_OFFLINE", "ok", "closed"),
    ({"error": "overheat"}, Status.WARN, "PRINTER_OVERHEAT", "ok", "closed"),
    ({"error": "unrecoverable"}, Status.FAIL, "PRINTER_UNRECOVERABLE_ERROR", "ok", "closed"),
    ({"error": "mechanical"}, Status.FAIL, "PRINTER_MECHANICAL_ERROR", "ok", "closed"),
    ({"latency_ms": "20"}, Status.OK, "PRINTER_OK", "ok", "closed"),
    ({"no_answer": "true"}, Status.UNKNOWN, "PRINTER_NO_RESPONSE", "unknown", "unknown"),
    ({"garbage": "true"}, Status.UNKNOWN, "PRINTER_PROTOCOL_ERROR", "unknown", "unknown"),
]


@pytest.mark.parametrize("knobs, status, code, paper, cover", KNOBS, ids=[str(k[0]) or "healthy" for k in KNOBS])
def test_knob(rig: Start, knobs: dict[str, str], status: Status, code: str, paper: str, cover: str) -> None:
    _sim, driver = rig(**knobs)
    r = driver.status()
    assert (r.status, r.code) == (status, code), r.message
    assert r.fields["paper"] == paper and r.fields["cover"] == cover
    assert r.fields["ribbon"] is None  # thermal printer
    if status != Status.UNKNOWN:
        assert "status_ms" in r.measurements and len(r.fields["status_bytes"].split()) == 4
        assert r.fields["online"] is (code in ("PRINTER_OK", "PAPER_NEAR_END"))


def test_healthy_fields_and_identity(rig: Start) -> None:
    _sim, driver = rig(drawer="high", model="TM-T20II", firmware="1.28", opts={"drawer_open_level": "low"})
    r = driver.status()
    assert r.fields["model"] is None and r.fields["firmware"] is None  # status() never asks GS I
    assert r.fields["drawer_pin3"] == "high" and r.fields["drawer"] == "closed"
    assert r.fields["errors"] == [] and r.fields["counters"]["lines_printed"] == 0
    ident = run_checks(driver)["identity"]
    assert (ident.status, ident.code) == (Status.OK, "PRINTER_ID_OK")
    assert ident.fields["autocutter"] is True
    r = driver.status()  # what the identity check read, the status now carries
    assert r.fields["model"] == "EPSON TM-T20II" and r.fields["firmware"] == "1.28"


def test_printer_ignoring_gs_i_is_still_ok(rig: Start) -> None:
    _sim, driver = rig(identity="false")
    r = driver.status()
    assert r.code == "PRINTER_OK" and r.fields["model"] is None and r.fields["firmware"] is None
    assert run_checks(driver)["identity"].code == "PRINTER_ID_NOT_REPORTED"


class GsICounting(EscposSim):
    """The simulator, noting every ``GS I n`` it is asked."""

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.gs_i: list[int] = []

    def _identity(self, n: int) -> bytes:
        self.gs_i.append(n)
        return super()._identity(n)


def _timed(fn: Callable[[], Result]) -> tuple[Result, float]:
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def _identity_check(driver: EscposDriver) -> Result:
    check = next(c for c in driver.checks() if c.name == "identity")
    return call_with_timeout(functools.partial(check.run, ctx()), 10.0, "identity")


def test_status_never_waits_for_gs_i_and_silence_is_remembered(tmp_path: Path) -> None:
    """A printer that legally ignores GS I: no status waits for it; the identity check waits
    once (the first silent GS I ends the asking) and the silence is remembered across
    driver instances (processes) through the state file."""
    sim = GsICounting(identity=False)
    handle = sim.start()
    wait = 1.0  # identity_timeout: what a status must never wait out
    drivers = [make_driver(handle.url, tmp_path / "state", identity_timeout=Duration(wait)) for _ in range(2)]
    try:
        first, second = drivers
        r, took = _timed(first.status)
        assert r.code == "PRINTER_OK" and r.fields["model"] is None
        assert took < wait and sim.gs_i == []
        ident, took = _timed(lambda: _identity_check(first))
        assert ident.code == "PRINTER_ID_NOT_REPORTED" and ident.fields["model"] is None
        assert sim.gs_i == [1] and took < 2 * wait  # one silent GS I, not six
        for driver in drivers:  # the same instance, and a new one (another process)
            ident, took = _timed(lambda d=driver: _identity_check(d))
            assert ident.code == "PRINTER_ID_NOT_REPORTED" and "remembered" in ident.message
            assert took < wait and sim.gs_i == [1]
            assert second.status().code == "PRINTER_OK"
        # An old memory is asked again.
        state = Path(str(first._counters.path if first._counters else ""))
        saved = json.loads(state.read_text())
        saved["identity"]["asked_unix"] -= 2 * 3600
        state.write_text(json.dumps(saved))
        third = make_driver(handle.url, tmp_path / "state", identity_timeout=Duration(0.2))
        drivers.append(third)
        assert _identity_check(third).code == "PRINTER_ID_NOT_REPORTED" and sim.gs_i == [1, 1]
    finally:
        for driver in drivers:
            driver.close()
        handle.stop()


def test_identity_remembered_across_driver_instances(tmp_path: Path) -> None:
    sim = GsICounting(model="TM-T20II", firmware="1.28")
    handle = sim.start()
    first = make_driver(handle.url, tmp_path / "state")
    second = None
    try:
        assert first.status().fields["model"] is None
        assert _identity_check(first).code == "PRINTER_ID_OK"
        assert sim.gs_i == [1, 2, 3, 65, 66, 67]
        assert first.status().fields["model"] == "EPSON TM-T20II"
        first.close()
        second = make_driver(handle.url, tmp_path / "state")  # a new process, say
        r = second.status()
        assert (r.fields["model"], r.fields["firmware"]) == ("EPSON TM-T20II", "1.28")
        assert "(EPSON TM-T20II)" in r.message and len(sim.gs_i) == 6  # from the state file, not asked
        second.print_lines(["kept"])  # a counter update keeps the remembered identity
        saved = json.loads(Path(str(second._counters.path if second._counters else "")).read_text())
        assert saved["lines_total"] > 0 and saved["identity"]["strings"]["67"] == "TM-T20II"
        assert second.status().fields["firmware"] == "1.28"
    finally:
        first.close()
        if second is not None:
            second.close()
        handle.stop()


def test_unwritable_state_dir_is_logged_once(rig: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    sim = EscposSim()
    handle = sim.start()
    driver = make_driver(handle.url, blocker / "state", name="unwritable")
    try:
        with caplog.at_level("WARNING", logger="posagent.drivers.escpos"):
            results = run_checks(driver)  # identity and the slip's counters: two failed writes
            assert results["slip"].code == "SLIP_OK" and results["identity"].code == "PRINTER_ID_OK"
            with sim.lock:
                sim.k["paper"] = "end"
            assert driver.status().code == driver.status().code == "PAPER_END"  # two more
        logged = [rec for rec in caplog.records if "cannot update" in rec.getMessage()]
        assert len(logged) == 1, [rec.getMessage() for rec in logged]
        assert "printer-unwritable.json" in logged[0].getMessage()
    finally:
        driver.close()
        handle.stop()


@pytest.mark.parametrize("knobs", [{"no_answer": "true"}, {"garbage": "true"}, {"no_answer": "true", "paper": "end"}])
def test_dead_printer_is_never_ok(rig: Start, knobs: dict[str, str]) -> None:
    sim, driver = rig(**knobs)
    for name, r in {"status": driver.status(), **run_checks(driver)}.items():
        assert r.status == Status.UNKNOWN, (name, r)
        assert r.code in ("PRINTER_NO_RESPONSE", "PRINTER_PROTOCOL_ERROR"), (name, r)
    assert sim.cuts == 0  # nothing printed to a printer that cannot be asked


def test_pty_nobody_serves(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    driver = make_driver(f"serial://{os.ttyname(slave)}", tmp_path)
    try:
        results = {"status": driver.status(), **run_checks(driver)}
        assert all(r.status == Status.UNKNOWN for r in results.values()), results
        assert results["status"].code == "PRINTER_NO_RESPONSE"
        assert results["status"].fields["paper"] == "unknown"
    finally:
        driver.close()
        os.close(master)
        os.close(slave)


def test_missing_port_is_not_connected(tmp_path: Path) -> None:
    driver = make_driver("serial:///dev/ttyPOSAGENT-NONE", tmp_path)
    r = driver.status()
    assert (r.status, r.code) == (Status.UNKNOWN, "PRINTER_NOT_CONNECTED")
    assert "does not exist" in r.message


def test_unplugged_after_a_good_status(rig: Start, tmp_path: Path) -> None:
    sim = EscposSim()
    handle = sim.start()
    driver = make_driver(handle.url, tmp_path)
    try:
        assert driver.status().code == "PRINTER_OK"
        handle.stop()  # the adapter goes away: the pty vanishes
        r = driver.status()
        assert (r.status, r.code) == (Status.UNKNOWN, "PRINTER_NOT_CONNECTED"), r
        assert r.fields["paper"] == "unknown"
    finally:
        driver.close()
        handle.stop()


def test_stale_input_is_flushed(tmp_path: Path) -> None:
    """A late reply sitting in the input must not be read as the status."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def printer() -> None:
        poll = select.poll()
        poll.register(master, select.POLLIN)
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            if poll.poll(100):
                data = os.read(master, 64)
                os.write(master, bytes(0x12 for i in range(len(data) - 2) if data[i:i + 2] == b"\x10\x04"))

    driver = make_driver(f"serial://{os.ttyname(slave)}", tmp_path)
    t = threading.Thread(target=printer, daemon=True)
    try:
        driver._link.open()
        os.write(master, b"\x00\x5fTM\x00\xff")  # stale: a garbled byte and a GS I string
        assert select.select([driver._link.stream.fd], [], [], 5)[0]  # they are in the driver's input
        t.start()
        assert driver.query(1) == 0x12
        r = driver.status()
        assert r.code == "PRINTER_OK", r
    finally:
        stop.set()
        t.join(5)
        driver.close()
        os.close(master)
        os.close(slave)


def test_slip_printed_and_cut(rig: Start) -> None:
    sim, driver = rig()
    results = run_checks(driver)
    slip = results["slip"]
    assert (slip.status, slip.code) == (Status.OK, "SLIP_OK"), slip.message
    assert sim.cuts == 1 and sim.unknown == []
    assert sim.qr_printed == ["T-0042"]
    text = sim.printed
    for expected in ("POSAGENT TEST SLIP", "T-0042", "EPSON TM-T88V", "30.03 ESC/POS", "1234567890"):
        assert expected in text
    # One line per device with its result so far (status and identity of this printer).
    assert any(line.startswith("receipt") and "OK" in line for line in sim.printed_lines)
    counters = slip.fields["counters"]
    # Counted: every text line the printer saw, the double-height title once more, 4 feed lines.
    assert counters["lines_printed"] == len(sim.printed_lines) + 1 + 4
    assert counters["cuts"] == 1 and counters["paper_mm"] > 50


@pytest.mark.parametrize("knobs, code, how", [
    ({"jam_on_cut": "true"}, "CUTTER_ERROR", "while printing"),
    ({"paper_left_mm": "40"}, "PAPER_END", "while printing"),
    ({"paper": "end"}, "PAPER_END", "not printed"),
    ({"cover": "open"}, "PRINTER_COVER_OPEN", "not printed"),
])
def test_slip_faults(rig: Start, knobs: dict[str, str], code: str, how: str) -> None:
    sim, driver = rig(**knobs)
    r = run_checks(driver)["slip"]
    assert (r.status, r.code) == (Status.FAIL, code), r.message
    assert how in r.message
    assert sim.cuts == 0


def test_slip_after_printing_reports_near_end(rig: Start) -> None:
    sim, driver = rig(paper="near_end")
    r = run_checks(driver)["slip"]
    assert (r.status, r.code) == (Status.WARN, "PAPER_NEAR_END") and "after the test slip" in r.message
    assert sim.cuts == 1


def test_disconnect_mid_slip(rig: Start) -> None:
    sim, driver = rig(drop_after_bytes="200")
    results = run_checks(driver)
    assert results["status"].code == "PRINTER_OK"
    slip = results["slip"]
    assert (slip.status, slip.code) == (Status.FAIL, "SLIP_INTERRUPTED"), slip
    assert sim.cuts == 0
    # The agent goes on: the next status is an answer, not an exception, and never ok.
    after = driver.status()
    assert (after.status, after.code) == (Status.UNKNOWN, "PRINTER_NOT_CONNECTED")


def test_disconnect_mid_slip_cli(write_config: Callable[..., Path]) -> None:
    cfg = write_config('[[device]]\nname = "receipt"\ndriver = "escpos"\n'
                       'url = "sim://escpos?drop_after_bytes=200"\n[device.options]\nreply_timeout = "300ms"\n')
    proc = run_cli("selftest", "--config", str(cfg), "--level", "external", "--json")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["status"]["code"] == "PRINTER_OK"
    assert checks["slip"]["code"] == "SLIP_INTERRUPTED" and checks["slip"]["hint"]


def test_reopen_after_io_error_tcp(rig: Start) -> None:
    sim, driver = rig(transport="tcp")
    assert driver.status().code == "PRINTER_OK"
    with sim.lock:
        sim.k["drop_after_bytes"] = len(sim.received) + 1  # hang up on the next bytes, twice
    r = driver.status()
    assert (r.status, r.code) == (Status.UNKNOWN, "PRINTER_NOT_CONNECTED"), r
    with sim.lock:
        sim.k["drop_after_bytes"] = 0
    assert driver.status().code == "PRINTER_OK"  # a fresh connection


def test_stale_tcp_connection_is_reopened_within_the_call(rig: Start) -> None:
    sim, driver = rig(transport="tcp")
    assert driver.status().code == "PRINTER_OK"
    driver._link.stream._owner.shutdown(socket.SHUT_RDWR)  # the printer dropped the idle connection
    r = driver.status()
    assert r.code == "PRINTER_OK", r  # one reconnect, same call
    assert sim.realtime_queries == 8


def test_tcp_transport(rig: Start) -> None:
    sim, driver = rig(transport="tcp", paper="near_end")
    assert str(driver.device.url).startswith("tcp://127.0.0.1:")
    results = run_checks(driver)
    assert results["status"].code == "PAPER_NEAR_END"
    assert results["identity"].code == "PRINTER_ID_OK"
    assert results["slip"].code == "PAPER_NEAR_END" and sim.cuts == 1


def test_sim_url_in_config(tmp_path: Path) -> None:
    driver = make_driver("sim://escpos?cover=open", tmp_path)
    try:
        assert driver.status().code == "PRINTER_COVER_OPEN"
    finally:
        driver.close()


def test_print_lines(rig: Start) -> None:
    sim, driver = rig()
    driver.print_lines(["VISIT REPORT", "receipt  PASS", "x" * 60])
    assert sim.printed_lines[:4] == ["VISIT REPORT", "receipt  PASS", "x" * 42, "x" * 18]
    assert sim.cuts == 1
    sim2, broken = rig(cover="open")
    with pytest.raises(DeviceError) as ei:
        broken.print_lines(["never printed"])
    assert ei.value.code == "PRINTER_COVER_OPEN" and sim2.printed_lines == []


def test_paper_counter_restarts_at_paper_end(rig: Start) -> None:
    sim, driver = rig()
    driver.print_lines(["a", "b"])
    used = driver.status().measurements["paper_used_mm"]
    assert used > 0
    with sim.lock:
        sim.k["paper"] = "end"
    r = driver.status()
    assert r.code == "PAPER_END" and r.measurements["paper_used_mm"] == 0
    assert r.fields["counters"]["paper_end_at"]
    with sim.lock:
        sim.k["paper"] = "ok"
    driver.print_lines(["c"])
    assert 0 < driver.status().measurements["paper_used_mm"] < used


def _impact_config(write_config: Callable[..., Path], url: str) -> Path:
    return write_config(f'[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "{url}"\n'
                        '[device.options]\nimpact = true\nribbon_life_lines = 30\nribbon_warn_pct = 50\n'
                        '[[device]]\nname = "kitchen"\ndriver = "escpos"\nurl = "sim://escpos"\n')


def test_ribbon_counter_and_cli(rig: Start, write_config: Callable[..., Path], tmp_path: Path) -> None:
    sim, driver = rig(model="TM-U220", model_id="13",
                      opts={"impact": True, "ribbon_life_lines": 30, "ribbon_warn_pct": 50.0})
    cfg = _impact_config(write_config, driver.device.url.raw)
    r = driver.status()
    assert r.code == "PRINTER_OK" and r.fields["ribbon"] == "ok" and r.measurements["ribbon_used_pct"] == 0
    slip = run_checks(driver)["slip"]
    assert sim.qr_printed == []  # impact printers get a text-only slip
    assert slip.code == "RIBBON_WORN" and slip.status == Status.WARN
    r = driver.status()
    assert (r.status, r.code, r.fields["ribbon"]) == (Status.WARN, "RIBBON_WORN", "near_end")
    lines = r.fields["counters"]["ribbon_lines"]
    assert lines > 15

    proc = run_cli("printer", "ribbon-changed", "receipt", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert f"printed {lines} lines" in proc.stdout
    r = driver.status()
    assert (r.code, r.fields["ribbon"], r.fields["counters"]["ribbon_lines"]) == ("PRINTER_OK", "ok", 0)
    assert r.fields["counters"]["ribbon_changed_at"]

    shown = run_cli("printer", "counters", "receipt", "--config", str(cfg))
    assert shown.returncode == 0 and json.loads(shown.stdout)["ribbon_lines"] == 0
    for args in (["ribbon-changed", "nosuch"], ["ribbon-changed", "kitchen"], []):
        bad = run_cli("printer", *args, "--config", str(cfg))
        assert bad.returncode == 64, (args, bad.stderr)
        assert "Traceback" not in bad.stderr


def test_status_path_does_not_import_python_escpos(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.integration.test_escpos_pty import make_driver\n"
        f"d = make_driver('sim://escpos', Path({str(tmp_path)!r}))\n"
        "r = d.status(); d.read_identity(); d.close()\n"
        "print(r.code, 'escpos' in sys.modules, 'PIL' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout.split() == ["PRINTER_OK", "False", "False"], proc.stderr
