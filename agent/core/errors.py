"""Exceptions drivers raise, grouped by phase. The runner alone turns them into results.

    DeviceError                 base; ``code`` is the stable result code, ``status`` its grade
    ├── DeviceNotFound          the node/host/USB id is not there (e.g. PRINTER_NOT_CONNECTED)
    ├── DeviceTimeout           no answer within the deadline (also a TimeoutError)
    ├── ProtocolError           an answer that is not valid for the protocol (garbage, bad LRC)
    ├── DeviceIOError           the link broke mid-exchange (EIO, EOF, reset)
    └── DeviceBusy              another program holds the device (a lock, TIOCEXCL, its
                                one connection); not a fault: ``share = "guest"`` waits

Messages must never carry card data: drivers on the card path pass masked values only.

``facts`` are the facts behind the message (``path``, ``host``/``port``, ``reason``
as a short stable token, ...); the runner copies them into the result, so a table in
another language can say the same thing (selftest/messages.py) without the English text.
"""

from __future__ import annotations

from typing import Any

from posagent.core.status import Status


class DeviceError(Exception):
    """A device could not be asked, or its answer could not be trusted."""

    code = "DEVICE_ERROR"
    status: Status = Status.UNKNOWN

    def __init__(self, message: str, *, code: str | None = None, status: Status | str | None = None,
                 facts: dict[str, Any] | None = None, measurements: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = Status.parse(status)
        #: What the message was built from (path, host, reason token ...); ``measurements``
        #: is the older name of the same argument.
        self.facts: dict[str, Any] = {**(measurements or {}), **(facts or {})}

    @property
    def measurements(self) -> dict[str, Any]:
        return self.facts


class DeviceNotFound(DeviceError):
    code = "DEVICE_NOT_FOUND"


class DeviceTimeout(DeviceError, TimeoutError):
    code = "DEVICE_NO_RESPONSE"


class ProtocolError(DeviceError):
    code = "PROTOCOL_ERROR"


class DeviceIOError(DeviceError):
    code = "DEVICE_IO_ERROR"


class DeviceBusy(DeviceError):
    """Another program (the POS application) holds the device now: a live UUCP lock file,
    a flock, TIOCEXCL, or the one connection a network printer serves. posagent did not
    touch the device. Callers keep the last fresh reading until ``stale_after``."""

    code = "DEVICE_BUSY"
