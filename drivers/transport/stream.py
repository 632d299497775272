"""``ByteStream``: the byte stream of the ``serial:`` and ``tcp:`` transports (and so of
``sim:``, whose simulators serve a pty or a loopback socket).

Every driver that speaks a byte protocol uses the calls of ``ByteStream`` (through a
``Link``). Reads return the moment the expected bytes are in: ``read_exact(n)`` returns
after exactly n bytes, ``read_until(term)`` right after the terminator. Both wait with
poll(2) on the file descriptor, never with a sleep, and raise DeviceTimeout when the
deadline passes; ``read_until`` raises LineOverflow when ``max_bytes`` arrive without the
terminator. pyserial is used only to open and configure the port (serialport.py); its
read paths are not used because ``inter_byte_timeout`` is ignored by the POSIX read and
``readline()`` waits for LF, so neither may carry a status exchange.
"""

from __future__ import annotations

import math
import os
import select
import time
from typing import Any

from posagent.core.errors import DeviceIOError, DeviceTimeout
from posagent.drivers.transport import LineOverflow

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
        #: The simulator serving this stream, when it was opened from a sim: URL, and
        #: whether closing the stream stops it (not when a guest Link keeps it running).
        self.sim: Any = None
        self.stops_sim = True
        self.bytes_out = 0
        self.bytes_in = 0

    # -- writing -------------------------------------------------------------
    def write(self, data: bytes, timeout: float = 5.0) -> None:
        """Write all of ``data`` or raise DeviceTimeout/DeviceIOError."""
        try:  # the common case first: a few bytes the kernel takes at once
            n = os.write(self.fd, data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            raise DeviceIOError(f"{self.name}: write failed: {os.strerror(e.errno or 0)}",
                                measurements=self._facts("write_failed")) from e
        self.bytes_out += n
        if n == len(data):
            return
        view = memoryview(data)[n:]
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
                raise LineOverflow(f"{self.name}: no terminator {terminator!r} in {len(buf)} bytes",
                                   facts=self._facts("overlong_reply"))
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
        if self.sim is not None and self.stops_sim:
            self.sim.stop()

    def __enter__(self) -> ByteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
