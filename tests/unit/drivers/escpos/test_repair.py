"""The escpos driver's self-repair hook (docs/self-repair.md) against the ESC/POS simulator:
as a proxy only between jobs (a job in progress holds the printer, the repair waits and
gives up at its deadline, ESC @ lands after the job, never inside it); the USB port reset
only with ``usb_reset = true``. This machine has no USB bus: the reset is tested with a
fake at the pyusb boundary only (the FakePrinter of test_escpos_usb.py, which forwards
bulk transfers to the real simulator), whose ``reset()`` records the call."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.config.model import DeviceConfig
from posagent.config.sharing import Sharing
from posagent.config.urls import parse_url
from posagent.core.base import DriverEnv, Result
from posagent.core.values import Duration
from posagent.drivers.escpos import EscposDriver, EscposOptions
from posagent.drivers.escpos.sim import EscposSim
from posagent.drivers.simulator import SimHandle
from tests.conftest import wait_until
from tests.unit.drivers.escpos.test_escpos_usb import FakePrinter, bus  # noqa: F401 (the fixture)

ESC_INIT = b"\x1b\x40"
FAST = {"reply_timeout": Duration(0.3), "identity_timeout": Duration(0.1)}


@pytest.fixture
def printer() -> Iterator[SimHandle]:
    handle = EscposSim(offline_until_init=True).start()
    yield handle
    handle.stop()


def received(handle: SimHandle) -> bytes:
    with handle.sim.lock:  # type: ignore[attr-defined]
        return bytes(handle.sim.received)  # type: ignore[attr-defined]


def test_as_a_proxy_esc_at_waits_for_the_job_and_lands_after_it(printer: SimHandle, tmp_path: Path) -> None:
    sharing = Sharing(mode="proxy", proxy_listen=("127.0.0.1", 0), job_idle=2.0, job_timeout=10.0)
    device = DeviceConfig("receipt", "escpos", parse_url(printer.url), EscposOptions(**FAST), sharing=sharing)
    driver = EscposDriver(device, DriverEnv(str(tmp_path), "T-1"))
    driver.serve(lambda r: None)
    proxy = driver._proxy
    assert proxy is not None and proxy.address is not None
    fault = driver.status()
    assert fault.code == "PRINTER_OFFLINE"
    job = b"\x1b@RECEIPT 0001\n" + b"x" * 2000 + b"\n\x1dV\x42\x00"
    client = socket.create_connection(proxy.address, timeout=5)
    try:
        client.sendall(job[:100])  # the job has begun and is held open: the printer is the job's
        assert wait_until(lambda: proxy.in_job, 5.0)
        t0 = time.monotonic()
        assert driver.repair(fault, time.monotonic() + 0.3) == []  # nothing while a job is under way
        assert time.monotonic() - t0 < 1.0
        assert received(printer).count(ESC_INIT) == 1  # the job's own ESC @ only
        client.sendall(job[100:])
    finally:
        client.close()
    assert wait_until(lambda: proxy.jobs == 1 and not proxy.in_job, 10.0), (proxy.jobs, proxy.lost_jobs, proxy.in_job)
    assert driver.repair(fault, time.monotonic() + 3.0) == ["init"]
    data = received(printer)
    assert data.count(ESC_INIT) == 2 and data.rindex(ESC_INIT) > data.index(job[-4:])  # after the job, whole
    assert driver.status().code == "PRINTER_OK"
    driver.close()


def test_a_guest_hook_does_nothing(printer: SimHandle, tmp_path: Path) -> None:
    device = DeviceConfig("receipt", "escpos", parse_url(printer.url), EscposOptions(**FAST),
                          sharing=Sharing(mode="guest"))
    driver = EscposDriver(device, DriverEnv(str(tmp_path), "T-1"))
    fault = driver.status()
    assert fault.code == "PRINTER_OFFLINE"
    assert driver.repair(fault, time.monotonic() + 3.0) == []
    assert ESC_INIT not in received(printer)
    driver.close()


class ResettablePrinter(FakePrinter):
    """pyusb's Device with ``reset()``: what a port reset does to the bus is out of reach
    here; the call itself is recorded."""

    def __init__(self, sim: EscposSim) -> None:
        super().__init__(sim)
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1


def usb_driver(tmp_path: Path, usb_reset: bool) -> EscposDriver:
    opts = EscposOptions(**FAST, usb_reset=usb_reset)
    return EscposDriver(DeviceConfig("receipt", "escpos", parse_url("usb://04b8:0e15"), opts),
                        DriverEnv(str(tmp_path), "T-1"))


@pytest.mark.parametrize("allowed", [True, False])
def test_usb_port_reset_only_when_allowed(bus: dict[str, Any], tmp_path: Path, allowed: bool) -> None:  # noqa: F811
    sim = EscposSim(no_answer=True)
    bus["device"] = dev = ResettablePrinter(sim)
    driver = usb_driver(tmp_path, usb_reset=allowed)
    fault = driver.status()
    assert fault.code == "PRINTER_NO_RESPONSE"
    steps = driver.repair(fault, time.monotonic() + 3.0)
    assert steps == (["usb_reset", "reopen", "init"] if allowed else ["reopen", "init"])
    assert dev.resets == (1 if allowed else 0)
    driver.close()


def test_a_fault_a_person_must_fix_is_not_touched(tmp_path: Path) -> None:
    handle = EscposSim(cover="open").start()
    try:
        driver = EscposDriver(DeviceConfig("receipt", "escpos", parse_url(handle.url), EscposOptions(**FAST)),
                              DriverEnv(str(tmp_path), "T-1"))
        fault = driver.status()
        assert fault.code == "PRINTER_COVER_OPEN"
        assert driver.repair(fault, time.monotonic() + 3.0) == []
        assert driver.repair(Result.fail("PAPER_END", "paper end"), time.monotonic() + 3.0) == []
        assert ESC_INIT not in received(handle)
        driver.close()
    finally:
        handle.stop()
