"""The transport seam: ``open(url, **kw)`` turns a device URL into an open connection.

This is the one place a URL's scheme picks an implementation. The openers are registered
under the entry-point group ``posagent.transports`` (scheme -> ``opener(url, **kw)``); the
built-ins are listed in pyproject.toml exactly as a third party lists its own:

    serial   a serial port or pty (serialport.py: pyserial's termios setup, the raw fd)  ByteStream
    tcp      raw TCP (tcp.py)                                                             ByteStream
    usb      bulk endpoints through pyusb (usb.py)                                        UsbStream
    evdev    a Linux input device through python-evdev (evdev.py)                         KeyDevice
    sim      a built-in simulator, started here and reached through the URL it serves     (either)

Keywords the openers understand; every opener accepts all of them and ignores what does
not apply to its scheme, so a driver passes one set whatever URL it was configured with:

    timeout          connect timeout in seconds (tcp)
    serial_defaults  pyserial settings the URL's query may override (serial)
    not_found_code   the code of the DeviceNotFound raised for an absent device (evdev)
    kind             "stream" (default: a byte stream) or "input" (an input device) (sim)
    sim_knobs        knob defaults the URL's query may override (sim)
    sim_setup        called with the simulator before it starts (sim)

Openers raise ``posagent.core.errors`` exceptions. Byte-stream drivers do not call
``open`` themselves: they talk through a ``Link`` (link.py), which opens on first use,
reopens a stale stream once, and gives transport errors the driver's own codes.
"""

from __future__ import annotations

from typing import Any, Protocol

from posagent.config.urls import DeviceURL, parse_url
from posagent.core.errors import DeviceError, DeviceIOError
from posagent.core.registry import TRANSPORTS, available, load_plugin

__all__ = ["LineOverflow", "Stream", "open", "prepare"]


class LineOverflow(DeviceIOError):
    """``read_until`` read its ``max_bytes`` without meeting the terminator: the line is
    noise (wrong baud rate, a chattering device) rather than a broken link. It is a
    DeviceIOError, so a driver that does not look for it treats it like a lost link."""


class Stream(Protocol):
    """The calls of a byte stream (ByteStream, UsbStream), as drivers use them."""

    name: str
    where: dict[str, Any]

    def write(self, data: bytes, timeout: float = ...) -> None: ...
    def read_exact(self, n: int, timeout: float) -> bytes: ...
    def read_until(self, terminator: bytes, timeout: float, max_bytes: int = ...) -> bytes: ...
    def read_available(self, timeout: float = ..., max_bytes: int = ...) -> bytes: ...
    def flush_input(self) -> int: ...
    def close(self) -> None: ...


def open(url: DeviceURL | str, **kw: Any) -> Any:  # shadows the builtin here only: transport.open
    """Open what ``url`` names with the opener registered for its scheme (see above)."""
    if isinstance(url, str):
        url = parse_url(url)
    try:
        opener = load_plugin(TRANSPORTS, url.scheme)
    except ValueError as e:
        # No transport for the scheme (nut:, pcsc:, https: are spoken by their drivers), or
        # a registered one that does not import.
        broken = f" ({e})" if url.scheme in available(TRANSPORTS) else ""
        raise DeviceError(f"{url.scheme}: URLs are not byte streams{broken}", code="CONFIG_URL_UNSUPPORTED",
                          facts={"scheme": url.scheme}) from None
    return opener(url, **kw)


def prepare(url: DeviceURL) -> None:
    """Look up (and import) the opener of ``url``'s scheme now, in the calling thread: a
    driver's first ``open`` runs in its device's thread, and devices opened at once would
    each scan the entry points and import their opener in parallel. Errors are left to
    ``open``, which reports them."""
    try:
        load_plugin(TRANSPORTS, url.scheme)
    except Exception:  # a broken or missing opener: open() raises the device's error
        pass
