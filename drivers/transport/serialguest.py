"""A serial port opened as a guest (``share = "guest"``): the POS application owns the port;
posagent opens it for one exchange without disturbing the line.

The open is raw system calls, not pyserial: pyserial's open applies its settings and
raises DTR and RTS unconditionally, which a program already using the line would notice.
In order:

1. a live UUCP lock file of another process -> DeviceBusy (``locks.UucpLock``), else ours;
2. ``open(O_RDWR | O_NOCTTY | O_NONBLOCK)``: EBUSY is TIOCEXCL -> DeviceBusy (and, since
   root may open an exclusive tty anyway, the flag is read back with TIOCGEXCL);
3. ``flock(LOCK_EX | LOCK_NB)``: held by another process -> DeviceBusy;
4. termios: HUPCL is cleared, so our close never drops DTR on a line in use; the line
   settings (raw mode, speed, size, parity, stop bits, flow control from the URL and the
   driver's defaults) are applied only to a line nobody configured: one still in the
   kernel's cooked default that no process posagent can see has open. A line in raw mode
   was configured by the program that uses it (possibly as another user, whose open files
   /proc does not show us), so its settings are the device's and are kept. Kept settings
   are remembered: while they stay the same, nothing is looked at again. (To impose the
   URL's settings on such a line, use ``share = "owner"``.)

Closing releases flock (with the fd) and removes our lock file.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sys
import termios
from typing import Any

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceBusy, DeviceError, DeviceIOError, DeviceNotFound
from posagent.drivers.transport.locks import UucpLock, flock_or_busy, other_openers
from posagent.drivers.transport.stream import ByteStream

log = logging.getLogger(__name__)

_IFLAG, _OFLAG, _CFLAG, _LFLAG, _ISPEED, _OSPEED, _CC = range(7)
_SIZES = {5: termios.CS5, 6: termios.CS6, 7: termios.CS7, 8: termios.CS8}
#: ``_IOR('T', 0x40, int)``: whether TIOCEXCL is set on the tty (Linux 3.8+; not in termios).
TIOCGEXCL = 0x80045440
_KNOWN = {"baudrate", "bytesize", "parity", "stopbits", "xonxoff", "rtscts"}


def speed_constant(baud: int) -> int:
    """termios ``B<baud>`` for a standard rate; ValueError for another."""
    value = getattr(termios, f"B{baud}", None)
    if not isinstance(value, int):
        raise ValueError(f"{baud} baud is not a standard rate")
    return value


def line_settings(attrs: list[Any], settings: dict[str, Any]) -> list[Any]:
    """``attrs`` (from tcgetattr) changed to raw mode with ``settings`` (pyserial names:
    baudrate, bytesize, parity N/E/O, stopbits 1/2, xonxoff, rtscts) and HUPCL cleared."""
    unknown = set(settings) - _KNOWN
    if unknown:
        raise ValueError(f"unknown serial setting(s): {', '.join(sorted(unknown))}")
    out = list(attrs)
    out[_CC] = list(attrs[_CC])
    iflag, oflag, cflag, lflag = out[_IFLAG], out[_OFLAG], out[_CFLAG], out[_LFLAG]
    iflag &= ~(termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IGNBRK | termios.PARMRK
               | termios.ISTRIP | termios.INPCK | termios.IXON | termios.IXOFF | termios.IXANY)
    oflag &= ~(termios.OPOST | termios.ONLCR | termios.OCRNL)
    lflag &= ~(termios.ICANON | termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL
               | termios.ISIG | termios.IEXTEN)
    cflag |= termios.CLOCAL | termios.CREAD
    cflag &= ~(termios.CSIZE | termios.PARENB | termios.PARODD | termios.CSTOPB | termios.CRTSCTS
               | termios.HUPCL)
    cflag |= _SIZES[int(settings.get("bytesize", 8))]
    parity = str(settings.get("parity", "N")).upper()[:1]
    if parity == "E":
        cflag |= termios.PARENB
    elif parity == "O":
        cflag |= termios.PARENB | termios.PARODD
    elif parity != "N":
        raise ValueError(f"parity {parity!r} is not N, E or O")
    if float(settings.get("stopbits", 1)) == 2:
        cflag |= termios.CSTOPB
    if settings.get("rtscts"):
        cflag |= termios.CRTSCTS
    if settings.get("xonxoff"):
        iflag |= termios.IXON | termios.IXOFF
    out[_IFLAG], out[_OFLAG], out[_CFLAG], out[_LFLAG] = iflag, oflag, cflag, lflag
    speed = speed_constant(int(settings.get("baudrate", 9600)))
    out[_ISPEED] = out[_OSPEED] = speed
    out[_CC][termios.VMIN] = 0
    out[_CC][termios.VTIME] = 0
    return out


class _GuestPort:
    """What a guest stream owns: the fd (flock goes with it) and our UUCP lock file."""

    def __init__(self, fd: int, lock: UucpLock) -> None:
        self.fd = fd
        self.lock = lock

    def close(self) -> None:
        try:
            os.close(self.fd)
        finally:
            self.lock.release()


def open_serial_guest(url: DeviceURL, settings: dict[str, Any]) -> ByteStream:
    """Open ``url``'s port as a guest (see the module doc); DeviceBusy when another program
    holds it, DeviceNotFound when it is not there."""
    path = url.path
    where = {"path": path}
    lock = UucpLock(path)
    lock.acquire()
    fd = -1
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise _open_error(path, e) from e
        _refuse_if_exclusive(fd, path)
        flock_or_busy(fd, path)
        _settle_line(fd, path, settings)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        lock.release()
        raise
    return ByteStream(fd, path, owner=_GuestPort(fd, lock), where=where)


def _refuse_if_exclusive(fd: int, path: str) -> None:
    """TIOCEXCL set by another program: EBUSY at open for most users, but root (CAP_SYS_ADMIN)
    opens anyway, so the flag is read back (TIOCGEXCL, Linux 3.8+) and honoured too."""
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, TIOCGEXCL, buf)
    except OSError:
        return  # an older kernel or not a tty: the open's EBUSY was the check
    if int.from_bytes(buf, sys.byteorder):
        raise DeviceBusy(f"{path} is opened exclusively by another program (TIOCEXCL)",
                         facts={"path": path, "reason": "exclusive"})


def _settle_line(fd: int, path: str, settings: dict[str, Any]) -> None:
    try:
        attrs = termios.tcgetattr(fd)
    except termios.error as e:
        raise DeviceIOError(f"{path} is not a serial port: {e}", facts={"path": path, "reason": "open_failed"}) from e
    try:
        wanted = line_settings(attrs, settings)
    except ValueError as e:
        raise DeviceError(f"{path}: {e}", code="CONFIG_URL_UNSUPPORTED", facts={"scheme": "serial"}) from e
    if wanted == attrs or _kept.get(path) == attrs:
        return  # as we want them, or the other program's, unchanged since we kept them
    # Raw mode (ICANON off) means a program configured this line: the POS application's
    # settings are the device's. /proc shows only the processes posagent may look into
    # (its own user's), so a raw line counts as in use even when no opener is seen.
    if not attrs[_LFLAG] & termios.ICANON or other_openers(path):
        if attrs[_CFLAG] & termios.HUPCL:
            attrs = list(attrs)
            attrs[_CFLAG] &= ~termios.HUPCL
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        _kept[path] = attrs  # its settings are the device's; ours would disturb it
        return
    termios.tcsetattr(fd, termios.TCSANOW, wanted)


#: path -> the line settings another program had when we last found it using the port:
#: while they stay the same they are kept without looking through /proc again (the look
#: costs milliseconds on a busy box; a status poll must cost microseconds).
_kept: dict[str, list[Any]] = {}


def _open_error(path: str, e: OSError) -> DeviceError:
    if e.errno == errno.EBUSY:
        return DeviceBusy(f"{path} is opened exclusively by another program (TIOCEXCL)",
                          facts={"path": path, "reason": "exclusive"})
    if e.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return DeviceNotFound(f"{path} does not exist (cable or adapter unplugged?)",
                              facts={"path": path, "reason": "absent"})
    if e.errno == errno.EACCES:
        return DeviceError(f"no access to {path} (add the posagent user to group dialout)",
                           code="DEVICE_PERMISSION_DENIED", facts={"path": path, "group": "dialout"})
    return DeviceIOError(f"cannot open {path}: {os.strerror(e.errno or 0)}",
                         facts={"path": path, "reason": "open_failed"})
