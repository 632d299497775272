"""A USB printer through the kernel's ``usblp`` driver (``/dev/usb/lpN``), shared with the
POS application instead of taken from it.

On a terminal the POS application prints through ``usblp`` (directly or through CUPS).
Detaching ``usblp`` to talk to the printer with libusb (usb.py, ``share = "owner"``)
removes ``/dev/usb/lp0`` under the POS application's feet, so a guest
(``share = "guest"``) uses the same character device the application uses, for one
exchange at a time:

- ``find(vendor, product)`` names the node of the printer through sysfs:
  ``/sys/class/usbmisc/lpN/device`` is the USB interface usblp is bound to, and the
  interface's parent directory is the USB device with its ``idVendor`` / ``idProduct``
  (hex text). ``kernel_driver()`` names the driver bound to an interface (for messages).
- ``UsblpStream`` is a ``ByteStream`` on the node (usblp supports read, write and poll on
  a non-blocking fd) with the two usblp ioctls a health check needs and which never touch
  the print data: ``port_status()`` (``LPGETSTATUS``: the USB printer class
  GET_PORT_STATUS byte; decoded by ``escpos.status.decode_port_status``) and
  ``device_id()`` (``LPIOC_GET_DEVICE_ID``: the IEEE 1284 device ID, parsed).

usblp lets one process at a time open the node: while the POS application (or CUPS's usb
backend) has it open, ``open`` fails with EBUSY, which is ``DeviceBusy`` here, exactly
the "another program holds the device" of a serial port's lock.

The roots ``SYSFS_ROOT`` and ``DEV_ROOT`` are read at call time (or given as keywords) so
tests can build a fake sysfs; every ioctl goes through ``_ioctl`` so tests can replace the
kernel there (test machines have no USB bus and no usblp).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct

from posagent.core.errors import DeviceBusy, DeviceError, DeviceIOError, DeviceNotFound, ProtocolError
from posagent.drivers.transport.stream import ByteStream

#: Where sysfs and the device nodes are; module constants read at every call, so tests
#: (and a chroot) can point them elsewhere.
SYSFS_ROOT = "/sys"
DEV_ROOT = "/dev"

#: ``LPGETSTATUS`` (include/uapi/linux/lp.h): an old-style ioctl number; usblp writes the
#: GET_PORT_STATUS byte into an ``int`` out-parameter.
LPGETSTATUS = 0x060B
#: usblp's new-style ioctls are ``_IOC(dir, 'P', nr, len)``; nr 1 reads the device ID.
IOCNR_GET_DEVICE_ID = 1
#: The buffer asked for: usblp keeps at most 1023 bytes of the ID (USBLP_DEVICE_ID_SIZE
#: - 1), and 1024 is also the largest buffer fcntl.ioctl passes by copy.
DEVICE_ID_SIZE = 1024

#: IEEE 1284 device ID keys (long and short forms) -> the names device_id() returns.
ID_KEYS: dict[str, str] = {
    "MFG": "manufacturer", "MANUFACTURER": "manufacturer",
    "MDL": "model", "MODEL": "model",
    "CMD": "command_set", "COMMAND SET": "command_set",
    "DES": "description", "DESCRIPTION": "description",
    "SN": "serial", "SERN": "serial", "SERIALNUMBER": "serial",
}

#: usblp has 16 minors; this bounds a scan of a (possibly fake or huge) sysfs directory.
_MAX_ENTRIES = 4096
_LP_NAME = re.compile(r"lp(\d+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _ioc_read(type_char: str, nr: int, size: int) -> int:
    """``_IOC(_IOC_READ, type, nr, size)`` as asm-generic/ioctl.h lays it out (x86, arm,
    arm64, riscv): 2 direction bits, 14 size bits, 8 type bits, 8 number bits. powerpc,
    mips and sparc lay it out otherwise; POS terminals are x86 or arm."""
    if not 0 <= size < (1 << 14):
        raise ValueError(f"ioctl size {size} does not fit 14 bits")
    return (2 << 30) | (size << 16) | (ord(type_char) << 8) | nr


#: ``LPIOC_GET_DEVICE_ID(DEVICE_ID_SIZE)``.
LPIOC_GET_DEVICE_ID = _ioc_read("P", IOCNR_GET_DEVICE_ID, DEVICE_ID_SIZE)


def _ioctl(fd: int, request: int, arg: bytes) -> bytes:
    """``fcntl.ioctl`` with a buffer passed by copy: the kernel's answer comes back as bytes
    of the buffer's length. The one place this module calls the kernel's ioctl, so tests
    replace exactly this."""
    return fcntl.ioctl(fd, request, arg)


# -- sysfs ------------------------------------------------------------------------------

def _read_hex(path: str) -> int | None:
    """A sysfs attribute holding hex text (``04b8``), or None when absent or not hex."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(64).strip()
        return int(text, 16)
    except (OSError, ValueError):
        return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)[:_MAX_ENTRIES]
    except OSError:
        return []


def _matches(intf_dir: str, vendor: int, product: int, interface: int | None) -> bool:
    """Whether the USB interface directory ``intf_dir`` belongs to vendor:product (and is
    interface ``interface`` when one is given). The USB device is the parent directory."""
    if interface is not None and _read_hex(os.path.join(intf_dir, "bInterfaceNumber")) != interface:
        return False
    usb_dir = os.path.dirname(intf_dir)
    return (_read_hex(os.path.join(usb_dir, "idVendor")) == vendor
            and _read_hex(os.path.join(usb_dir, "idProduct")) == product)


def find(vendor: int, product: int, interface: int | None = None, *,
         sysfs_root: str | None = None, dev_root: str | None = None) -> str | None:
    """The usblp node (``<DEV_ROOT>/usb/lpN``) of the printer vendor:product, or None when
    usblp is bound to no interface of such a device. With two identical printers the one
    with the lowest lp number is named. The node itself is not checked: udev may create it
    a moment after the binding, and opening it reports what is wrong (``UsblpStream``)."""
    sysfs = SYSFS_ROOT if sysfs_root is None else sysfs_root
    dev = DEV_ROOT if dev_root is None else dev_root
    cls = os.path.join(sysfs, "class", "usbmisc")  # usblp's class; hiddevN lives here too
    numbered = []
    for name in _listdir(cls):
        m = _LP_NAME.fullmatch(name)
        if m:
            numbered.append((int(m.group(1)), name))
    for _n, name in sorted(numbered):
        intf_dir = os.path.realpath(os.path.join(cls, name, "device"))
        if _matches(intf_dir, vendor, product, interface):
            return os.path.join(dev, "usb", name)
    return None


def kernel_driver(vendor: int, product: int, interface: int = 0, *, sysfs_root: str | None = None) -> str | None:
    """The name of the kernel driver bound to that interface of vendor:product (``usblp``,
    ``usbhid`` ...), from ``/sys/bus/usb/devices``; None when none is bound or sysfs does
    not say. Only for messages: whether a driver is bound is asked of libusb."""
    sysfs = SYSFS_ROOT if sysfs_root is None else sysfs_root
    devices = os.path.join(sysfs, "bus", "usb", "devices")
    for name in sorted(_listdir(devices)):
        if ":" not in name:  # "1-2" is a device, "1-2:1.0" one of its interfaces
            continue
        intf_dir = os.path.realpath(os.path.join(devices, name))
        if _matches(intf_dir, vendor, product, interface):
            link = os.path.join(intf_dir, "driver")
            return os.path.basename(os.path.realpath(link)) if os.path.islink(link) else None
    return None


# -- the IEEE 1284 device ID ----------------------------------------------------------

def parse_1284(text: str) -> dict[str, str]:
    """``KEY:value;KEY:value;`` -> {KEY: value}: keys upper-cased, both sides stripped,
    control characters dropped, the first of a repeated key kept. ProtocolError when not
    one ``key:value`` pair is there (the buffer is not a device ID)."""
    out: dict[str, str] = {}
    pairs = 0
    for item in text.split(";"):
        key, sep, value = item.partition(":")
        key = _CONTROL.sub("", key).strip().upper()
        if not sep or not key:
            continue
        pairs += 1
        out.setdefault(key, _CONTROL.sub("", value).strip())
    if not pairs:
        raise ProtocolError(f"device ID is not IEEE 1284 KEY:value; pairs ({len(text)} characters)")
    return out


def parse_device_id(buf: bytes) -> dict[str, str]:
    """What ``LPIOC_GET_DEVICE_ID`` wrote: a 2-byte big-endian length that counts itself,
    then the ID. Returns the keys of ``ID_KEYS`` under their normalised names
    (manufacturer, model, command_set, description, serial), those the ID has.

    A length above the buffer that reads as a fitting length in little-endian is taken
    that way: some printers send it byte-swapped (CUPS's usb backend accepts them the same
    way). Otherwise a length above the buffer, or below 2, is a ProtocolError. Bytes that
    are not ASCII (the standard's alphabet) become U+FFFD rather than an error; the ID
    ends at its length or at the first NUL."""
    if len(buf) < 2:
        raise ProtocolError(f"device ID of {len(buf)} bytes has no length prefix")
    length = int.from_bytes(buf[:2], "big")
    if length > len(buf):
        swapped = int.from_bytes(buf[:2], "little")
        if 2 <= swapped <= len(buf):
            length = swapped
    if not 2 <= length <= len(buf):
        raise ProtocolError(f"device ID length prefix {length} does not fit the {len(buf)}-byte buffer",
                            facts={"length": length})
    body = buf[2:length].split(b"\0", 1)[0]
    if not body.strip():
        raise ProtocolError("the printer sent an empty device ID", facts={"length": length})
    found = parse_1284(body.decode("ascii", errors="replace"))
    out: dict[str, str] = {}
    for key, value in found.items():
        name = ID_KEYS.get(key)
        if name and value and name not in out:
            out[name] = value
    return out


# -- the stream -----------------------------------------------------------------------

def _error(e: OSError, path: str, doing: str, *, opening: bool) -> DeviceError:
    """The posagent error for ``e`` raised while ``doing`` on ``path``.

    ENOENT/ENODEV/ENXIO at open: the printer is not there (DeviceNotFound). On an fd that
    was open, ENODEV means it was unplugged since: a lost link (DeviceIOError), so a
    ``Link`` drops the stream and its reopen says not-found. EACCES/EPERM: the node is
    ``root:lp`` 0660. EBUSY: usblp admits one open at a time and another program has it.
    The ``reason`` facts are tokens with a phrase in core/codes.py REASONS; a failed
    ioctl is ``read_failed`` (the printer's status or ID cannot be read)."""
    code = e.errno
    why = os.strerror(code) if code else str(e)
    failed = "open_failed" if opening else "read_failed"  # tokens of core/codes.py REASONS
    if code == errno.EBUSY:
        return DeviceBusy(f"{path} is open in another program (the POS application or CUPS)",
                          facts={"path": path, "reason": "in_use"})
    if code in (errno.EACCES, errno.EPERM):
        return DeviceError(f"no access to {path} (add the posagent user to group lp)",
                           code="DEVICE_PERMISSION_DENIED", facts={"path": path, "reason": failed, "group": "lp"})
    if opening and code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return DeviceNotFound(f"{path} does not exist (printer unplugged or usblp not loaded)",
                              facts={"path": path, "reason": "absent"})
    if code in (errno.ENODEV, errno.ENXIO):
        return DeviceIOError(f"{path}: {doing} failed: printer unplugged ({why})",
                             facts={"path": path, "reason": "link_lost"})
    if code in (errno.ENOTTY, errno.EINVAL):
        return DeviceIOError(f"{path}: {doing} is not supported there (not a usblp device?)",
                             facts={"path": path, "reason": failed, "unsupported": True})
    return DeviceIOError(f"{path}: {doing} failed: {why}", facts={"path": path, "reason": failed})


class UsblpStream(ByteStream):
    """A ByteStream on a usblp node, with the printer's port status and device ID."""

    def __init__(self, path: str) -> None:
        try:
            # O_NOCTTY: harmless on a usblp node, and a tty given by mistake (or a test's
            # pty) does not become our controlling terminal.
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            raise _error(e, path, "open", opening=True) from e
        super().__init__(fd, path, where={"path": path})

    def port_status(self) -> int:
        """The GET_PORT_STATUS byte (``LPGETSTATUS``): 0x20 paper empty, 0x10 selected,
        0x08 not-error (decoded by ``escpos.status.decode_port_status``). A control
        transfer: it does not wait behind print data."""
        try:
            out = _ioctl(self.fd, LPGETSTATUS, bytes(struct.calcsize("i")))
        except OSError as e:
            raise _error(e, self.name, "port_status", opening=False) from e
        (value,) = struct.unpack("i", out[:struct.calcsize("i")])
        return int(value)

    def device_id(self) -> dict[str, str]:
        """The printer's IEEE 1284 device ID (``LPIOC_GET_DEVICE_ID``), parsed by
        ``parse_device_id``: manufacturer, model, command_set, description, serial."""
        try:
            buf = _ioctl(self.fd, LPIOC_GET_DEVICE_ID, bytes(DEVICE_ID_SIZE))
        except OSError as e:
            raise _error(e, self.name, "device_id", opening=False) from e
        try:
            return parse_device_id(bytes(buf))
        except ProtocolError as e:
            e.facts.setdefault("path", self.name)
            raise

    def _read_some(self, fd: int, n: int) -> bytes:
        """A read of 0 bytes is a zero-length bulk-in packet the printer sent, not an end of
        file (a character device has none; an unplugged printer fails with ENODEV)."""
        try:
            chunk = os.read(fd, n)
        except BlockingIOError:
            return b""
        except OSError as e:
            raise _error(e, self.name, "read", opening=False) from e
        self.bytes_in += len(chunk)
        return chunk

    def flush_input(self) -> int:
        """As ByteStream's, with a bounded number of reads: since an empty read is not the
        end here, a printer that keeps poll ready cannot hold the loop."""
        dropped = len(self._buf)
        self._buf.clear()
        for _ in range(64):
            if not self._poll.poll(0):
                break
            chunk = self._read_some(self.fd, 4096)
            if not chunk:
                break
            dropped += len(chunk)
        return dropped
