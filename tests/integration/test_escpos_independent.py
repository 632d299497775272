"""The escpos driver against a printer emulator it does not control.

tests/integration/independent_printer.py was written only from the manual's example
replies, shares no code with drivers/sim, and runs in its own process on its own pty.
Each fault it plays must be named correctly, and the silent one must never be ok.
"""

from __future__ import annotations

import functools
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posagent.config.model import DeviceConfig
from posagent.config.urls import parse_url
from posagent.core.base import CheckContext, DriverEnv, Level, Result, Status
from posagent.core.values import Duration
from posagent.drivers.escpos import EscposDriver, EscposOptions
from posagent.selftest.runner import call_with_timeout

EMULATOR = Path(__file__).with_name("independent_printer.py")


@pytest.fixture
def printer(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen[str]] = []
    drivers: list[EscposDriver] = []

    def start(situation: str) -> EscposDriver:
        proc = subprocess.Popen([sys.executable, str(EMULATOR), situation], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        path = proc.stdout.readline().strip() if ready else ""
        assert path.startswith("/dev/"), f"emulator did not start: {path!r}"
        opts = EscposOptions(reply_timeout=Duration(0.3), identity_timeout=Duration(0.1))
        driver = EscposDriver(DeviceConfig("receipt", "escpos", parse_url(f"serial://{path}"), opts),
                              DriverEnv(str(tmp_path / "state"), "T-0042"))
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.close()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()  # the emulator's signal to end
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


CASES = [
    ("all_ok", Status.OK, "PRINTER_OK", "ok", "closed"),
    ("out_of_paper", Status.FAIL, "PAPER_END", "end", "closed"),
    ("out_of_paper_no_near_end_sensor", Status.FAIL, "PAPER_END", "end", "closed"),
    ("cover_open", Status.FAIL, "PRINTER_COVER_OPEN", "ok", "open"),
    ("cover_open_while_printing", Status.FAIL, "PRINTER_COVER_OPEN", "ok", "open"),
    ("autocutter_jam", Status.FAIL, "CUTTER_ERROR", "ok", "closed"),
]


@pytest.mark.parametrize("situation, status, code, paper, cover", CASES, ids=[c[0] for c in CASES])
def test_each_fault_is_named(printer, situation: str, status: Status, code: str, paper: str,
                             cover: str) -> None:
    driver = printer(situation)
    r = driver.status()
    assert (r.status, r.code) == (status, code), r.message
    assert (r.fields["paper"], r.fields["cover"]) == (paper, cover)
    assert r.fields["model"] is None  # it never answers GS I: not an error


def test_silent_printer_is_never_ok(printer) -> None:
    driver = printer("silent")
    r = driver.status()
    assert (r.status, r.code) == (Status.UNKNOWN, "PRINTER_NO_RESPONSE")
    assert r.fields["paper"] == "unknown" and r.fields["cover"] == "unknown"
    for check in driver.checks():
        ctx = CheckContext(deadline=time.monotonic() + 10, terminal_id="T-0042", level=Level.EXTERNAL)
        result: Result = call_with_timeout(functools.partial(check.run, ctx), 10, check.name)
        assert result.status != Status.OK, (check.name, result)
