"""One print job through the print proxy (``escpos.proxy``): the POS application's bytes
to the printer, whole, in order, counted, and never dropped without a word.

``ProxyJob.stream`` takes the job from its first byte (already read from the client) to
its end; ``ProxyJob.finish`` offers what the printer did not take again and says what
became of the job (``JobEnd``), which the proxy reports. ``stream`` holds the printer's
``Link.lock`` from the first byte to the end of the job, so that posagent's own status
exchanges and slips run between jobs and never inside one:

- bytes are written as they arrive, and the client is read only once the printer took
  what came before (backpressure: a slow or offline printer slows the client down and
  the proxy holds at most one read, ``CHUNK``, in memory);
- what the printer sends back (the answers to the client's DLE EOT, ASB) goes back to the
  client at once, so a POS application that asks and waits mid-job works. After a client
  closes its side, answers still due to the DLE EOT it sent are waited for briefly
  (``REPLY_GRACE``): a half-closed client still reads them, and they must not be left for
  posagent's next status query to read as its own;
- a write that times out is a slow printer, not a broken one: it is tried again, the
  client waiting meanwhile, until ``job_timeout``.

A job the printer does not take (it cannot be opened, or the link breaks) is kept, up to
MAX_PENDING bytes, while the client goes on sending; the printer is offered it again
with a growing pause (RETRY_FIRST to RETRY_MAX) until ``job_timeout`` after the job's end.
Once the job is over the lock is taken for each offer only, so posagent's status reads
go on meanwhile (they find the printer down, or, if it came back first, they run before
the rest of an already broken job). Bytes the printer took are never sent again: a job
broken midway is resumed exactly where the printer stopped taking it (a write's progress
is the stream's ``bytes_out``; a stream without that figure, USB, counts a failed write
as not written), and if it cannot be, what was not delivered is reported lost. Beyond
MAX_PENDING the rest of the job is read and discarded (the client can finish, the next
one be served) and counted as lost with the rest; a job is cut at its end, never holed.
When posagent stops, what the printer has not taken is reported lost at once.

``JobEnd.counts`` is what reached the printer (the bytes it took, scanned in order);
``lost`` what did not. Nothing here logs a job's bytes: a receipt may carry card data.
"""

from __future__ import annotations

import math
import select
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from posagent.core.errors import DeviceError, DeviceTimeout
from posagent.drivers.escpos.jobscan import JobCounts, JobScanner
from posagent.drivers.transport.link import Link

MAX_PENDING = 16 << 20  # job bytes kept for a printer that does not take them
CHUNK = 16 << 10  # one read from a client
WRITE_MAX = 64 << 10  # bytes handed to one write
WRITE_SLICE = 0.5  # seconds one write may block before the job looks around again
RETRY_FIRST, RETRY_MAX = 0.5, 10.0  # seconds between offers to a printer that is down
REPLY_GRACE = 0.2  # seconds to wait for answers still due after a client closed
NO_FD_TICK = 0.05  # how often the printer's answers are looked for on a stream with no fd (USB)
LOCK_TICK = 0.2  # how often a wait for the printer's lock looks at the stop event
_MAX_STEPS = 100_000_000  # a loop bound far beyond what the deadlines allow

_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


class Client(Protocol):
    """A POS application's connection, as a job uses it."""

    name: str  # "127.0.0.1:40312" or "pty": for reports and the log

    def fileno(self) -> int: ...

    def read(self, n: int) -> bytes | None:
        """Up to ``n`` bytes; b"" when none are waiting; None once the client closed."""

    def reply(self, data: bytes) -> None:
        """Send the printer's answer back; never blocks (a client that does not read its
        answers loses them rather than stalling the printer)."""


@dataclass
class JobEnd:
    """What became of one job."""

    counts: JobCounts  # what reached the printer
    lost: int = 0  # bytes of the job that did not
    reason: str = ""  # why they did not
    client_closed: bool = False  # the client ended the job by closing (rather than by job_idle)
    overran: bool = False  # cut at job_timeout while the client was still sending
    peak: int = 0  # the most job bytes held in memory at once


class _EotCount:
    """DLE EOT 1-4 anywhere in a byte stream (split anywhere): each one a printer answers
    with one byte, even inside image data."""

    def __init__(self) -> None:
        self.n = 0
        self._tail = b""

    def feed(self, data: bytes) -> None:
        seen = self._tail + data[:2]  # the ones that began in the previous chunk
        for i in range(len(self._tail)):
            if seen[i:i + 2] == b"\x10\x04" and i + 2 < len(seen) and 1 <= seen[i + 2] <= 4:
                self.n += 1
        self.n += sum(data.count(bytes((0x10, 0x04, k))) for k in (1, 2, 3, 4))
        self._tail = (self._tail + data[-2:])[-2:]


class _Printer:
    """The printer's end of one job; every call with ``link.lock`` held."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.stream: Any = None
        self.fd: int | None = None
        self.sent = 0  # bytes of this job the printer took
        self.next_try = 0.0  # when to offer the job again after a failure
        self.reasons: list[str] = []
        self._pause = RETRY_FIRST

    @property
    def up(self) -> bool:
        return self.stream is not None

    def open(self, now: float) -> bool:
        """Whether the stream is open, opening it now if it is due. Stale input (answers
        nobody read) is dropped first; a held connection the printer closed shows up there
        (EOF) and is replaced at once by a fresh one, before any byte is lost in it."""
        if self.stream is not None:
            return True
        if now < self.next_try:
            return False
        for _attempt in (1, 2):
            was_open = self.link.stream is not None
            try:
                stream = self.link.open()
                stream.flush_input()
            except DeviceError as e:
                self._broke("the printer cannot be opened" if not was_open else "the link to the printer broke", e)
                if was_open:
                    continue  # a connection held since an earlier job: once more on a fresh one
                return False
            fd = getattr(stream, "fd", None)
            self.stream, self.fd = stream, fd if isinstance(fd, int) else None
            self._pause = RETRY_FIRST
            return True
        return False

    def write(self, data: bytes, timeout: float) -> int:
        """Write ``data``; how many of its bytes the printer took (all but on a failure).
        A timeout leaves the link up (a slow printer); any other error drops it."""
        stream = self.stream
        before = getattr(stream, "bytes_out", None)
        try:
            stream.write(data, timeout=timeout)
            n = len(data)
        except DeviceTimeout:
            n = self._progress(stream, before, len(data))
        except DeviceError as e:
            n = self._progress(stream, before, len(data))
            self._broke("the link to the printer broke", e)
        self.sent += n
        return n

    def replies(self) -> bytes:
        """What the printer sent back, b"" if nothing (a read error drops the link)."""
        if self.stream is None:
            return b""
        try:
            return bytes(self.stream.read_available(0.0))
        except DeviceError as e:
            self._broke("the link to the printer broke", e)
            return b""

    @staticmethod
    def _progress(stream: Any, before: Any, size: int) -> int:
        after = getattr(stream, "bytes_out", None)
        if isinstance(before, int) and isinstance(after, int):
            return max(0, min(size, after - before))
        return 0

    def _broke(self, what: str, e: DeviceError) -> None:
        reason = f"{what} ({e.code}: {e})"
        if reason not in self.reasons:
            self.reasons.append(reason)
        self.stream, self.fd = None, None
        self.link.reset()
        self.next_try = time.monotonic() + self._pause
        self._pause = min(self._pause * 2, RETRY_MAX)


def acquire(lock: Any, stop: threading.Event, until: float) -> bool:
    """Take ``lock``, looking at ``stop`` every LOCK_TICK; False when stopped or past ``until``."""
    for _ in range(_MAX_STEPS):
        if lock.acquire(timeout=max(0.0, min(LOCK_TICK, until - time.monotonic()))):
            return True
        if stop.is_set() or time.monotonic() >= until:
            return False
    return False


class ProxyJob:
    """One job from one client: ``stream()``, then ``finish()``, once each. Between the
    two the proxy lets a client that closed go: the job is in posagent's hands."""

    def __init__(self, link: Link, client: Client, first: bytes, *, job_idle: float, job_timeout: float,
                 line_mm: float, stop: threading.Event) -> None:
        self.link = link
        self.client = client
        self.job_idle = job_idle
        self.job_timeout = job_timeout
        self.stop = stop
        self.scanner = JobScanner(line_mm)
        self.printer = _Printer(link)
        self.pending = bytearray(first)  # job bytes read and not yet taken by the printer
        self.dropped = 0  # job bytes read and discarded (beyond MAX_PENDING)
        self.peak = len(first)
        self.asked = _EotCount()
        self.asked.feed(first)
        self.answered = 0  # bytes the printer sent back during the job
        self.closed = False
        self.overran = False
        self.end_at: float | None = None
        self.last = 0.0  # the client's last byte, or the last time the proxy was not reading it
        self._extra: list[str] = []

    def stream(self) -> None:
        """The job from its first byte to its end (the client closed, fell silent for
        job_idle, or ran past job_timeout), under the printer's lock."""
        start = time.monotonic()
        if acquire(self.link.lock, self.stop, start + self.job_timeout):
            try:
                self._stream(start)
            finally:
                self.link.lock.release()
        else:
            self._note("the printer stayed busy with posagent's own exchange" if not self.stop.is_set()
                       else "posagent stopped")
        if self.end_at is None:
            self.end_at = time.monotonic()

    def finish(self) -> JobEnd:
        """After ``stream``: what the printer did not take is offered again until
        job_timeout after the job's end; what became of the job."""
        assert self.end_at is not None, "stream() first"
        if self.pending:
            self._offer_again(self.end_at + self.job_timeout)
        lost = len(self.pending) + self.dropped
        if self.dropped:
            self._note(f"more than {MAX_PENDING} bytes waited for the printer: the rest of the job was discarded")
        reasons = self.printer.reasons + self._extra
        return JobEnd(self.scanner.counts, lost, "; ".join(reasons) if lost else "", self.closed, self.overran,
                      self.peak)

    # -- the job, under the lock ------------------------------------------------------
    def _stream(self, start: float) -> None:
        printer = self.printer
        deadline = start + self.job_timeout  # a job may not hold the printer for longer
        self.last = start
        printer.open(start)
        for _ in range(_MAX_STEPS):
            now = time.monotonic()
            if self.stop.is_set():
                self._note("posagent stopped")
                return
            if self.pending and printer.open(now):
                self._write(WRITE_SLICE)
            busy = bool(self.pending) and printer.up  # the printer is the bottleneck: the client waits
            if busy:
                self.last = now
            if self.closed:
                assert self.end_at is not None
                draining = busy and now < self.end_at + self.job_timeout  # the rest still going out
                if not draining and (self.pending or self.answered >= self.asked.n
                                     or now >= self.end_at + self._grace()):
                    return
            elif now >= deadline:
                self.overran = True
                self._note(f"the job ran past job_timeout ({self.job_timeout:g} s): the client was disconnected")
                self.end_at = now
                return
            elif not busy and now - self.last >= self.job_idle:
                self.end_at = now
                return  # job_idle of silence: the job is over
            self._wait_and_relay(busy, deadline, now)

    def _grace(self) -> float:
        return min(REPLY_GRACE, self.job_idle)

    def _wait_and_relay(self, busy: bool, deadline: float, now: float) -> None:
        """One poll of the client and the printer: relay answers, read the client."""
        printer = self.printer
        poll = select.poll()
        reading = not self.closed and not busy
        if reading:
            poll.register(self.client.fileno(), _POLL_IN)
        if printer.fd is not None:
            poll.register(printer.fd, _POLL_IN)
        if busy:
            wait = 0.0
        elif self.closed:
            assert self.end_at is not None
            wait = self.end_at + self._grace() - now
        else:
            wait = min(self.last + self.job_idle, deadline) - now
        if not printer.up and self.pending:
            wait = min(wait, printer.next_try - now)
        if printer.up and printer.fd is None:
            wait = min(wait, NO_FD_TICK)
        events = dict(poll.poll(max(0, math.ceil(wait * 1000))))
        if printer.up and (printer.fd is None or printer.fd in events):
            self._relay()
        if reading and self.client.fileno() in events:
            self._read()

    def _read(self) -> None:
        data = self.client.read(CHUNK)
        if data is None:
            self.closed, self.end_at = True, time.monotonic()
            return
        if not data:
            return
        self.last = time.monotonic()
        self.asked.feed(data)
        room = MAX_PENDING - len(self.pending)
        if self.dropped or len(data) > room:  # a job is cut at its end, never holed
            keep = 0 if self.dropped else max(0, room)
            self.pending += data[:keep]
            self.dropped += len(data) - keep
        else:
            self.pending += data
        self.peak = max(self.peak, len(self.pending))

    def _write(self, timeout: float) -> None:
        n = self.printer.write(bytes(self.pending[:WRITE_MAX]), timeout)
        if n:
            self.scanner.feed(bytes(self.pending[:n]))
            del self.pending[:n]

    def _relay(self) -> None:
        back = self.printer.replies()
        if back:
            self.answered += len(back)
            self.client.reply(back)

    # -- after the job: offers to a printer that was down -------------------------------
    def _offer_again(self, give_up: float) -> None:
        """Offer the rest of the job until ``give_up``, taking the lock for each offer."""
        printer = self.printer
        for _ in range(_MAX_STEPS):
            now = time.monotonic()
            if not self.pending or now >= give_up:
                return
            wait = min(printer.next_try, give_up) - now
            if self.stop.wait(wait) if wait > 0 else self.stop.is_set():
                self._note("posagent stopped before the printer took the job")
                return
            if not acquire(self.link.lock, self.stop, give_up):
                continue
            try:
                if printer.open(time.monotonic()):
                    for _step in range(_MAX_STEPS):
                        if not (self.pending and printer.up) or self.stop.is_set() or time.monotonic() >= give_up:
                            break
                        self._write(WRITE_SLICE)
                        self._relay()
            finally:
                self.link.lock.release()

    def _note(self, reason: str) -> None:
        if reason not in self._extra:
            self._extra.append(reason)
