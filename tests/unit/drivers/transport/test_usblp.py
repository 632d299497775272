"""A USB printer shared with the POS application through the kernel's usblp
(drivers/transport/usblp.py) and the share modes of the usb: opener (usb.py).

This machine has no USB bus and no usblp: sysfs is a fake tree in tmp_path, the usblp node
is a pty (real reads and writes), the two usblp ioctls are replaced at ``usblp._ioctl``,
and pyusb's bus is mocked at ``usb.core.find`` as in the escpos and card-reader USB tests.
"""

from __future__ import annotations

import errno
import os
import select
import struct
import tty
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import usb.core as usb_core  # pyusb is a dependency of posagent
from hypothesis import given
from hypothesis import strategies as st

from posagent.config.urls import parse_url
from posagent.core.base import Status
from posagent.core.errors import DeviceBusy, DeviceError, DeviceIOError, DeviceNotFound, ProtocolError
from posagent.drivers.escpos.status import (
    EscposStatus,
    PortStatus,
    decode_port_status,
    decode_status,
    grade,
    identity_from_device_id,
)
from posagent.drivers.transport import usblp
from posagent.drivers.transport.usb import UsbStream, open_usb
from posagent.drivers.transport.usblp import (
    LPGETSTATUS,
    LPIOC_GET_DEVICE_ID,
    UsblpStream,
    find,
    kernel_driver,
    parse_device_id,
)

VID, PID = 0x04B8, 0x0E15  # Epson TM-T88V
EPSON_ID = b"MFG:EPSON;CMD:ESC/POS;MDL:TM-T88V;CLS:PRINTER;DES:EPSON TM-T88V;SN:J3PF012345;"
BULK = 0x02


# -- a fake sysfs ----------------------------------------------------------------------

def _link(at: Path, target: Path) -> None:
    """A relative symlink, as sysfs has them."""
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(os.path.relpath(target, at.parent))


def add_usb(sysfs: Path, port: str = "1-2", *, vendor: str = "04b8", product: str = "0e15", interface: int = 0,
            driver: str | None = "usblp", lp: str | None = "lp0") -> Path:
    """One USB device at ``port`` with one interface, ``driver`` bound to it (None: none)
    and, when ``lp`` names one, usblp's class device for it. Returns the interface dir."""
    usb_dir = sysfs / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1" / port
    usb_dir.mkdir(parents=True, exist_ok=True)
    (usb_dir / "idVendor").write_text(vendor + "\n")
    (usb_dir / "idProduct").write_text(product + "\n")
    intf = usb_dir / f"{port}:1.{interface}"
    intf.mkdir()
    (intf / "bInterfaceNumber").write_text(f"{interface:02x}\n")
    devices = sysfs / "bus" / "usb" / "devices"
    if not (devices / port).exists():
        _link(devices / port, usb_dir)
    _link(devices / intf.name, intf)
    if driver is not None:
        drv = sysfs / "bus" / "usb" / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        _link(intf / "driver", drv)
    if lp is not None:
        node = intf / "usbmisc" / lp
        node.mkdir(parents=True)
        _link(node / "device", intf)
        _link(sysfs / "class" / "usbmisc" / lp, node)
    return intf


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty fake sysfs, and a fake /dev, both made usblp's roots."""
    root = tmp_path / "sys"
    (root / "class" / "usbmisc").mkdir(parents=True)
    (tmp_path / "dev" / "usb").mkdir(parents=True)
    monkeypatch.setattr(usblp, "SYSFS_ROOT", str(root))
    monkeypatch.setattr(usblp, "DEV_ROOT", str(tmp_path / "dev"))
    return root


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """The printer end of a pty (the master fd) and the path of the node posagent opens,
    ``<fake dev>/usb/lp0``, a symlink to the raw pty slave."""
    master, slave = os.openpty()
    tty.setraw(slave)
    node = tmp_path / "dev" / "usb" / "lp0"
    node.parent.mkdir(parents=True, exist_ok=True)
    node.symlink_to(os.ttyname(slave))
    os.close(slave)  # reopened through the node: nobody else has it open
    yield master, str(node)
    os.close(master)


def read_printer(master: int, n: int) -> bytes:
    """What posagent wrote, as the printer receives it (at most 2 s of waiting)."""
    got = b""
    for _ in range(n):  # bounded: at least one byte per round
        if len(got) >= n or not select.select([master], [], [], 2.0)[0]:
            break
        got += os.read(master, n - len(got))
    return got


def kernel(status: int | None = None, device_id: bytes | None = None,
           error: OSError | None = None) -> tuple[Callable[[int, int, bytes], bytes], list[tuple[int, int]]]:
    """A stand-in for usblp's ioctls: LPGETSTATUS answers ``status`` as usblp writes it
    (an int), LPIOC_GET_DEVICE_ID copies ``device_id`` to the start of the buffer. The
    list records (request, buffer length) of every call."""
    calls: list[tuple[int, int]] = []

    def ioctl(fd: int, request: int, arg: bytes) -> bytes:
        calls.append((request, len(arg)))
        if error is not None:
            raise error
        if request == LPGETSTATUS and status is not None:
            return struct.pack("i", status)
        if request == LPIOC_GET_DEVICE_ID and device_id is not None:
            return (device_id + bytes(len(arg)))[:len(arg)]
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    return ioctl, calls


def with_length(text: bytes) -> bytes:
    """The device ID as usblp hands it over: 2-byte big-endian length counting itself."""
    return (len(text) + 2).to_bytes(2, "big") + text


# -- sysfs discovery -------------------------------------------------------------------

def test_find_the_node_of_a_bound_printer(sysfs: Path, tmp_path: Path) -> None:
    add_usb(sysfs)
    assert find(VID, PID) == str(tmp_path / "dev" / "usb" / "lp0")
    assert find(VID, PID, 0) == str(tmp_path / "dev" / "usb" / "lp0")


def test_find_reads_the_roots_at_call_time_or_from_keywords(sysfs: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    add_usb(sysfs)
    monkeypatch.setattr(usblp, "SYSFS_ROOT", str(tmp_path / "nowhere"))
    assert find(VID, PID) is None
    assert find(VID, PID, sysfs_root=str(sysfs), dev_root="/run/dev") == os.path.join("/run/dev", "usb", "lp0")


def test_find_nothing_when_usblp_is_not_bound(sysfs: Path) -> None:
    assert find(VID, PID) is None  # no usbmisc devices at all
    add_usb(sysfs, driver=None, lp=None)  # the printer is there, usblp is not bound
    add_usb(sysfs, "1-3", vendor="0801", product="0002", driver="usbhid", lp="hiddev0")  # not usblp's
    assert find(VID, PID) is None
    assert find(0x0801, 0x0002) is None


def test_find_nothing_without_sysfs(tmp_path: Path) -> None:
    assert find(VID, PID, sysfs_root=str(tmp_path / "absent")) is None


def test_find_matches_vendor_and_product(sysfs: Path, tmp_path: Path) -> None:
    add_usb(sysfs, "1-1", vendor="0519", product="0003", lp="lp0")  # a Star printer
    add_usb(sysfs, "1-2", lp="lp1")
    assert find(VID, PID) == str(tmp_path / "dev" / "usb" / "lp1")
    assert find(0x0519, 0x0003) == str(tmp_path / "dev" / "usb" / "lp0")
    assert find(VID, 0x0E16) is None
    assert find(0x0E15, VID) is None  # swapped ids


def test_find_by_interface_number(sysfs: Path, tmp_path: Path) -> None:
    add_usb(sysfs, interface=1, lp="lp3")
    assert find(VID, PID, 1) == str(tmp_path / "dev" / "usb" / "lp3")
    assert find(VID, PID, 0) is None
    assert find(VID, PID) == str(tmp_path / "dev" / "usb" / "lp3")  # any interface


def test_find_the_lowest_number_of_two_identical_printers(sysfs: Path, tmp_path: Path) -> None:
    add_usb(sysfs, "1-3", lp="lp10")
    add_usb(sysfs, "1-4", lp="lp2")
    assert find(VID, PID) == str(tmp_path / "dev" / "usb" / "lp2")  # by number, not by name


def test_find_skips_broken_entries(sysfs: Path, tmp_path: Path) -> None:
    (sysfs / "class" / "usbmisc" / "lp0").mkdir()  # no device link
    intf = add_usb(sysfs, lp="lp1")
    (intf.parent / "idVendor").write_text("not hex\n")
    add_usb(sysfs, "1-5", lp="lp2")
    assert find(VID, PID) == str(tmp_path / "dev" / "usb" / "lp2")


def test_kernel_driver_names_the_bound_driver(sysfs: Path) -> None:
    add_usb(sysfs, driver="usbhid", lp=None)
    add_usb(sysfs, "1-3", vendor="0801", product="0002", driver=None, lp=None)
    assert kernel_driver(VID, PID, 0) == "usbhid"
    assert kernel_driver(VID, PID, 1) is None  # no such interface
    assert kernel_driver(0x0801, 0x0002, 0) is None  # nothing bound


# -- the IEEE 1284 device ID -----------------------------------------------------------

def test_device_id_ioctl_numbers() -> None:
    assert LPGETSTATUS == 0x060B
    # _IOC(_IOC_READ, 'P', 1, 1024) on x86/arm: (2 << 30) | (1024 << 16) | (0x50 << 8) | 1
    assert LPIOC_GET_DEVICE_ID == 0x84005001


def test_parse_device_id() -> None:
    buf = (with_length(EPSON_ID) + bytes(1024))[:1024]  # the rest of the buffer is zeros
    assert parse_device_id(buf) == {"manufacturer": "EPSON", "command_set": "ESC/POS", "model": "TM-T88V",
                                    "description": "EPSON TM-T88V", "serial": "J3PF012345"}


def test_parse_device_id_long_keys_spaces_and_case() -> None:
    text = b"Manufacturer: Star Micronics ; COMMAND SET:STAR;model:TSP143;SERIALNUMBER:ABC;DESCRIPTION:Star;"
    assert parse_device_id(with_length(text)) == {"manufacturer": "Star Micronics", "command_set": "STAR",
                                                  "model": "TSP143", "serial": "ABC", "description": "Star"}


def test_parse_device_id_keeps_the_first_of_a_repeated_key_and_skips_empty_values() -> None:
    assert parse_device_id(with_length(b"MFG:;MANUFACTURER:EPSON;MDL:A;MODEL:B;FOO:bar;x")) == {
        "manufacturer": "EPSON", "model": "A"}


def test_parse_device_id_ends_at_its_length_and_at_nul() -> None:
    buf = with_length(b"MFG:EPSON;MDL:TM-T20;") + b"SN:not-part-of-it;"
    assert parse_device_id(buf) == {"manufacturer": "EPSON", "model": "TM-T20"}
    assert parse_device_id(with_length(b"MFG:EPSON;\0MDL:junk;")) == {"manufacturer": "EPSON"}


@pytest.mark.parametrize("buf", [
    b"\x04\x01" + EPSON_ID,          # says 1025 bytes: more than the buffer holds
    b"\xff\xff" + EPSON_ID,          # 65535, either way round
    b"\x00\x01" + EPSON_ID,          # 1: less than its own 2 bytes
    b"\x00\x00" + bytes(30),         # a printer that sent nothing
    b"\x01",                         # not even a length
    b"",
], ids=["too-long", "ffff", "too-short", "zero", "one-byte", "empty"])
def test_parse_device_id_bad_length(buf: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_device_id(buf)


def test_parse_device_id_byte_swapped_length() -> None:
    text = b"MFG:EPSON;MDL:TM-T88IV;"
    buf = (len(text) + 2).to_bytes(2, "little") + text + bytes(100)  # read big-endian: 6400 bytes
    assert parse_device_id(buf) == {"manufacturer": "EPSON", "model": "TM-T88IV"}


@pytest.mark.parametrize("text", [b"\x1b@\x1dI\x01garbage without pairs", b"   ", b";;;", b":value-without-key;"])
def test_parse_device_id_garbage(text: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_device_id(with_length(text))


def test_parse_device_id_non_ascii_bytes() -> None:
    d = parse_device_id(with_length("MFG:SÉIKO;MDL:RP-E10\x07;".encode("latin-1") + b"\xff\xfe;"))
    assert d == {"manufacturer": "S\ufffdIKO", "model": "RP-E10"}  # replaced, control char dropped


@given(st.binary(max_size=1100))
def test_parse_device_id_never_crashes(buf: bytes) -> None:
    try:
        d = parse_device_id(buf)
    except ProtocolError:
        return
    assert set(d) <= {"manufacturer", "model", "command_set", "description", "serial"}
    assert all(isinstance(v, str) and v and v == v.strip() for v in d.values())


def test_identity_from_device_id() -> None:
    ident = identity_from_device_id(parse_device_id(with_length(EPSON_ID)))
    assert (ident.maker, ident.model_name, ident.model) == ("EPSON", "TM-T88V", "EPSON TM-T88V")
    assert not identity_from_device_id({}).answered
    assert identity_from_device_id({"model": "TSP100", "manufacturer": " "}).model == "TSP100"


# -- the port status -------------------------------------------------------------------

@pytest.mark.parametrize("byte, paper, online, error, codes", [
    (0x18, "ok", True, False, []),                       # selected, no error: ready
    (0x1F, "ok", True, False, []),                       # reserved low bits ignored
    (0x38, "end", True, False, ["PAPER_END"]),           # paper empty while still selected
    (0x30, "end", True, True, ["PAPER_END"]),            # paper empty, error line
    (0x20, "end", False, True, ["PAPER_END"]),           # paper empty, offline, error: the cause is named
    (0x08, "ok", False, False, ["PRINTER_OFFLINE"]),     # deselected (offline button)
    (0x10, "ok", True, True, ["PRINTER_OFFLINE"]),       # error line without a cause
    (0x00, "ok", False, True, ["PRINTER_OFFLINE"]),      # deselected with the error line
])
def test_decode_port_status(byte: int, paper: str, online: bool, error: bool, codes: list[str]) -> None:
    st_ = decode_port_status(byte)
    assert isinstance(st_, EscposStatus) and isinstance(st_, PortStatus)
    assert (st_.paper, not st_.offline, st_.error) == (paper, online, error)
    assert st_.port == byte and st_.hex() == f"{byte:02X}"
    assert [f.code for f in grade(st_)] == codes
    assert all(f.status == Status.FAIL for f in grade(st_))


def test_port_status_raw_stands_for_equivalent_dle_eot_replies() -> None:
    for byte in range(256):
        st_ = decode_port_status(byte)
        again = decode_status(bytes(st_.raw))  # valid replies that decode to the same flags
        assert (again.paper, again.offline, again.error, again.cover) == (st_.paper, st_.offline, st_.error, "closed")
        assert grade(again) == grade(st_)


def test_port_status_paper_end_grades_as_dle_eot_paper_end() -> None:
    by_eot = grade(decode_status(bytes((0x1A, 0x32, 0x12, 0x72))))  # the manual's "out of paper"
    by_port = grade(decode_port_status(0x30))
    assert [(f.status, f.code) for f in by_port] == [(f.status, f.code) for f in by_eot] == [
        (Status.FAIL, "PAPER_END")]


@pytest.mark.parametrize("byte", [-1, 256, 0x1018])
def test_decode_port_status_not_a_byte(byte: int) -> None:
    with pytest.raises(ProtocolError):
        decode_port_status(byte)


# -- UsblpStream -----------------------------------------------------------------------

def test_stream_reads_and_writes_the_node(printer: tuple[int, str]) -> None:
    master, node = printer
    with UsblpStream(node) as s:
        assert s.where == {"path": node}
        s.write(b"\x10\x04\x01")  # DLE EOT 1
        assert read_printer(master, 3) == b"\x10\x04\x01"
        os.write(master, b"\x12\x16")
        assert s.read_exact(1, 2.0) == b"\x12"
        assert s.read_available(1.0) == b"\x16"
        assert s.read_available(0.0) == b""


def test_stream_port_status_and_device_id(printer: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    ioctl, calls = kernel(status=0x18, device_id=with_length(EPSON_ID))
    monkeypatch.setattr(usblp, "_ioctl", ioctl)
    with UsblpStream(printer[1]) as s:
        assert s.port_status() == 0x18
        assert s.device_id()["model"] == "TM-T88V"
    assert calls == [(LPGETSTATUS, struct.calcsize("i")), (LPIOC_GET_DEVICE_ID, 1024)]


def test_paper_empty_from_lpgetstatus_grades_paper_end(printer: tuple[int, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Out of paper as TM printers report it over USB: paper empty, still selected, error line.
    monkeypatch.setattr(usblp, "_ioctl", kernel(status=0x20 | 0x10)[0])
    with UsblpStream(printer[1]) as s:
        st_ = decode_port_status(s.port_status())
    assert st_.paper == "end"
    assert [(f.status, f.code) for f in grade(st_)] == [(Status.FAIL, "PAPER_END")]


def test_stream_bad_device_id_is_a_protocol_error(printer: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usblp, "_ioctl", kernel(device_id=b"\x7f\xff" + EPSON_ID)[0])
    with UsblpStream(printer[1]) as s, pytest.raises(ProtocolError) as e:
        s.device_id()
    assert e.value.facts["path"] == printer[1]


def test_real_ioctl_on_something_that_is_not_usblp(printer: tuple[int, str]) -> None:
    with UsblpStream(printer[1]) as s:  # a pty: the kernel answers ENOTTY
        with pytest.raises(DeviceIOError) as e:
            s.port_status()
        assert e.value.facts == {"path": printer[1], "reason": "read_failed", "unsupported": True}
        with pytest.raises(DeviceIOError):
            s.device_id()


@pytest.mark.parametrize("err, kind, code, reason", [
    (errno.EIO, DeviceIOError, "DEVICE_IO_ERROR", "read_failed"),
    (errno.ENODEV, DeviceIOError, "DEVICE_IO_ERROR", "link_lost"),  # unplugged since the open
    (errno.EBUSY, DeviceBusy, "DEVICE_BUSY", "in_use"),
])
def test_ioctl_errors(printer: tuple[int, str], monkeypatch: pytest.MonkeyPatch, err: int,
                      kind: type[DeviceError], code: str, reason: str) -> None:
    monkeypatch.setattr(usblp, "_ioctl", kernel(error=OSError(err, os.strerror(err)))[0])
    with UsblpStream(printer[1]) as s, pytest.raises(kind) as e:
        s.port_status()
    assert (e.value.code, e.value.facts["reason"], e.value.facts["path"]) == (code, reason, printer[1])


@pytest.mark.parametrize("err, kind, code, reason", [
    (errno.ENOENT, DeviceNotFound, "DEVICE_NOT_FOUND", "absent"),
    (errno.ENODEV, DeviceNotFound, "DEVICE_NOT_FOUND", "absent"),
    (errno.EACCES, DeviceError, "DEVICE_PERMISSION_DENIED", "open_failed"),
    (errno.EBUSY, DeviceBusy, "DEVICE_BUSY", "in_use"),  # usblp: one open at a time
    (errno.EIO, DeviceIOError, "DEVICE_IO_ERROR", "open_failed"),
])
def test_open_errors(monkeypatch: pytest.MonkeyPatch, err: int, kind: type[DeviceError], code: str,
                     reason: str) -> None:
    def refuse(path: str, flags: int, mode: int = 0o777) -> int:
        raise OSError(err, os.strerror(err), path)

    monkeypatch.setattr(usblp, "os", types.SimpleNamespace(**{**vars(os), "open": refuse}))
    with pytest.raises(kind) as e:
        UsblpStream("/dev/usb/lp0")
    assert type(e.value) is kind
    assert (e.value.code, e.value.facts) == (code, {"path": "/dev/usb/lp0", "reason": reason,
                                                    **({"group": "lp"} if err == errno.EACCES else {})})


def test_open_a_missing_node(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFound):
        UsblpStream(str(tmp_path / "lp9"))


def test_an_empty_read_is_not_the_end(printer: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """usblp hands a zero-length bulk-in packet over as a read of 0 bytes."""
    master, node = printer
    s = UsblpStream(node)
    os.write(master, b"\x12")  # poll says readable ...
    monkeypatch.setattr(usblp, "os", types.SimpleNamespace(**{**vars(os), "read": lambda fd, n: b""}))
    assert s.read_available(0.5) == b""  # ... and the read gives nothing: no "connection closed"
    assert s.flush_input() == 0  # and the flush ends
    monkeypatch.undo()
    assert s.read_exact(1, 2.0) == b"\x12"
    s.close()


# -- the usb: opener by share mode -----------------------------------------------------

class FakeEndpoint:
    def __init__(self, address: int) -> None:
        self.bEndpointAddress = address
        self.bmAttributes = BULK


def fake_device(mocker: Any, *, bound: bool) -> Any:
    """pyusb's Device as UsbStream uses it, with a kernel driver bound or not."""
    dev = mocker.MagicMock(idVendor=VID, idProduct=PID)
    dev.is_kernel_driver_active.return_value = bound
    dev.get_active_configuration.return_value = {(0, 0): [FakeEndpoint(0x01), FakeEndpoint(0x82)]}
    return dev


@pytest.fixture
def bus(mocker: Any) -> dict[str, Any]:
    """The mocked bus: ``bus["device"]`` is what usb.core.find returns; the usb.util calls
    that would reach libusb are mocks (``bus["claim"]`` ...)."""
    state: dict[str, Any] = {"device": None}

    def find_dev(idVendor: int, idProduct: int, **_: Any) -> Any:
        dev = state["device"]
        return dev if dev is not None and (dev.idVendor, dev.idProduct) == (idVendor, idProduct) else None

    mocker.patch.object(usb_core, "find", side_effect=find_dev)
    state["claim"] = mocker.patch("usb.util.claim_interface")
    state["release"] = mocker.patch("usb.util.release_interface")
    state["dispose"] = mocker.patch("usb.util.dispose_resources")
    return state


URL = parse_url("usb://04b8:0e15")


def test_guest_uses_usblp_and_never_detaches(sysfs: Path, printer: tuple[int, str], bus: dict[str, Any],
                                             mocker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    add_usb(sysfs)  # usblp bound: /dev/usb/lp0 is the POS application's way to the printer
    bus["device"] = dev = fake_device(mocker, bound=True)
    monkeypatch.setattr(usblp, "_ioctl", kernel(status=0x18, device_id=with_length(EPSON_ID))[0])
    master, node = printer
    s = open_usb(URL, share="guest", keep={}, timeout=3.0)
    try:
        assert isinstance(s, UsblpStream) and s.where == {"path": node}
        s.write(b"\x10\x04\x04")
        assert read_printer(master, 3) == b"\x10\x04\x04"
        os.write(master, b"\x12")
        assert s.read_exact(1, 2.0) == b"\x12"
        assert decode_port_status(s.port_status()).paper == "ok"
        assert identity_from_device_id(s.device_id()).model == "EPSON TM-T88V"
    finally:
        s.close()
    dev.detach_kernel_driver.assert_not_called()
    dev.set_configuration.assert_not_called()
    bus["claim"].assert_not_called()


def test_guest_usblp_on_the_given_interface_only(sysfs: Path, bus: dict[str, Any], mocker: Any) -> None:
    add_usb(sysfs, interface=1, lp="lp0")
    bus["device"] = dev = fake_device(mocker, bound=False)
    s = open_usb(parse_url("usb://04b8:0e15?interface=0"), share="guest")  # usblp is on interface 1
    assert isinstance(s, UsbStream)
    s.close()
    dev.detach_kernel_driver.assert_not_called()


def test_guest_busy_when_usblp_is_open_elsewhere(sysfs: Path, tmp_path: Path, bus: dict[str, Any],
                                                 mocker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    add_usb(sysfs)
    bus["device"] = dev = fake_device(mocker, bound=True)
    real_open = os.open

    def busy(path: str, flags: int, mode: int = 0o777) -> int:
        if path.endswith("lp0"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(usblp, "os", types.SimpleNamespace(**{**vars(os), "open": busy}))
    with pytest.raises(DeviceBusy) as e:
        open_usb(URL, share="guest")
    assert e.value.facts == {"path": str(tmp_path / "dev" / "usb" / "lp0"), "reason": "in_use"}
    dev.detach_kernel_driver.assert_not_called()


def test_guest_without_usblp_and_another_driver_bound_is_busy(sysfs: Path, bus: dict[str, Any],
                                                              mocker: Any) -> None:
    add_usb(sysfs, driver="usbhid", lp=None)
    bus["device"] = dev = fake_device(mocker, bound=True)
    with pytest.raises(DeviceBusy) as e:
        open_usb(URL, share="guest")
    assert e.value.code == "DEVICE_BUSY"
    assert "bound to usbhid" in str(e.value) and 'share = "owner"' in str(e.value)
    assert e.value.facts == {"usb_id": "04b8:0e15", "reason": "in_use", "driver": "usbhid"}
    dev.detach_kernel_driver.assert_not_called()
    dev.attach_kernel_driver.assert_not_called()
    dev.set_configuration.assert_not_called()


def test_guest_busy_names_no_driver_sysfs_does_not_know(sysfs: Path, bus: dict[str, Any], mocker: Any) -> None:
    bus["device"] = fake_device(mocker, bound=True)
    with pytest.raises(DeviceBusy, match="bound to a kernel driver"):
        open_usb(URL, share="guest")


def test_guest_without_any_kernel_driver_claims_without_detaching(sysfs: Path, bus: dict[str, Any],
                                                                  mocker: Any) -> None:
    bus["device"] = dev = fake_device(mocker, bound=False)
    s = open_usb(URL, share="guest")
    assert isinstance(s, UsbStream) and (s.out_ep, s.in_ep) == (0x01, 0x82)
    bus["claim"].assert_called_once_with(dev, 0)
    dev.set_configuration.assert_not_called()  # configured already: left as it is
    s.close()
    dev.detach_kernel_driver.assert_not_called()
    dev.attach_kernel_driver.assert_not_called()
    bus["dispose"].assert_called_once_with(dev)


def test_guest_sets_the_configuration_of_an_unconfigured_device(sysfs: Path, bus: dict[str, Any],
                                                                mocker: Any) -> None:
    bus["device"] = dev = fake_device(mocker, bound=False)
    config = dev.get_active_configuration.return_value
    dev.get_active_configuration.side_effect = [usb_core.USBError("Configuration not set"), config]
    open_usb(URL, share="guest").close()
    dev.set_configuration.assert_called_once_with()


def test_guest_busy_when_another_program_claimed_the_interface(sysfs: Path, bus: dict[str, Any],
                                                               mocker: Any) -> None:
    bus["device"] = fake_device(mocker, bound=False)
    bus["claim"].side_effect = usb_core.USBError("Resource busy", errno=errno.EBUSY)
    with pytest.raises(DeviceBusy) as e:
        open_usb(URL, share="guest")
    assert e.value.facts == {"usb_id": "04b8:0e15", "reason": "in_use", "interface": 0}


@pytest.mark.parametrize("share", ["owner", "proxy"])
def test_owner_detaches_and_attaches_again_on_close(sysfs: Path, bus: dict[str, Any], mocker: Any,
                                                    share: str) -> None:
    add_usb(sysfs)  # usblp bound: an owner takes the printer from it anyway
    bus["device"] = dev = fake_device(mocker, bound=True)
    events: list[str] = []
    dev.detach_kernel_driver.side_effect = lambda i: events.append(f"detach {i}")
    dev.attach_kernel_driver.side_effect = lambda i: events.append(f"attach {i}")
    bus["release"].side_effect = lambda d, i: events.append(f"release {i}")
    bus["dispose"].side_effect = lambda d: events.append("dispose")
    s = open_usb(URL, share=share)
    assert isinstance(s, UsbStream)
    assert events == ["detach 0"]
    dev.set_configuration.assert_called_once_with()
    s.close()
    assert events == ["detach 0", "release 0", "attach 0", "dispose"]
    s.close()  # a second close does nothing
    assert events == ["detach 0", "release 0", "attach 0", "dispose"]


def test_owner_without_kernel_driver_attaches_nothing(bus: dict[str, Any], mocker: Any) -> None:
    bus["device"] = dev = fake_device(mocker, bound=False)
    open_usb(URL).close()  # the default is an owner's open, as before
    dev.detach_kernel_driver.assert_not_called()
    dev.attach_kernel_driver.assert_not_called()
    bus["release"].assert_not_called()


def test_owner_close_never_raises(bus: dict[str, Any], mocker: Any, caplog: pytest.LogCaptureFixture) -> None:
    bus["device"] = dev = fake_device(mocker, bound=True)
    s = open_usb(URL, share="owner")
    bus["release"].side_effect = usb_core.USBError("No such device (it may have been disconnected)", errno=19)
    dev.attach_kernel_driver.side_effect = usb_core.USBError("No such device", errno=19)
    bus["dispose"].side_effect = RuntimeError("backend gone")
    with caplog.at_level("DEBUG", logger="posagent.drivers.transport.usb"):
        s.close()
    dev.attach_kernel_driver.assert_called_once_with(0)
    assert "attaching the kernel driver" in caplog.text


def test_owner_open_that_fails_after_detaching_attaches_again(bus: dict[str, Any], mocker: Any) -> None:
    bus["device"] = dev = fake_device(mocker, bound=True)
    dev.set_configuration.side_effect = usb_core.USBError("Access denied (insufficient permissions)", errno=13)
    with pytest.raises(DeviceError) as e:
        open_usb(URL, share="owner")
    assert e.value.code == "DEVICE_PERMISSION_DENIED"
    dev.detach_kernel_driver.assert_called_once_with(0)
    dev.attach_kernel_driver.assert_called_once_with(0)  # usblp is given back at once


def test_not_on_the_bus(sysfs: Path, bus: dict[str, Any]) -> None:
    for share in ("guest", "owner"):
        with pytest.raises(DeviceNotFound):
            open_usb(URL, share=share)


# -- the escpos driver as a guest on a usblp-bound printer ------------------------------

def test_escpos_guest_reads_paper_end_and_identity_without_writing_a_byte(
        sysfs: Path, printer: tuple[int, str], bus: dict[str, Any], mocker: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The escpos driver built through the real config loader (share defaults to guest):
    paper-empty from LPGETSTATUS is ``paper: end`` / PAPER_END, the model comes from the
    IEEE 1284 ID, no detach is ever called, and not one byte reaches the printer."""
    from posagent.drivers.escpos import EscposDriver
    from tests.conftest import device_entry, device_set, driver_of

    add_usb(sysfs)
    bus["device"] = dev = fake_device(mocker, bound=True)
    ioctl, calls = kernel(status=0x20 | 0x10 | 0x08, device_id=with_length(EPSON_ID))  # paper empty, selected
    monkeypatch.setattr(usblp, "_ioctl", ioctl)
    master, _node = printer
    with device_set(tmp_path, device_entry("receipt", "escpos", "usb://04b8:0e15")) as devices:
        driver = driver_of(devices, "receipt", EscposDriver)
        assert driver.share == "guest"
        r = driver.status()
        ident = driver.read_identity()
    assert (r.status, r.code, r.fields["paper"]) == (Status.FAIL, "PAPER_END", "end")
    assert ident.model == "EPSON TM-T88V"
    assert {req for req, _n in calls} == {LPGETSTATUS, LPIOC_GET_DEVICE_ID}
    os.set_blocking(master, False)
    try:
        written = os.read(master, 64)
    except OSError as e:  # EIO: nobody has the node open any more, and nothing is waiting
        assert e.errno in (errno.EIO, errno.EAGAIN)
        written = b""
    assert written == b""  # not one byte reached the printer
    dev.detach_kernel_driver.assert_not_called()
