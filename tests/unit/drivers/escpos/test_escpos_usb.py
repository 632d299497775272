"""The escpos driver over ``usb://`` (UsbStream) with pyusb's bus mocked: this machine has
no USB bus. The fake device forwards bulk transfers to the real ESC/POS simulator's byte
handler, so the protocol on the wire is the same as over a pty.
"""

from __future__ import annotations

import array
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import usb.core as usb_core  # pyusb is a dependency of posagent

from posagent.config.model import DeviceConfig
from posagent.config.urls import parse_url
from posagent.core.base import CheckContext, DriverEnv, Level, Status
from posagent.core.values import Duration
from posagent.drivers.escpos import EscposDriver, EscposOptions
from posagent.drivers.escpos.sim import EscposSim
from posagent.drivers.simulator import SimDisconnect

BULK = 0x02


class FakeEndpoint:
    def __init__(self, address: int) -> None:
        self.bEndpointAddress = address
        self.bmAttributes = BULK


class FakePrinter:
    """What pyusb's Device offers UsbStream: claim, bulk write/read with timeouts."""

    idVendor, idProduct = 0x04B8, 0x0E15

    def __init__(self, sim: EscposSim) -> None:
        self.sim = sim
        self.pending = bytearray()
        self.unplugged = False
        self.detached: list[int] = []
        self.writes: list[tuple[int, bytes]] = []

    def is_kernel_driver_active(self, interface: int) -> bool:
        return True  # usblp holds printers until detached

    def detach_kernel_driver(self, interface: int) -> None:
        self.detached.append(interface)

    def set_configuration(self) -> None:
        pass

    def get_active_configuration(self) -> dict[tuple[int, int], list[FakeEndpoint]]:
        return {(0, 0): [FakeEndpoint(0x01), FakeEndpoint(0x82)]}

    def write(self, ep: int, data: Any, timeout: int) -> int:
        if self.unplugged:
            raise usb_core.USBError("No such device (it may have been disconnected)", errno=19)
        self.writes.append((ep, bytes(data)))
        try:
            self.pending += self.sim._handle(bytes(data))
        except SimDisconnect:
            self.unplugged = True
        return len(data)

    def read(self, ep: int, size: int, timeout: int) -> array.array:
        if self.unplugged:
            raise usb_core.USBError("No such device (it may have been disconnected)", errno=19)
        assert ep == 0x82
        if not self.pending:
            raise usb_core.USBTimeoutError("Operation timed out", errno=110)
        out = array.array("B", self.pending[:size])
        del self.pending[:size]
        return out


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The mocked bus: ``bus["device"]`` is what usb.core.find returns (None = unplugged)."""
    state: dict[str, Any] = {"device": None, "finds": 0}

    def find(idVendor: int, idProduct: int, **_: Any) -> Any:
        state["finds"] += 1
        dev = state["device"]
        return dev if dev is not None and (dev.idVendor, dev.idProduct) == (idVendor, idProduct) else None

    monkeypatch.setattr(usb_core, "find", find)
    yield state


def make(tmp_path: Path, url: str = "usb://04b8:0e15") -> EscposDriver:
    opts = EscposOptions(reply_timeout=Duration(0.3), identity_timeout=Duration(0.1))
    return EscposDriver(DeviceConfig("receipt", "escpos", parse_url(url), opts), DriverEnv(str(tmp_path), "T-1"))


def test_status_over_usb(bus: dict[str, Any], tmp_path: Path) -> None:
    bus["device"] = dev = FakePrinter(EscposSim(paper="near_end"))
    driver = make(tmp_path)
    r = driver.status()
    assert (r.status, r.code) == (Status.WARN, "PAPER_NEAR_END"), r.message
    assert r.fields["model"] is None  # status() never asks GS I; nothing remembered yet
    assert driver.read_identity().model == "EPSON TM-T88V"
    assert driver.status().fields["model"] == "EPSON TM-T88V"
    assert dev.detached == [0]  # the kernel's usblp was detached to claim the interface
    assert {ep for ep, _ in dev.writes} == {0x01}  # OUT endpoint discovered from the descriptors
    assert driver.query(4) == 0x1E
    driver.close()


def test_explicit_endpoints_and_slip(bus: dict[str, Any], tmp_path: Path) -> None:
    sim = EscposSim()
    bus["device"] = FakePrinter(sim)
    driver = make(tmp_path, "usb://04b8:0e15?in_ep=0x82&out_ep=0x01")
    ctx = CheckContext(deadline=time.monotonic() + 10, terminal_id="T-1", level=Level.EXTERNAL)
    r = driver.checks()[2].run(ctx)
    assert r.code == "SLIP_OK", r.message
    assert sim.cuts == 1 and "POSAGENT TEST SLIP" in sim.printed
    driver.close()


@pytest.mark.parametrize("knobs, code", [
    ({"cover": "open"}, "PRINTER_COVER_OPEN"), ({"paper": "end"}, "PAPER_END"),
    ({"no_answer": "true"}, "PRINTER_NO_RESPONSE"), ({"garbage": "true"}, "PRINTER_PROTOCOL_ERROR"),
])
def test_faults_over_usb(bus: dict[str, Any], tmp_path: Path, knobs: dict[str, str], code: str) -> None:
    bus["device"] = FakePrinter(EscposSim(**knobs))
    driver = make(tmp_path)
    r = driver.status()
    assert r.code == code and r.status != Status.OK
    driver.close()


def test_not_on_the_bus(bus: dict[str, Any], tmp_path: Path) -> None:
    r = make(tmp_path).status()
    assert (r.status, r.code) == (Status.UNKNOWN, "PRINTER_NOT_CONNECTED")
    assert "04b8:0e15" in r.message


def test_unplug_and_replug(bus: dict[str, Any], tmp_path: Path) -> None:
    bus["device"] = dev = FakePrinter(EscposSim())
    driver = make(tmp_path)
    assert driver.status().code == "PRINTER_OK"
    dev.unplugged, bus["device"] = True, None
    r = driver.status()
    assert (r.status, r.code) == (Status.UNKNOWN, "PRINTER_NOT_CONNECTED"), r
    bus["device"] = FakePrinter(EscposSim(paper="end"))  # another printer plugged in
    r = driver.status()
    assert r.code == "PAPER_END"
    driver.close()


def test_disconnect_mid_slip_over_usb(bus: dict[str, Any], tmp_path: Path) -> None:
    bus["device"] = FakePrinter(EscposSim(drop_after_bytes=200))
    driver = make(tmp_path)
    ctx = CheckContext(deadline=time.monotonic() + 10, terminal_id="T-1", level=Level.EXTERNAL)
    r = driver.checks()[2].run(ctx)
    assert (r.status, r.code) == (Status.FAIL, "SLIP_INTERRUPTED"), r
    assert driver.status().status == Status.UNKNOWN
    driver.close()
