"""USB card readers with pyusb mocked (this machine has no USB bus): presence by
vendor:product, descriptor strings, kernel-driver binding, and what a missing libusb or
a missing wedge device gives."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import usb.core

from posagent.core.base import CheckContext, Result, Status
from posagent.drivers.cardreader import CardReaderDriver
from posagent.selftest.runner import call_with_timeout
from tests.conftest import DriverBuilder

STRINGS = {1: "Mag-Tek", 2: "USB Swipe Reader", 3: "B164F78"}


def fake_reader(mocker: Any, bound: bool | Exception = True) -> Any:
    dev = mocker.Mock(idVendor=0x0801, idProduct=0x0002, iManufacturer=1, iProduct=2, iSerialNumber=3,
                      bus=1, address=7)
    if isinstance(bound, Exception):
        dev.is_kernel_driver_active.side_effect = bound
    else:
        dev.is_kernel_driver_active.return_value = bound
    return dev


@pytest.fixture
def make(build_driver: DriverBuilder) -> Callable[..., CardReaderDriver]:
    """make(url="usb://0801:0002", **options) -> a CardReaderDriver built through the config loader."""
    return build_driver.maker(CardReaderDriver, "reader", "card-reader", default_url="usb://0801:0002")


def run(driver: CardReaderDriver, name: str) -> Result:
    check = next(c for c in driver.checks() if c.name == name)
    ctx = CheckContext(deadline=time.monotonic() + 5, prompt=lambda text: "")
    return call_with_timeout(lambda: check.run(ctx), 5, name)


def test_present_with_descriptor_strings_and_kernel_driver(mocker: Any, make: Any) -> None:
    dev = fake_reader(mocker, bound=True)
    find = mocker.patch("usb.core.find", return_value=dev)
    mocker.patch("usb.util.get_string", side_effect=lambda d, i: STRINGS[i])
    driver = make()
    assert [c.name for c in driver.checks()] == ["presence", "swipe"]
    r = run(driver, "presence")
    assert (r.status, r.code) == (Status.OK, "READER_OK")
    assert r.message == "Mag-Tek USB Swipe Reader (0801:0002) present, kernel driver bound"
    assert r.fields == {"manufacturer": "Mag-Tek", "product": "USB Swipe Reader", "serial": "B164F78",
                        "model": "USB Swipe Reader"}
    assert r.measurements == {"kernel_driver_bound": True, "bus": 1, "address": 7}
    find.assert_called_with(idVendor=0x0801, idProduct=0x0002)
    dev.is_kernel_driver_active.assert_called_with(0)
    assert driver.status().code == "READER_OK"


def test_not_present(mocker: Any, make: Any) -> None:
    mocker.patch("usb.core.find", return_value=None)
    r = run(make(), "presence")
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_NOT_PRESENT")
    assert "0801:0002 is not connected" in r.message


def test_kernel_driver_not_bound(mocker: Any, make: Any) -> None:
    mocker.patch("usb.core.find", return_value=fake_reader(mocker, bound=False))
    mocker.patch("usb.util.get_string", side_effect=lambda d, i: STRINGS[i])
    r = run(make(), "presence")  # a vendor-class reader used through libusb: normal
    assert (r.status, r.code) == (Status.OK, "READER_OK") and "no kernel driver bound" in r.message
    r = run(make(wedge="evdev://?name=Mag-Tek"), "presence")  # a keyboard wedge needs usbhid bound
    assert (r.status, r.code) == (Status.WARN, "READER_NO_KERNEL_DRIVER")


def test_no_permission_for_strings(mocker: Any, make: Any) -> None:
    mocker.patch("usb.core.find", return_value=fake_reader(mocker, bound=usb.core.USBError("Access denied")))
    mocker.patch("usb.util.get_string", side_effect=usb.core.USBError("Access denied (insufficient permissions)"))
    r = run(make(), "presence")
    assert (r.status, r.code) == (Status.OK, "READER_OK")
    assert r.message == "USB reader (0801:0002) present, kernel binding unknown"
    assert r.fields == {} and r.measurements["kernel_driver_bound"] is None


def test_no_libusb_backend(mocker: Any, make: Any) -> None:
    mocker.patch("usb.core.find", side_effect=usb.core.NoBackendError("No backend available"))
    r = run(make(), "presence")
    assert (r.status, r.code) == (Status.UNKNOWN, "USB_UNAVAILABLE")


def test_swipe_needs_a_wedge_device(mocker: Any, make: Any) -> None:
    r = run(make(), "swipe")
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_SWIPE_UNSUPPORTED")
    mocker.patch("evdev.list_devices", return_value=[])
    r = run(make(wedge="evdev://?name=Mag-Tek"), "swipe")
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_NOT_PRESENT")
