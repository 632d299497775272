"""``posagent.inventory/1``: the system part read from fake ``/dev`` and sysfs trees (this
machine has no USB bus, so the tree a kernel would show is built in tmp_path), the digest,
the daemon's decision to send (start, change, daily) and the built message's schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from posagent.config.loader import validate
from posagent.config.model import Config
from posagent.core.base import Driver, Result
from posagent.daemon.inventory import CHECK_EVERY, DAY, InventoryTracker
from posagent.fleet import inventory, messages
from posagent.fleet.inventory import Roots
from posagent.fleet.messages import SCHEMA_FILES, load_schema
from posagent.selftest.devices import DeviceSet


def usb_device(sys_root: Path, bus_id: str, vendor: str, product_id: str, **strings: str) -> Path:
    """A USB device as sysfs shows it: bus/usb/devices/<bus_id> -> devices/.../<bus_id>."""
    real = sys_root / "devices" / "pci0000:00" / "usb1" / bus_id
    real.mkdir(parents=True)
    (real / "idVendor").write_text(vendor + "\n")
    (real / "idProduct").write_text(product_id + "\n")
    for key, value in strings.items():
        (real / key).write_text(value + "\n")
    links = sys_root / "bus" / "usb" / "devices"
    links.mkdir(parents=True, exist_ok=True)
    (links / bus_id).symlink_to(real)
    return real


def fake_box(tmp_path: Path) -> Roots:
    """/dev with two UARTs, a USB serial adapter and a CDC-ACM device; sysfs with a root
    hub, the adapter (an FTDI with serial number) and a receipt printer."""
    dev, sys_root = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    for name in ("ttyS0", "ttyS1", "ttyS10", "ttyUSB0", "ttyACM0", "tty0", "null"):
        (dev / name).write_text("")
    hub = sys_root / "devices" / "pci0000:00" / "usb1"
    hub.mkdir(parents=True)
    (hub / "idVendor").write_text("1d6b\n")
    (hub / "idProduct").write_text("0002\n")
    (sys_root / "bus" / "usb" / "devices").mkdir(parents=True)
    (sys_root / "bus" / "usb" / "devices" / "usb1").symlink_to(hub)
    ftdi = usb_device(sys_root, "1-1.2", "0403", "6001", manufacturer="FTDI", product="FT232R USB UART",
                      serial="A50285BI")
    usb_device(sys_root, "1-1.3", "04B8", "0e15", manufacturer="EPSON", product="TM-T20II\x07")
    iface = ftdi / "1-1.2:1.0" / "ttyUSB0"
    iface.mkdir(parents=True)
    (sys_root / "class" / "tty").mkdir(parents=True)
    (sys_root / "class" / "tty" / "ttyUSB0").mkdir()
    (sys_root / "class" / "tty" / "ttyUSB0" / "device").symlink_to(ftdi / "1-1.2:1.0")
    machine = tmp_path / "machine-id"
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    return Roots(dev=str(dev), sys=str(sys_root), machine_id=str(machine))


def config_of(tmp_path: Path, devices: str = "") -> Config:
    raw = {"agent": {"terminal_id": "SH-0042", "state_dir": str(tmp_path / "state"), "check_timeout": "3s"},
           "device": [{"name": "adapter-ups", "driver": "megatec", "url": "serial:///dev/ttyUSB0"},
                      {"name": "printer", "driver": "escpos", "url": "usb://04b8:0e15"}]}
    return validate(raw, str(tmp_path / "posagent.toml"))


class Ups(Driver):
    name = "fake-ups"
    family = "ups"


def test_serial_ports_present_sorted_with_their_usb_device(tmp_path: Path) -> None:
    roots = fake_box(tmp_path)
    ports = inventory.serial_ports(roots.dev, roots.sys)
    assert [p["path"] for p in ports] == ["/dev/ttyACM0", "/dev/ttyS0", "/dev/ttyS1", "/dev/ttyS10", "/dev/ttyUSB0"]
    assert {p["path"]: p["usb"] for p in ports}["/dev/ttyUSB0"] == "1-1.2"
    assert {p["path"]: p["usb"] for p in ports}["/dev/ttyS0"] is None
    assert inventory.serial_ports(str(tmp_path / "absent"), str(tmp_path / "absent")) == []


def test_usb_devices_from_sysfs_without_hubs_or_interfaces(tmp_path: Path) -> None:
    roots = fake_box(tmp_path)
    usb = inventory.usb_devices(roots.sys)
    assert usb == [
        {"bus_id": "1-1.2", "vendor_id": "0403", "product_id": "6001", "manufacturer": "FTDI",
         "product": "FT232R USB UART", "serial": "A50285BI"},
        {"bus_id": "1-1.3", "vendor_id": "04b8", "product_id": "0e15", "manufacturer": "EPSON",
         "product": "TM-T20II", "serial": None},  # lower-cased id, control character dropped, no serial file
    ]
    assert inventory.usb_devices(str(tmp_path / "absent")) == []


def test_machine_id_is_an_app_specific_hash_never_the_id(tmp_path: Path) -> None:
    roots = fake_box(tmp_path)
    got = inventory.machine_id(roots.machine_id)
    assert got is not None and len(got) == 32 and got != "0123456789abcdef0123456789abcdef"
    assert got == inventory.machine_id(roots.machine_id)  # stable
    assert got[12] == "4"  # a v4 UUID, as systemd's app-specific ids
    (tmp_path / "bad").write_text("not hex\n")
    assert inventory.machine_id(str(tmp_path / "bad")) is None
    assert inventory.machine_id(str(tmp_path / "none")) is None


def test_devices_take_identity_from_the_driver_and_usb_from_sysfs(tmp_path: Path) -> None:
    roots = fake_box(tmp_path)
    config = config_of(tmp_path)
    ups = Ups.__new__(Ups)
    results = {"adapter-ups": ("megatec", Result.ok("UPS_OK", "on mains", fields={"model": " SIMPOWER 650 "})),
               "printer": ("escpos", Result.unknown("PRINTER_NO_RESPONSE", "silent"))}
    ports = inventory.serial_ports(roots.dev, roots.sys)
    usb = inventory.usb_devices(roots.sys)
    devices = inventory.devices_part(config, {"adapter-ups": ups, "printer": None}, results, ports, usb)
    assert devices["adapter-ups"]["model"] == "SIMPOWER 650"
    assert devices["adapter-ups"]["family"] == "ups" and devices["adapter-ups"]["transport"] == "serial"
    # the serial port's tty is found on its USB adapter; the usb:// printer by vendor:product
    assert devices["adapter-ups"]["usb"]["serial"] == "A50285BI"
    assert devices["printer"]["usb"]["product"] == "TM-T20II"
    assert devices["printer"]["family"] is None  # no driver object (could not be built)
    # a device silent now keeps what it said before, a device answering is taken as it is
    before = {"printer": {"driver": "escpos", "model": "TM-T20II", "maker": "EPSON", "firmware": "1.0",
                          "serial": None}}
    again = inventory.devices_part(config, {"adapter-ups": ups, "printer": None}, results, ports, usb, before)
    assert again["printer"]["model"] == "TM-T20II" and again["printer"]["firmware"] == "1.0"


def test_digest_changes_with_the_content_only(tmp_path: Path) -> None:
    roots = fake_box(tmp_path)
    config = config_of(tmp_path)
    one = inventory.collect(config, {}, {}, roots)
    two = inventory.collect(config, {}, {}, roots)
    assert one["digest"] == two["digest"] == inventory.digest(one)
    usb_device(Path(roots.sys), "1-1.4", "0c2e", "0b61", product="Scanner")
    three = inventory.collect(config, {}, {}, roots)
    assert three["digest"] != one["digest"]


def validator() -> Draft202012Validator:
    schemas = {name: load_schema(name) for name in SCHEMA_FILES}
    registry: Registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    Draft202012Validator.check_schema(schemas["inventory"])
    return Draft202012Validator(schemas["inventory"], registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_built_message_validates_against_the_shipped_schema(tmp_path: Path) -> None:
    roots = fake_box(tmp_path)
    config = config_of(tmp_path)
    with DeviceSet(config) as devices:
        drivers: dict[str, Any] = {n: devices.get(n) for n in devices.names()}
        content = inventory.collect(config, drivers, {}, roots)
    message = messages.preview(messages.inventory(config, content, "start"), 7)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(message)]
    assert not errors, errors
    assert message["schema"] == "posagent.inventory/1" and message["seq"] == 7
    assert len(message["serial_ports"]) == 5 and len(message["usb"]) == 2


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def test_tracker_sends_at_start_on_change_and_daily_not_on_every_round(tmp_path: Path) -> None:
    roots = fake_box(tmp_path)
    config = config_of(tmp_path)
    os.makedirs(config.agent.state_dir)
    clock = Clock()
    sent: list[tuple[str, dict[str, Any]]] = []

    def commit(finalize: messages.Finalizer, trigger: str) -> bool:
        sent.append((trigger, messages.preview(finalize, len(sent) + 1)))
        return True

    tracker = InventoryTracker(config, roots, wall=clock, boot_id=lambda: "boot-1")
    with DeviceSet(config) as devices:
        assert tracker.after_round(devices, {}, commit, now=0.0) == "start"
        for t in (1.0, 60.0, CHECK_EVERY + 1):  # unchanged: nothing, even at a look
            assert tracker.after_round(devices, {}, commit, now=t) is None
        usb_device(Path(roots.sys), "1-1.4", "0c2e", "0b61", product="Scanner")
        assert tracker.after_round(devices, {}, commit, now=CHECK_EVERY + 2) is None  # not looked again yet
        assert tracker.after_round(devices, {}, commit, now=2 * CHECK_EVERY + 2) == "change"
        assert sent[-1][1]["usb"][-1]["product"] == "Scanner"
        # a restart in the same boot with the same inventory sends nothing; a new boot does
        again = InventoryTracker(config, roots, wall=clock, boot_id=lambda: "boot-1")
        assert again.after_round(devices, {}, commit, now=0.0) is None
        rebooted = InventoryTracker(config, roots, wall=clock, boot_id=lambda: "boot-2")
        assert rebooted.after_round(devices, {}, commit, now=0.0) == "start"
        # daily: at this terminal's instant of the day, between 12 and 36 h after the last
        due = rebooted.next_daily()
        assert DAY / 2 <= due - clock.t <= 1.5 * DAY
        clock.t = due - 1
        assert rebooted.after_round(devices, {}, commit, now=3 * CHECK_EVERY) is None
        clock.t = due
        assert rebooted.after_round(devices, {}, commit, now=3 * CHECK_EVERY + 1) == "daily"
    assert [t for t, _m in sent] == ["start", "change", "start", "daily"]
