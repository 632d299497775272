"""The ESC/POS driver's printing part: running a job to its end, the test slip, text lines.

``JobRunner`` is composed into ``EscposDriver`` (``posagent.drivers.escpos``): a job is
sent through the printer's ``Link``, followed by ``GS r 1`` (non-real-time, so its reply
marks the end of the job) while ``DLE EOT 1`` probes watch for the printer going
offline; what was printed is added to the consumables counters. python-escpos is
imported only inside ``compose_slip`` (``escpos.slip``), never on the status path.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from posagent.core.base import CheckContext, Measurements, Result, Status
from posagent.core.errors import DeviceError, DeviceIOError, DeviceTimeout, ProtocolError
from posagent.core.version import __version__
from posagent.drivers.escpos.counters import PrinterState
from posagent.drivers.escpos.identity import IdentityReader
from posagent.drivers.escpos.options import EscposOptions
from posagent.drivers.escpos.slip import Job, SlipInfo, compose_lines, compose_slip
from posagent.drivers.escpos.status import ID_REPLY_MASK, EscposStatus, eot_query, grade, is_eot_reply
from posagent.drivers.transport.link import Link

GS_R_PAPER = b"\x1dr\x01"  # GS r 1: non-real-time, so its reply marks the end of a job
OFFLINE_BIT = 0x08
_MAX_JOB_POLLS = 10_000


class JobRunner:
    """Printing on one printer: jobs through its link, the status read after them, the
    counters updated; ``graded`` turns a status into the driver's result."""

    def __init__(self, link: Link, options: EscposOptions, state: PrinterState, *,
                 read_status: Callable[[], EscposStatus], graded: Callable[[EscposStatus, Measurements], Result],
                 identity: IdentityReader, where: str, terminal_id: str, device_name: str) -> None:
        self._link = link
        self._options = options
        self._state = state
        self._read_status = read_status
        self._graded = graded
        self._identity = identity
        self._where = where
        self._terminal_id = terminal_id
        self._device_name = device_name

    def run_job(self, s: Any, job: Job, deadline: float) -> str:
        """Send a job, then GS r 1, and wait for its reply (the job is done), polling
        DLE EOT 1 meanwhile. Returns "done", "offline" or "timeout"."""
        reply_timeout = self._options.reply_timeout
        s.flush_input()
        s.write(job.data, timeout=max(0.5, deadline - time.monotonic()))
        s.write(GS_R_PAPER, timeout=reply_timeout)
        pending = 0
        outcome = "timeout"
        poll = min(0.25, reply_timeout)
        for _ in range(_MAX_JOB_POLLS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                b = s.read_exact(1, min(poll, remaining))[0]
            except DeviceTimeout:
                if pending < 4:  # at most a few real-time probes outstanding
                    s.write(eot_query(1), timeout=reply_timeout)
                    pending += 1
                continue
            if (b & ID_REPLY_MASK) == 0:
                outcome = "done"
                break
            if not is_eot_reply(b):
                raise ProtocolError(f"{self._where}: byte 0x{b:02X} during a job is neither a "
                                    "GS r nor a DLE EOT reply", code="PRINTER_PROTOCOL_ERROR")
            pending -= 1
            if b & OFFLINE_BIT:
                outcome = "offline"
                break
        for _ in range(max(0, pending)):  # replies still due must not answer a later query
            try:
                s.read_exact(1, reply_timeout)
            except DeviceTimeout:
                break
        return outcome

    def print(self, job: Job, deadline: float) -> tuple[str, EscposStatus | None]:
        """Run ``job`` (never twice: no reopen-and-retry), count it when done, and read the
        status after it (None when the printer stopped answering)."""
        outcome = self._link.exchange(lambda s: self.run_job(s, job, deadline), retry=False)
        if outcome == "done":
            self._count(job)
        try:
            st = self._read_status()
        except DeviceTimeout:
            st = None
        return outcome, st

    def _count(self, job: Job) -> None:
        mm = job.length_mm(self._options.line_height_mm)
        self._state.update(lambda store: store.add_printed(job.lines, mm, job.cuts))

    def print_lines(self, lines: list[str]) -> None:
        """Print plain text lines, feed and cut (for a visit report). Raises DeviceError
        when the printer is not ready, the link drops, or the job does not finish."""
        o = self._options
        st = self._read_status()
        bad = [f for f in grade(st) if f.status >= Status.FAIL]
        if bad:
            raise DeviceError(f"{self._where} not ready: {bad[0].message}", code=bad[0].code, status=Status.FAIL)
        job = compose_lines(lines, columns=o.line_columns, encoding=o.text_encoding, feed_lines=o.feed_lines,
                            cut=o.cut)
        outcome, after = self.print(job, time.monotonic() + o.job_timeout)
        if outcome != "done":
            worst = grade(after) if after is not None else []
            why = worst[0].message if worst else f"no end-of-job answer ({outcome})"
            raise DeviceError(f"{self._where}: printing did not finish: {why}",
                              code=worst[0].code if worst else "SLIP_NOT_CONFIRMED",
                              status=Status.FAIL if worst else Status.UNKNOWN)

    def check_slip(self, ctx: CheckContext) -> Result:
        """The ``slip`` check: print a test slip and confirm the printer is ready after it."""
        o = self._options
        st = self._read_status()
        before = self._graded(st, {})
        if before.status >= Status.FAIL or st.offline:
            return before.with_message("test slip not printed: " + before.message)
        self._identity.maybe_read(st)
        ident = self._identity.identity
        info = SlipInfo(terminal_id=ctx.terminal_id or self._terminal_id,
                        local_time=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                        agent_version=__version__, model=ident.model if ident else None,
                        firmware=ident.firmware_text if ident else None, results=dict(ctx.results),
                        device_name=self._device_name)
        try:
            job = compose_slip(info, columns=o.line_columns, qr=o.slip_qr and not o.impact,
                               feed_lines=o.feed_lines, cut=o.cut)
        except ImportError as e:
            return Result.unknown("SLIP_FAILED", f"cannot compose the test slip: {e}",
                                  measurements={"package": e.name} if e.name else {})
        margin = 4 * o.reply_timeout + 0.2  # keep time for the status read after the job
        deadline = min(time.monotonic() + o.job_timeout, ctx.deadline - margin)
        t0 = time.perf_counter()
        try:
            outcome, after = self.print(job, deadline)
        except DeviceIOError as e:
            return Result.fail("SLIP_INTERRUPTED", f"link to the printer lost during the test slip: {e}",
                               measurements={"slip_bytes": len(job.data)})
        m: Measurements = {"slip_bytes": len(job.data), "slip_ms": round((time.perf_counter() - t0) * 1000.0, 1)}
        if after is None:
            return Result.unknown("SLIP_NOT_CONFIRMED", "the printer stopped answering after the test slip",
                                  measurements=m)
        result = self._graded(after, m)
        if outcome == "done":
            if result.status == Status.OK:
                return Result.ok("SLIP_OK", "test slip printed" + (" and cut" if job.cuts else "")
                                 + "; printer ready", measurements=result.measurements, fields=result.fields)
            return result.with_message("after the test slip: " + result.message)
        if result.status != Status.OK:
            return result.with_message("while printing the test slip: " + result.message)
        return Result.unknown("SLIP_NOT_CONFIRMED", "the printer did not report the end of the test slip "
                              f"({outcome}) although it reports ready", measurements=m, fields=result.fields)
