"""The python-evdev part of the keypad driver with only the evdev library calls mocked
(this machine has no /dev/input): lookup by name and path, the capabilities check,
grab/ungrab on every exit path, held keys. Event data still goes through a real pipe."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from posagent.config.urls import parse_url
from posagent.core.base import CheckContext, Result, Status
from posagent.core.errors import DeviceError, DeviceNotFound
from posagent.drivers.keypad import KeypadDriver
from posagent.drivers.keypad.keyscan import DEFAULT_KEYS, parse_keys
from posagent.drivers.transport.evdev import EV_KEY, EV_SYN, KEYS, SYN_REPORT, EvdevDevice, open_device, pack_event
from posagent.selftest.runner import call_with_timeout
from tests.conftest import DriverBuilder

ALL_CODES = sorted({c for s in parse_keys(list(DEFAULT_KEYS)) for c in s.codes[:1]})


class FakeInputDevice:
    """What evdev.InputDevice offers, for a device that is not there."""

    def __init__(self, path: str, name: str, codes: list[int], fd: int = -1) -> None:
        self.path, self.name, self.fd = path, name, fd
        self.codes = codes
        self.held: list[list[int]] = [[]]
        self.calls: list[str] = []
        self.on_grab: Any = None  # what the technician does once the scan has the device

    def capabilities(self, verbose: bool = False, absinfo: bool = True) -> dict[int, list[int]]:
        return {EV_SYN: [0, 1, 4], EV_KEY: list(self.codes), 4: [4], 17: [0, 1, 2]}

    def active_keys(self, verbose: bool = False) -> list[int]:
        return self.held.pop(0) if len(self.held) > 1 else self.held[0]

    def grab(self) -> None:
        self.calls.append("grab")
        if self.on_grab is not None:
            self.on_grab()

    def ungrab(self) -> None:
        self.calls.append("ungrab")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def bus(mocker: Any) -> dict[str, FakeInputDevice]:
    """Three input devices behind mocked evdev.list_devices / evdev.InputDevice."""
    devs = {
        "/dev/input/event2": FakeInputDevice("/dev/input/event2", "AT Translated Set 2 keyboard", [1, 2, 3]),
        "/dev/input/event5": FakeInputDevice("/dev/input/event5", "HID 13ba:0001 POS Keypad", ALL_CODES),
        "/dev/input/event7": FakeInputDevice("/dev/input/event7", "POS Keypad", ALL_CODES),
    }

    def input_device(path: str, readonly: bool = False) -> FakeInputDevice:
        if path not in devs:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return devs[path]

    mocker.patch("evdev.list_devices", return_value=sorted(devs))
    mocker.patch("evdev.InputDevice", side_effect=input_device)
    return devs


def test_lookup_by_exact_name_closes_the_others(bus: dict[str, FakeInputDevice]) -> None:
    import evdev

    dev = open_device(parse_url("evdev://?name=POS Keypad"))
    assert dev.path == "/dev/input/event7"
    evdev.list_devices.assert_called_once_with(writable=False)  # type: ignore[attr-defined]
    assert bus["/dev/input/event2"].calls == ["close"] and bus["/dev/input/event5"].calls == ["close"]
    assert bus["/dev/input/event7"].calls == []


def test_lookup_by_partial_name_and_by_path(bus: dict[str, FakeInputDevice]) -> None:
    assert open_device(parse_url("evdev://?name=13ba")).path == "/dev/input/event5"
    assert open_device(parse_url("evdev:///dev/input/event2")).name == "AT Translated Set 2 keyboard"


def test_absent_device(bus: dict[str, FakeInputDevice], mocker: Any) -> None:
    with pytest.raises(DeviceNotFound) as info:
        open_device(parse_url("evdev://?name=Nope"))
    assert info.value.code == "KEYPAD_NOT_PRESENT" and "3 readable" in str(info.value)
    with pytest.raises(DeviceNotFound) as info:
        open_device(parse_url("evdev:///dev/input/by-id/usb-gone-event-kbd"), "READER_NOT_PRESENT")
    assert info.value.code == "READER_NOT_PRESENT"
    mocker.patch("evdev.InputDevice", side_effect=PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(DeviceError) as info:
        open_device(parse_url("evdev:///dev/input/event5"))
    assert info.value.code == "DEVICE_PERMISSION_DENIED" and "group input" in str(info.value)


@pytest.fixture
def make(build_driver: DriverBuilder) -> Callable[..., KeypadDriver]:
    """make(url, **options) -> a KeypadDriver built through the config loader."""
    return build_driver.maker(KeypadDriver, "keypad", "evdev-keypad")


def run(driver: KeypadDriver, name: str, **ctx: Any) -> Result:
    check = next(c for c in driver.checks() if c.name == name)
    timeout = check.timeout or driver.timeout
    context = CheckContext(deadline=time.monotonic() + timeout, **ctx)
    return call_with_timeout(lambda: check.run(context), timeout, name)


def test_capabilities_check(bus: dict[str, FakeInputDevice], make: Any) -> None:
    r = run(make("evdev://?name=POS Keypad"), "keys")
    assert (r.status, r.code) == (Status.OK, "KEYPAD_OK") and r.fields["model"] == "POS Keypad"
    bus["/dev/input/event7"].codes = [c for c in ALL_CODES if c not in (KEYS["KEY_CLEAR"], KEYS["KEY_KP5"])]
    r = run(make("evdev://?name=POS Keypad"), "keys")
    assert (r.status, r.code) == (Status.FAIL, "KEYPAD_MISSING_KEYS")
    assert r.message == "POS Keypad does not report key(s): 5, clear"
    r = run(make("evdev://?name=POS Keypad", keys=["1", "2", "00=KEY_F13"]), "keys")
    assert r.code == "KEYPAD_MISSING_KEYS" and r.facts["missing_keys"] == "00"
    r = run(make("evdev://?name=Missing"), "keys")
    assert (r.status, r.code) == (Status.UNKNOWN, "KEYPAD_NOT_PRESENT")


def test_main_keyboard_codes_are_accepted(bus: dict[str, FakeInputDevice], make: Any) -> None:
    bus["/dev/input/event7"].codes = [KEYS[f"KEY_{d}"] for d in range(10)] + [
        KEYS[n] for n in ("KEY_DOT", "KEY_ENTER", "KEY_ESC", "KEY_DELETE", "KEY_BACKSPACE")]
    assert run(make("evdev://?name=POS Keypad"), "keys").code == "KEYPAD_OK"


def test_a_held_key_that_comes_up_is_fine_one_that_stays_is_stuck(bus: dict[str, FakeInputDevice],
                                                                   make: Any) -> None:
    r_fd, w_fd = os.pipe()
    try:
        dev = bus["/dev/input/event7"]
        dev.fd = r_fd
        dev.held = [[KEYS["KEY_KP7"]], []]  # down at the first look, up after its release event
        os.write(w_fd, pack_event(time.time(), EV_KEY, KEYS["KEY_KP7"], 0) + pack_event(time.time(), 0, 0, 0))
        assert run(make("evdev://?name=POS Keypad"), "keys").code == "KEYPAD_OK"
        dev.held = [[KEYS["KEY_KP7"]]]
        r = run(make("evdev://?name=POS Keypad", stuck_after="200ms"), "keys")
        assert (r.status, r.code) == (Status.FAIL, "KEYPAD_KEY_STUCK") and r.facts["stuck_keys"] == "7"
    finally:
        os.close(r_fd)
        os.close(w_fd)


def test_status_reports_a_key_held_across_two_looks(bus: dict[str, FakeInputDevice], make: Any) -> None:
    bus["/dev/input/event7"].held = [[KEYS["KEY_KPENTER"]]]
    driver = make("evdev://?name=POS Keypad", stuck_after="2s")
    now = [100.0]
    driver._clock = lambda: now[0]
    r = driver.status()  # the first look: down right now (a one-shot status cannot wait)
    assert (r.status, r.code, r.facts["held_keys"]) == (Status.WARN, "KEYPAD_KEY_HELD", "enter")
    now[0] = 101.0
    assert driver.status().code == "KEYPAD_KEY_HELD"  # still down, not yet stuck_after
    now[0] = 161.0
    r = driver.status()
    assert (r.status, r.code, r.facts["stuck_keys"]) == (Status.FAIL, "KEYPAD_KEY_STUCK", "enter")
    assert "held down for over 61 s" in r.message


def test_status_key_pressed_after_the_first_look_is_typing(bus: dict[str, FakeInputDevice], make: Any) -> None:
    dev = bus["/dev/input/event7"]
    dev.held = [[], [KEYS["KEY_KP5"]], [], [KEYS["KEY_KP5"]]]
    driver = make("evdev://?name=POS Keypad", stuck_after="2s")
    now = [100.0]
    driver._clock = lambda: now[0]
    assert driver.status().code == "KEYPAD_OK"
    now[0] = 160.0
    assert driver.status().code == "KEYPAD_OK"  # pressed between heartbeats: a cashier typing
    now[0] = 220.0
    assert driver.status().code == "KEYPAD_OK"
    now[0] = 221.0
    assert driver.status().code == "KEYPAD_OK"
    now[0] = 224.0
    r = driver.status()  # down at two looks 3 s apart: stuck, as before
    assert (r.status, r.code, r.facts["stuck_keys"]) == (Status.FAIL, "KEYPAD_KEY_STUCK", "5")


def test_scan_grabs_and_releases(bus: dict[str, FakeInputDevice], make: Any) -> None:
    r_fd, w_fd = os.pipe()
    dev = bus["/dev/input/event7"]
    dev.fd = r_fd
    try:
        os.write(w_fd, pack_event(time.time(), EV_KEY, KEYS["KEY_KP9"], 1))  # typed before the scan: dropped
        t = time.time()
        records = b"".join(pack_event(t + i, EV_KEY, KEYS["KEY_KP" + k], v) + pack_event(t + i, EV_SYN, SYN_REPORT, 0)
                           for i, k in enumerate("123") for v in (1, 0))
        dev.on_grab = lambda: os.write(w_fd, records)
        r = run(make("evdev://?name=POS Keypad", keys=["1", "2", "3", "9"], key_timeout="1s"), "scan",
                prompt=lambda text: "")
        assert (r.status, r.code) == (Status.FAIL, "KEYPAD_KEY_DEAD"), r
        assert r.facts["dead_keys"] == "9" and r.measurements["keys_pressed"] == 3
        assert dev.calls == ["grab", "ungrab"]
    finally:
        os.close(r_fd)
        os.close(w_fd)


def test_scan_releases_the_grab_when_the_device_vanishes(bus: dict[str, FakeInputDevice], make: Any) -> None:
    r_fd, w_fd = os.pipe()
    dev = bus["/dev/input/event7"]
    dev.fd = r_fd
    os.close(w_fd)

    def unplug() -> None:
        os.close(r_fd)  # the node goes away under the grab: reads fail

    dev.on_grab = unplug
    r = run(make("evdev://?name=POS Keypad", keys=["1"]), "scan")
    assert (r.status, r.code) == (Status.UNKNOWN, "DEVICE_IO_ERROR")
    assert dev.calls == ["grab", "ungrab", "close"]


def test_grab_refused_when_someone_else_holds_it(mocker: Any) -> None:
    fake = mocker.Mock(path="/dev/input/event7")
    fake.name = "POS Keypad"
    fake.grab.side_effect = OSError(errno.EBUSY, "Device or resource busy")
    dev = EvdevDevice(fake)
    with pytest.raises(DeviceError) as info:
        dev.grab()
    assert info.value.code == "KEYPAD_BUSY"
    dev.close()
    fake.ungrab.assert_not_called()  # never grabbed: nothing to release
    fake.close.assert_called_once()
