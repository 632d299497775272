"""Byte-stream transports: ``serial:`` (pyserial; ptys too), ``tcp:``, and ``sim:``.

Every driver that speaks a byte protocol uses ``open_stream(url)`` and the four calls of
``ByteStream``. Reads return the moment the expected bytes are in: ``read_exact(n)``
returns after exactly n bytes, ``read_until(term)`` right after the terminator. Both
wait with poll(2) on the file descriptor, never with a sleep, and raise DeviceTimeout
when the deadline passes. pyserial is used only to open and configure the port
(termios); its read paths are not used because ``inter_byte_timeout`` is ignored by the
POSIX read and ``readline()`` waits for LF, so neither may carry a status exchange.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import time
from typing import Any

from posagent.config.urls import DeviceURL, parse_url
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound, DeviceTimeout

_POLL_IN = select.POLLIN | select.POLLPRI
_POLL_ERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


class ByteStream:
    """A bidirectional byte stream over one non-blocking file descriptor."""

    def __init__(self, fd: int, name: str, owner: Any = None, where: dict[str, Any] | None = None) -> None:
        self.fd = fd
        self.name = name
        #: Where the stream goes, as facts for results: {"path": ...} or {"host": ..., "port": ...}.
        self.where: dict[str, Any] = dict(where or {})
        self._owner = owner  # pyserial Serial / socket / SimHandle kept alive and closed with us
        self._buf = bytearray()
        self._poll = select.poll()
        self._poll.register(fd, _POLL_IN)
        self._closed = False
        #: The simulator serving this stream, when it was opened from a sim: URL.
        self.sim: Any = None
        self.bytes_out = 0
        self.bytes_in = 0

    # -- writing -------------------------------------------------------------
    def write(self, data: bytes, timeout: float = 5.0) -> None:
        """Write all of ``data`` or raise DeviceTimeout/DeviceIOError."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline, "to accept data")
                continue
            except OSError as e:
                raise DeviceIOError(f"{self.name}: write failed: {os.strerror(e.errno or 0)}",
                                    measurements=self._facts("write_failed")) from e
            view = view[n:]
            self.bytes_out += n

    # -- reading -------------------------------------------------------------
    def read_exact(self, n: int, timeout: float) -> bytes:
        """Exactly ``n`` bytes, returning as soon as they are in."""
        buf = self._buf
        if len(buf) >= n:
            out = bytes(buf[:n])
            del buf[:n]
            return out
        deadline = time.monotonic() + timeout
        poll = self._poll.poll
        fd = self.fd
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poll(math.ceil(remaining * 1000)):
                raise DeviceTimeout(f"{self.name}: {len(buf)} of {n} bytes within {timeout:.3g} s")
            # Read greedily: what arrives beyond n stays buffered for the next read, so a
            # reply read in pieces (ACK, header, body) costs one system call, not one each.
            buf += self._read_some(fd, max(n - len(buf), 4096))
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def read_until(self, terminator: bytes, timeout: float, max_bytes: int = 4096) -> bytes:
        """Bytes up to and including ``terminator``; extra bytes stay buffered."""
        buf = self._buf
        deadline = time.monotonic() + timeout
        start = 0
        while True:
            i = buf.find(terminator, start)
            if i >= 0:
                end = i + len(terminator)
                out = bytes(buf[:end])
                del buf[:end]
                return out
            if len(buf) >= max_bytes:
                raise DeviceIOError(f"{self.name}: no terminator {terminator!r} in {len(buf)} bytes",
                                    measurements=self._facts("overlong_reply"))
            start = max(0, len(buf) - len(terminator) + 1)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(math.ceil(remaining * 1000)):
                raise DeviceTimeout(
                    f"{self.name}: no {terminator!r}-terminated reply within {timeout:.3g} s "
                    f"({len(buf)} bytes received)")
            buf += self._read_some(self.fd, max_bytes - len(buf))

    def read_available(self, timeout: float = 0.0, max_bytes: int = 4096) -> bytes:
        """Whatever arrives first within ``timeout`` (b"" if nothing)."""
        if self._buf:
            out = bytes(self._buf)
            self._buf.clear()
            return out
        if not self._poll.poll(math.ceil(timeout * 1000)):
            return b""
        return self._read_some(self.fd, max_bytes)

    def flush_input(self) -> int:
        """Discard stale input (late replies, unsolicited status); returns bytes dropped."""
        dropped = len(self._buf)
        self._buf.clear()
        while self._poll.poll(0):
            dropped += len(self._read_some(self.fd, 4096))
        return dropped

    def _read_some(self, fd: int, n: int) -> bytes:
        try:
            chunk = os.read(fd, n)
        except BlockingIOError:
            return b""
        except OSError as e:
            # EIO: the other end of a pty or a USB-serial adapter went away.
            raise DeviceIOError(f"{self.name}: link lost ({os.strerror(e.errno or 0)})",
                                measurements=self._facts("link_lost")) from e
        if not chunk:
            raise DeviceIOError(f"{self.name}: connection closed by the device", measurements=self._facts("closed"))
        self.bytes_in += len(chunk)
        return chunk

    def _wait(self, events: int, deadline: float, what: str) -> None:
        p = select.poll()
        p.register(self.fd, events)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not p.poll(math.ceil(remaining * 1000)):
            raise DeviceTimeout(f"{self.name}: device did not become ready {what}")

    def _facts(self, reason: str) -> dict[str, Any]:
        return {**self.where, "reason": reason}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        owner = self._owner
        try:
            if owner is not None and hasattr(owner, "close"):
                owner.close()
            else:
                os.close(self.fd)
        except OSError:
            pass
        if self.sim is not None:
            self.sim.stop()

    def __enter__(self) -> ByteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_serial(url: DeviceURL, defaults: dict[str, Any] | None = None) -> ByteStream:
    """Open a serial port (or pty) with pyserial's termios setup, then use the raw fd."""
    import serial  # pyserial; only on the serial path

    settings: dict[str, Any] = {"baudrate": 9600}
    settings.update(defaults or {})
    settings.update(url.params)
    try:
        port = serial.Serial(url.path, timeout=0, write_timeout=0, **settings)
    except serial.SerialException as e:
        err = getattr(e, "errno", None)
        if err == errno.ENOENT or "No such file" in str(e):
            raise DeviceNotFound(f"{url.path} does not exist (cable or adapter unplugged?)",
                                 measurements={"path": url.path, "reason": "absent"}) from e
        if err == errno.EACCES or "Permission denied" in str(e):
            raise DeviceError(f"no access to {url.path} (add the posagent user to group dialout)",
                              code="DEVICE_PERMISSION_DENIED",
                              measurements={"path": url.path, "group": "dialout"}) from e
        raise DeviceIOError(f"cannot open {url.path}: {e}",
                            measurements={"path": url.path, "reason": "open_failed"}) from e
    except (ValueError, OSError) as e:
        raise DeviceIOError(f"cannot open {url.path}: {e}",
                            measurements={"path": url.path, "reason": "open_failed"}) from e
    return ByteStream(port.fileno(), url.path, owner=port, where={"path": url.path})


def open_tcp(url: DeviceURL, timeout: float = 3.0) -> ByteStream:
    assert url.port is not None
    where: dict[str, Any] = {"host": url.host, "port": url.port}
    try:
        sock = socket.create_connection((url.host, url.port), timeout=timeout)
    except TimeoutError as e:
        raise DeviceTimeout(f"{url.host}:{url.port}: no TCP answer within {timeout:.3g} s",
                            measurements={**where, "reason": "timeout"}) from e
    except ConnectionRefusedError as e:
        raise DeviceNotFound(f"{url.host}:{url.port} refused the connection (device off or port wrong)",
                             measurements={**where, "reason": "refused"}) from e
    except OSError as e:
        raise DeviceNotFound(f"{url.host}:{url.port}: {e.strerror or e}",
                             measurements={**where, "reason": connect_reason(e)}) from e
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ByteStream(sock.fileno(), f"{url.host}:{url.port}", owner=sock, where=where)


def connect_reason(e: OSError) -> str:
    """A failed connect as a stable token: dns, unreachable, refused, timeout or connect_failed."""
    if isinstance(e, socket.gaierror):
        return "dns"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, TimeoutError):
        return "timeout"
    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
        return "unreachable"
    return "connect_failed"


def open_stream(url: DeviceURL | str, *, serial_defaults: dict[str, Any] | None = None,
                timeout: float = 3.0) -> ByteStream:
    """Open the byte stream a URL names. ``sim:`` URLs start the simulator and open the
    real pty or socket it serves, so drivers run exactly the hardware code path."""
    if isinstance(url, str):
        url = parse_url(url)
    if url.scheme == "serial":
        return open_serial(url, serial_defaults)
    if url.scheme == "tcp":
        return open_tcp(url, timeout)
    if url.scheme == "sim":
        from posagent.drivers.simulator import start_sim

        handle = start_sim(url.host, url.params)
        try:
            stream = open_stream(handle.url, serial_defaults=serial_defaults, timeout=timeout)
        except BaseException:
            handle.stop()
            raise
        stream.sim = handle
        return stream
    raise DeviceError(f"{url.scheme}: URLs are not byte streams", code="CONFIG_URL_UNSUPPORTED",
                      measurements={"scheme": url.scheme})
