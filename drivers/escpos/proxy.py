"""The print proxy (``share = "proxy"``): posagent owns the printer and the POS application
prints through it, on a raw TCP port like a network printer's 9100 and/or on a pty whose
stable symlink it opens like a serial port.

One thread serves both, one job at a time:

- a **job** is the bytes of one client from its first byte until it closes (TCP) or is
  silent for ``job_idle`` (TCP and pty). From the first byte to the end the proxy holds
  the printer's ``Link.lock``, which every status exchange and test slip also takes: they
  run between jobs, never inside one, and a job reaches the printer whole and contiguous.
  Bytes are written as they arrive (a POS application that sends DLE EOT and waits for
  the answer mid-job works), and what the printer sends back (the status replies it asked
  for, ASB) goes back to that client. A slow printer slows the reading of the client
  (backpressure), so memory stays bounded;
- further TCP clients wait in the listen backlog and are served in order; a client that
  connects and sends nothing for ``job_timeout`` is dropped so the next can print;
- every delivered job is counted (``jobscan``) and reported with ``on_job``;
- a job the printer cannot take (it cannot be opened, the link breaks) is kept, up to
  MAX_PENDING bytes, and offered again until ``job_timeout`` after its end; then
  ``on_lost(client, bytes_lost, reason)``. Bytes already written are not sent twice: a
  job broken midway is reported lost with what was not delivered. Beyond MAX_PENDING the
  excess is counted as lost at once.

Job contents are never logged: a receipt may carry card data.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from typing import Any

from posagent.core.errors import DeviceError
from posagent.drivers.escpos.jobscan import JobCounts, JobScanner
from posagent.drivers.transport.link import Link

log = logging.getLogger(__name__)

MAX_PENDING = 16 << 20  # undelivered bytes kept per job
CHUNK = 4096
_RETRY_FIRST, _RETRY_MAX = 0.5, 10.0  # seconds between offers of an undelivered job

OnJob = Callable[[JobCounts, str], None]
OnLost = Callable[[str, int, str], None]


def _reader(read_raw: Callable[[], bytes]) -> Callable[[], bytes | None]:
    """A client's non-blocking read: its bytes, b"" when none are waiting, None once it
    has closed (EOF, a half-close, an error)."""

    def read() -> bytes | None:
        try:
            return read_raw() or None
        except BlockingIOError:
            return b""
        except OSError:
            return None

    return read


class ProxyError(DeviceError):
    """The proxy cannot listen where it was told to."""

    code = "PRINT_PROXY_UNAVAILABLE"


class PrintProxy:
    def __init__(self, link: Link, *, listen: tuple[str, int] | None, pty_path: str | None,
                 job_idle: float = 1.0, job_timeout: float = 300.0, on_job: OnJob, on_lost: OnLost,
                 line_mm: float = 4.23, where: str = "printer") -> None:
        self._link = link
        self._listen_at = listen
        self._pty_path = pty_path or None
        self._job_idle = job_idle
        self._job_timeout = job_timeout
        self._on_job, self._on_lost = on_job, on_lost
        self._line_mm = line_mm
        self._where = where
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._server: socket.socket | None = None
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self.jobs = 0  # delivered jobs, for tests and the log

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port) of the TCP listener (port 0 in the config picks one)."""
        return self._server.getsockname()[:2] if self._server is not None else None

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Listen and serve in a thread of its own; ProxyError when it cannot listen."""
        try:
            if self._listen_at is not None:
                self._server = self._bind(self._listen_at)
            if self._pty_path is not None:
                self._open_pty(self._pty_path)
        except OSError as e:
            self.close()
            raise ProxyError(f"{self._where}: the print proxy cannot listen: {e.strerror or e}",
                             facts={"reason": "open_failed"}) from e
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="print-proxy", daemon=True)
        self._thread.start()
        at = [f"{a[0]}:{a[1]}" for a in (self.address,) if a is not None] + [p for p in (self._pty_path,) if p]
        log.info("%s: print proxy listening on %s", self._where, " and ".join(at))

    def close(self) -> None:
        """Stop serving (a job in progress ends), close the listener and the pty. Never raises."""
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5.0)
        if self._server is not None:
            self._server.close()
        if self._pty_path is not None and os.path.islink(self._pty_path):
            with contextlib.suppress(OSError):
                os.unlink(self._pty_path)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = self._wake_r = self._wake_w = -1

    @staticmethod
    def _bind(at: tuple[str, int]) -> socket.socket:
        family = socket.AF_INET6 if ":" in at[0] else socket.AF_INET
        srv = socket.socket(family, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(at)
        srv.listen(16)
        srv.setblocking(False)
        return srv

    def _open_pty(self, path: str) -> None:
        if os.path.lexists(path) and not os.path.islink(path):
            raise OSError(errno.EEXIST, f"{path} exists and is not a symlink (refusing to replace it)")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes pass as they are; our slave keeps the pty alive between opens
        with contextlib.suppress(OSError):  # the POS application's user opens it through group posagent
            os.fchown(self._slave, -1, os.getgid())
            os.fchmod(self._slave, 0o660)
        os.set_blocking(self._master, False)
        tmp = f"{path}.tmp{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(self._slave), tmp)
        os.replace(tmp, path)

    # -- serving -------------------------------------------------------------------------
    def _serve(self) -> None:
        poll = select.poll()
        poll.register(self._wake_r, select.POLLIN)
        if self._server is not None:
            poll.register(self._server.fileno(), select.POLLIN)
        if self._master >= 0:
            poll.register(self._master, select.POLLIN)
        while not self._stop.is_set():
            for fd, _ev in poll.poll(1000):
                if self._stop.is_set():
                    return
                try:
                    if self._server is not None and fd == self._server.fileno():
                        self._serve_tcp_client()
                    elif fd == self._master:
                        self._serve_pty_job()
                except Exception as e:  # one client must never stop the proxy
                    log.warning("%s: print proxy: %s: %s", self._where, type(e).__name__, e)

    def _serve_tcp_client(self) -> None:
        assert self._server is not None
        try:
            conn, addr = self._server.accept()
        except BlockingIOError:
            return
        client = f"{addr[0]}:{addr[1]}"
        with conn:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._wait_readable(conn.fileno(), self._job_timeout):
                log.info("%s: print proxy: %s sent nothing for %g s: dropped", self._where, client,
                         self._job_timeout)
                return

            def write(data: bytes) -> None:
                with contextlib.suppress(OSError):
                    conn.setblocking(True)
                    conn.settimeout(self._job_idle)
                    conn.sendall(data)
                    conn.setblocking(False)

            self._job(conn.fileno(), _reader(lambda: conn.recv(CHUNK)), write, client)

    def _serve_pty_job(self) -> None:
        master = self._master

        def write(data: bytes) -> None:
            with contextlib.suppress(OSError):
                os.write(master, data)

        self._job(master, _reader(lambda: os.read(master, CHUNK)), write, "pty")

    def _wait_readable(self, fd: int, timeout: float) -> bool:
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLHUP)
        p.register(self._wake_r, select.POLLIN)
        events = p.poll(int(timeout * 1000))
        return any(f == fd for f, _ in events) and not self._stop.is_set()

    # -- one job -------------------------------------------------------------------------
    def _job(self, fd: int, read: Callable[[], bytes | None], write: Callable[[bytes], None], client: str) -> None:
        scanner = JobScanner(self._line_mm)
        pending = bytearray()  # bytes the printer did not take
        dropped = 0
        reason = "the printer did not take the job"
        with self._link.lock:  # the printer is ours from the first byte to the end of the job
            stream = self._open(client)
            if stream is None:
                reason = "the printer cannot be opened"
            poll = select.poll()
            poll.register(fd, select.POLLIN | select.POLLHUP)
            printer_fd = getattr(stream, "fd", None) if stream is not None else None
            if isinstance(printer_fd, int):
                poll.register(printer_fd, select.POLLIN)
            # Without an fd to wait on (USB), the printer's replies are looked for every 50 ms.
            tick = int(self._job_idle * 1000) if isinstance(printer_fd, int) or stream is None else 50
            last = time.monotonic()
            deadline = last + self._job_timeout  # a job may not hold the printer forever
            for _ in range(10_000_000):  # bounded by the deadline and job_idle long before
                now = time.monotonic()
                if self._stop.is_set() or now > deadline:
                    break
                events = dict(poll.poll(tick))
                if stream is not None and (printer_fd in events or not isinstance(printer_fd, int)):
                    back = self._from_printer(stream)
                    if back:
                        write(back)
                if fd not in events:
                    if time.monotonic() - last >= self._job_idle:
                        break  # job_idle of silence: the job is over
                    continue
                data = read()
                if data is None:
                    break  # the client closed: the job is over
                if not data:
                    continue
                last = time.monotonic()
                scanner.feed(data)
                if stream is not None and not pending:
                    try:
                        stream.write(data, timeout=max(1.0, self._job_idle * 5))
                        continue
                    except DeviceError as e:
                        reason = f"the link to the printer broke ({e})"
                        self._link.reset()
                        stream = None
                room = MAX_PENDING - len(pending)
                pending += data[:room]
                dropped += max(0, len(data) - room)
        if dropped:
            self._on_lost(client, dropped, f"more than {MAX_PENDING} bytes waiting for the printer")
        if pending and not self._deliver_later(pending, client, reason):
            return
        if scanner.counts.bytes and not dropped:
            self.jobs += 1
            self._on_job(scanner.counts, client)

    def _open(self, client: str) -> Any:
        try:
            return self._link.open()
        except DeviceError as e:
            log.warning("%s: print proxy: job from %s: printer not available (%s): kept for retry",
                        self._where, client, e.code)
            return None

    @staticmethod
    def _from_printer(stream: Any) -> bytes:
        try:
            return bytes(stream.read_available(timeout=0.0))
        except DeviceError:
            return b""

    def _deliver_later(self, pending: bytearray, client: str, reason: str) -> bool:
        """Offer an undelivered job again until job_timeout after its end; True once the
        printer took it, False when it was reported lost."""
        end = time.monotonic() + self._job_timeout
        pause = _RETRY_FIRST
        for _ in range(100_000):  # bounded by the deadline
            left = end - time.monotonic()
            if left <= 0 or self._stop.wait(min(pause, left)):
                break
            pause = min(pause * 2, _RETRY_MAX)
            try:
                self._link.exchange(lambda s: s.write(bytes(pending), timeout=30.0), retry=False)
            except DeviceError as e:
                reason = f"{reason}; then: {e}"
                continue
            log.info("%s: print proxy: job from %s delivered late (%d bytes)", self._where, client, len(pending))
            return True
        log.warning("%s: print proxy: job from %s lost: %d bytes not delivered within %g s",
                    self._where, client, len(pending), self._job_timeout)
        self._on_lost(client, len(pending), reason)
        return False
