"""The print proxy (``share = "proxy"``): posagent owns the printer and the POS application
prints through it, on a raw TCP port like a network printer's 9100 and/or on a pty whose
stable symlink it opens like a serial port.

Why a proxy: posagent's status queries (DLE EOT 1-4) and test slips must reach the
printer only between the POS application's jobs. A real-time query inside a job lands in
the middle of its data (an image, a barcode) and corrupts it, and the printer's answer
can be read by the wrong party. Owning the printer and passing the jobs through makes
the boundaries visible:

- a **job** is the bytes of one client from its first byte until it closes (TCP) or is
  silent for ``job_idle`` (TCP and pty). From the first byte to the end the proxy holds
  the printer's ``Link.lock``, which every status exchange and slip also takes: they run
  between jobs, and a job reaches the printer whole and contiguous. How a job is streamed,
  relayed, kept and offered again is ``escpos.proxyjob``;
- **TCP**: the listener is bound to exactly the configured address. One client at a time,
  as on a printer's raw port: the others wait in the listen backlog and are served in
  order. A client may keep its connection and send several jobs (each ended by
  ``job_idle``); one that sends nothing for ``job_timeout`` is dropped so the next can
  print;
- **pty**: a pty pair in raw mode, with a symlink at ``pty_path`` to the slave (a stale
  symlink is replaced, a regular file never). posagent keeps the slave open itself, so a
  POS application that closes and reopens it does not make the master fail (EIO); jobs
  are told apart by ``job_idle`` silences. The pty is served alongside the TCP client;
- every job is counted (``escpos.jobscan``) and reported with ``on_job(counts, client)``,
  what of it the printer did not take with ``on_lost(client, bytes_lost, reason)`` (a job
  broken midway gets both: the part printed and the part lost). ``client`` is
  "host:port" or "pty".

While a job the printer does not take is offered again (up to ``job_timeout`` after its
end), the next clients wait: jobs reach the printer in the order they came.

Nothing stops the serving thread but ``close()``: a failing client, printer or callback
is logged at warning with the client's address. Job contents are never logged: a receipt
may carry card data. Every wait is a poll or an event wait with a deadline.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable

from posagent.core.errors import DeviceError
from posagent.drivers.escpos.commands import LINE_MM
from posagent.drivers.escpos.jobscan import JobCounts
from posagent.drivers.escpos.proxyjob import CHUNK, MAX_PENDING, JobEnd, ProxyJob
from posagent.drivers.transport.link import Link

__all__ = ["MAX_PENDING", "PrintProxy", "ProxyError"]

log = logging.getLogger(__name__)

OnJob = Callable[[JobCounts, str], None]
OnLost = Callable[[str, int, str], None]

BACKLOG = 16  # TCP clients waiting their turn
JOIN_S = 5.0  # close(): how long to wait for the serving thread (its waits are all shorter)
_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


class ProxyError(DeviceError):
    """The proxy cannot listen where it was told to."""

    code = "PRINT_PROXY_UNAVAILABLE"


class _TcpClient:
    """One accepted connection (non-blocking)."""

    def __init__(self, conn: socket.socket, addr: tuple[str, int] | tuple[str, int, int, int]) -> None:
        self.conn = conn
        host, port = addr[0], addr[1]
        self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fileno(self) -> int:
        return self.conn.fileno()

    def read(self, n: int) -> bytes | None:
        try:
            return self.conn.recv(n) or None  # b"": the client closed (or half-closed) its side
        except BlockingIOError:
            return b""
        except OSError:  # reset, or any other failure: the client is gone
            return None

    def reply(self, data: bytes) -> None:
        try:
            self.conn.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except OSError as e:
            log.debug("print proxy: answer to %s not sent: %s", self.name, e)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()


class _PtyClient:
    """The POS application on the pty, seen from the master side (non-blocking)."""

    name = "pty"

    def __init__(self, master: int) -> None:
        self.fd = master

    def fileno(self) -> int:
        return self.fd

    def read(self, n: int) -> bytes | None:
        try:
            return os.read(self.fd, n) or None
        except BlockingIOError:
            return b""
        except OSError:  # EIO: no slave open (cannot happen while posagent holds its own)
            return None

    def reply(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError as e:
            log.debug("print proxy: answer to the pty not sent: %s", e)


class PrintProxy:
    """Serves the POS application's print jobs to the printer behind ``link``.

    ``listen``: (host, port) of the raw TCP port, or None; port 0 picks a free one (tests;
    ``address`` tells which). ``pty_path``: where the pty's symlink goes, or None.
    ``line_mm``: the printer's line height, for the paper counted (``line_height_mm``)."""

    def __init__(self, link: Link, *, listen: tuple[str, int] | None, pty_path: str | None,
                 job_idle: float = 1.0, job_timeout: float = 300.0, on_job: OnJob, on_lost: OnLost,
                 line_mm: float = LINE_MM, where: str = "printer") -> None:
        self._link = link
        self._listen_at = listen
        self._pty_path = pty_path or None
        self._job_idle = job_idle
        self._job_timeout = job_timeout
        self._on_job, self._on_lost = on_job, on_lost
        self._line_mm = line_mm
        self._where = where
        self._stop = threading.Event()
        self._wake_r = self._wake_w = -1
        self._server: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._master = self._slave = -1
        self._slave_name = ""
        self._thread: threading.Thread | None = None
        self.jobs = 0  # jobs the printer took whole
        self.lost_jobs = 0  # jobs of which something was lost
        self.peak_buffered = 0  # the most job bytes held in memory at once
        #: A job is under way (first byte to its report): its rest may still be offered to the
        #: printer between lock holds, so nothing but a status query may run (self-repair waits).
        self.in_job = False

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port) of the TCP listener, None without one."""
        return self._address

    @property
    def pty_name(self) -> str:
        """The pty slave's device name ("" without a pty)."""
        return self._slave_name

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Listen and serve in a thread of its own; ProxyError when it cannot listen."""
        try:
            if self._listen_at is None and self._pty_path is None:
                raise OSError(errno.EINVAL, "neither a TCP address nor a pty path to listen on")
            if self._listen_at is not None:
                self._server = self._bind(self._listen_at)
                host, port = self._server.getsockname()[:2]
                self._address = (str(host), int(port))
            if self._pty_path is not None:
                self._open_pty(self._pty_path)
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            self.close()
            raise ProxyError(f"{self._where}: the print proxy cannot listen: {e.strerror or e}",
                             facts={"reason": "open_failed"}) from e
        self._thread = threading.Thread(target=self._serve, name="print-proxy", daemon=True)
        self._thread.start()
        at = [f"{a[0]}:{a[1]}" for a in (self._address,) if a is not None] + [p for p in (self._pty_path,) if p]
        log.info("%s: print proxy listening on %s", self._where, " and ".join(at))

    def close(self) -> None:
        """Stop serving (a job in progress ends: what of it the printer did not take is
        reported lost), close the listener and the pty, remove the symlink. Never raises."""
        try:
            self._stop.set()
            if self._wake_w >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(JOIN_S)
                if self._thread.is_alive():
                    log.warning("%s: print proxy: the serving thread did not end within %g s", self._where, JOIN_S)
            if self._server is not None:
                self._server.close()
            self._remove_symlink()
            for fd in (self._master, self._slave, self._wake_r, self._wake_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = self._wake_r = self._wake_w = -1
        except Exception as e:  # closing must never raise
            log.debug("%s: closing the print proxy: %s", self._where, e)

    @staticmethod
    def _bind(at: tuple[str, int]) -> socket.socket:
        """A listener on exactly ``at`` (an IPv6 one on IPv6 only, not on mapped IPv4)."""
        family = socket.AF_INET6 if ":" in at[0] else socket.AF_INET
        srv = socket.socket(family, socket.SOCK_STREAM)
        try:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT; never shares a port
            if family == socket.AF_INET6:
                srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            srv.bind(at)
            srv.listen(BACKLOG)
            srv.setblocking(False)
        except OSError:
            srv.close()
            raise
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
        self._slave_name = os.ttyname(self._slave)
        tmp = f"{path}.tmp{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self._slave_name, tmp)
        os.replace(tmp, path)  # atomic: the POS application never finds no link at all

    def _remove_symlink(self) -> None:
        """Remove our symlink, not one another process put there since."""
        path = self._pty_path
        if path is None or not self._slave_name:
            return
        with contextlib.suppress(OSError):
            if os.path.islink(path) and os.readlink(path) == self._slave_name:
                os.unlink(path)

    # -- serving -------------------------------------------------------------------------
    def _serve(self) -> None:
        session: _TcpClient | None = None
        idle_since = 0.0
        pty = _PtyClient(self._master) if self._master >= 0 else None
        while not self._stop.is_set():
            try:
                session, idle_since = self._step(session, idle_since, pty)
            except Exception as e:  # nothing may stop the proxy but close()
                who = session.name if session is not None else "a client"
                log.warning("%s: print proxy: serving %s: %s: %s", self._where, who, type(e).__name__, e)
                if session is not None:
                    session.close()
                    session = None
                self._stop.wait(0.1)  # a fault that repeats must not spin
        if session is not None:
            session.close()

    def _step(self, session: _TcpClient | None, idle_since: float,
              pty: _PtyClient | None) -> tuple[_TcpClient | None, float]:
        """One wait for something to do: a new client, a client's first byte, the pty."""
        poll = select.poll()
        poll.register(self._wake_r, select.POLLIN)
        if pty is not None:
            poll.register(pty.fd, _POLL_IN)
        if session is not None:
            poll.register(session.fileno(), _POLL_IN)
        elif self._server is not None:
            poll.register(self._server.fileno(), select.POLLIN)
        wait = 1.0
        if session is not None:
            wait = min(wait, idle_since + self._job_timeout - time.monotonic())
        events = poll.poll(max(0, math.ceil(wait * 1000)))
        for fd, _ev in events:
            if self._stop.is_set():
                break
            if fd == self._wake_r:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 64)
            elif pty is not None and fd == pty.fd:
                data = pty.read(CHUNK)
                if data:
                    self._run(pty, data)
                elif data is None:  # the pty hung up (not while our slave is open): do not spin on it
                    self._stop.wait(0.1)
            elif session is not None and fd == session.fileno():
                data = session.read(CHUNK)
                if data is None:  # gone between jobs
                    session.close()
                    session = None
                elif data:
                    end = self._run(session, data)
                    if end.client_closed or end.overran:
                        session.close()
                        session = None
                    else:  # the job ended by job_idle: the client may send another
                        idle_since = time.monotonic()
            elif self._server is not None and fd == self._server.fileno() and session is None:
                session, idle_since = self._accept(), time.monotonic()
        if session is not None and time.monotonic() - idle_since >= self._job_timeout:
            log.info("%s: print proxy: %s sent nothing for %g s: disconnected so the next client can print",
                     self._where, session.name, self._job_timeout)
            session.close()
            session = None
        return session, idle_since

    def _accept(self) -> _TcpClient | None:
        assert self._server is not None
        try:
            conn, addr = self._server.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        return _TcpClient(conn, addr)

    def _run(self, client: _TcpClient | _PtyClient, first: bytes) -> JobEnd:
        """One job from its first byte; reported, whatever became of it."""
        self.in_job = True
        try:
            return self._job(client, first)
        finally:
            self.in_job = False

    def _job(self, client: _TcpClient | _PtyClient, first: bytes) -> JobEnd:
        job = ProxyJob(self._link, client, first, job_idle=self._job_idle, job_timeout=self._job_timeout,
                       line_mm=self._line_mm, stop=self._stop)
        try:
            job.stream()
            if isinstance(client, _TcpClient) and (job.closed or job.overran):
                client.close()  # its job is over and in posagent's hands: the POS application goes on
            end = job.finish()
        except Exception as e:  # a fault of ours: what was not delivered is still reported
            log.warning("%s: print proxy: job from %s: %s: %s", self._where, client.name, type(e).__name__, e)
            end = JobEnd(job.scanner.counts, len(job.pending) + job.dropped, f"print proxy fault ({e})",
                         client_closed=True)
        self.peak_buffered = max(self.peak_buffered, end.peak)
        self._report(client.name, end)
        return end

    def _report(self, client: str, end: JobEnd) -> None:
        if end.counts.bytes:
            if not end.lost:
                self.jobs += 1
            self._call(self._on_job, end.counts, client)
        if end.lost:
            self.lost_jobs += 1
            log.warning("%s: print proxy: job from %s: %d bytes not printed (%d printed): %s", self._where,
                        client, end.lost, end.counts.bytes, end.reason)
            self._call(self._on_lost, client, end.lost, end.reason)
        elif end.overran:
            log.warning("%s: print proxy: job from %s cut at job_timeout (%g s); the client was disconnected",
                        self._where, client, self._job_timeout)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception as e:  # a failing report must not stop the proxy
            log.warning("%s: print proxy: reporting a job from %s failed: %s: %s", self._where,
                        args[-1] if fn is self._on_job else args[0], type(e).__name__, e)
