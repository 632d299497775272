"""The ``serial:`` transport: a serial port or pty, opened and configured with pyserial
(termios), then read and written as a ``ByteStream`` on the raw file descriptor.

Query keys of the URL are pyserial settings (``baudrate``, ``parity`` ...); a driver's
``serial_defaults`` (e.g. the Megatec 2400 baud) apply where the URL says nothing. A port
shared with the POS application (``share = "guest"``) is opened by serialguest.py.
"""

from __future__ import annotations

import errno
from typing import Any

import serial  # pyserial: a dependency, and this module is loaded only for serial: URLs

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound
from posagent.drivers.transport.serialguest import open_serial_guest
from posagent.drivers.transport.stream import ByteStream


def open_serial(url: DeviceURL, *, serial_defaults: dict[str, Any] | None = None, share: str = "owner",
                **_: Any) -> ByteStream:
    """Open a serial port (or pty) with pyserial's termios setup, then use the raw fd. With
    ``share="guest"`` the port is opened as a guest instead (serialguest.py: locks honoured
    and taken, the line left as its user set it); with ``share="proxy"`` the same way, and
    the Link holds it, locks and all, for as long as posagent serves the POS application."""
    settings: dict[str, Any] = {"baudrate": 9600}
    settings.update(serial_defaults or {})
    settings.update(url.params)
    if share in ("guest", "proxy"):
        return open_serial_guest(url, settings)
    try:
        port = serial.Serial(url.path, timeout=0, write_timeout=0, **settings)
    except serial.SerialException as e:
        err = getattr(e, "errno", None)
        if err == errno.ENOENT or "No such file" in str(e):
            raise DeviceNotFound(f"{url.path} does not exist (cable or adapter unplugged?)",
                                 facts={"path": url.path, "reason": "absent"}) from e
        if err == errno.EACCES or "Permission denied" in str(e):
            raise DeviceError(f"no access to {url.path} (add the posagent user to group dialout)",
                              code="DEVICE_PERMISSION_DENIED", facts={"path": url.path, "group": "dialout"}) from e
        raise DeviceIOError(f"cannot open {url.path}: {e}", facts={"path": url.path, "reason": "open_failed"}) from e
    except (ValueError, OSError) as e:
        raise DeviceIOError(f"cannot open {url.path}: {e}", facts={"path": url.path, "reason": "open_failed"}) from e
    return ByteStream(port.fileno(), url.path, owner=port, where={"path": url.path})
