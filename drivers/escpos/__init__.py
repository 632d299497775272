"""Driver ``escpos``: ESC/POS receipt printers (thermal and impact) over serial, TCP, USB.

Status is the agent's own: flush stale input, send ``DLE EOT n`` (n = 1..4), read exactly
one byte with a deadline, validate its fixed bits, decode bit by bit
(``escpos.status``). python-escpos is used only to compose the test slip. The printer is
reached through a ``Link`` (``drivers/transport/link.py``) shared as the ``share`` key
says (README, "Sharing the printer"): as a guest (the default) it is opened, locked, asked
and closed for every read, and a printer the POS application holds is DeviceBusy; as an
owner or proxy the stream stays open and is reopened once within a call after an I/O
error on a stale one. In proxy mode ``serve()`` runs the print proxy (``escpos.proxy``)
through which the POS application prints. The driver
composes the identity reader (GS I, ``escpos.identity``) and the job runner (printing,
the test slip, ``escpos.jobs``); the state file (counters, remembered identity) is
``escpos.counters``.

Self-repair (``repair``, docs/self-repair.md), before PRINTER_OFFLINE, PRINTER_NO_RESPONSE,
PRINTER_NOT_CONNECTED or PRINTER_PROTOCOL_ERROR is reported, as owner or proxy only and
between jobs only (holding ``Link.lock``, never while the print proxy has a job under
way): a broken or silent link is dropped and reopened (and, with ``usb_reset = true``,
a USB printer's port reset); if the fault is still there, ``ESC @`` initialises the
printer. As a guest nothing is tried: the POS application owns the printer.

Codes: PRINTER_OK; warn: PAPER_NEAR_END, PRINTER_OVERHEAT (auto-recoverable error),
RIBBON_WORN; fail: PRINTER_OFFLINE, PRINTER_COVER_OPEN, PAPER_END, CUTTER_ERROR,
PRINTER_MECHANICAL_ERROR, PRINTER_UNRECOVERABLE_ERROR, SLIP_INTERRUPTED; unknown:
PRINTER_NOT_CONNECTED, PRINTER_NO_RESPONSE, PRINTER_PROTOCOL_ERROR, SLIP_NOT_CONFIRMED,
SLIP_FAILED.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from posagent.core.base import Check, CheckContext, Driver, Level, Measurements, Result, Status
from posagent.core.errors import DeviceBusy, DeviceError, DeviceIOError, DeviceNotFound, DeviceTimeout, ProtocolError
from posagent.drivers.escpos import forecast
from posagent.drivers.escpos.codes import CODES
from posagent.drivers.escpos.commands import ESC
from posagent.drivers.escpos.counters import Counters, CounterStore, PrinterState, counter_path, ribbon_grade
from posagent.drivers.escpos.identity import IDENTITY_RETRY_S, IdentityReader
from posagent.drivers.escpos.jobs import GS_R_PAPER, OFFLINE_BIT, JobRunner
from posagent.drivers.escpos.jobscan import JobCounts
from posagent.drivers.escpos.options import EscposOptions
from posagent.drivers.escpos.proxy import PrintProxy
from posagent.drivers.escpos.status import (
    EOT_KINDS,
    EscposStatus,
    Finding,
    Identity,
    check_eot_reply,
    decode_port_status,
    decode_status,
    eot_query,
    grade,
)
from posagent.drivers.transport import Stream
from posagent.drivers.transport.link import ErrorTable, Link, Remap
from posagent.drivers.transport.locks import other_openers

__all__ = ["GS_R_PAPER", "IDENTITY_RETRY_S", "OFFLINE_BIT", "EscposDriver", "EscposOptions"]

#: Opening failed: whatever the transport says, the printer is not connected.
_NOT_CONNECTED = Remap(code="PRINTER_NOT_CONNECTED", message="{where} not connected: {error}", as_type=DeviceNotFound)
OPEN_ERRORS: ErrorTable = {DeviceNotFound: _NOT_CONNECTED, DeviceTimeout: _NOT_CONNECTED, DeviceIOError: _NOT_CONNECTED}
#: The link broke mid-exchange (after the one reopen of a stale link).
LOST_ERRORS: ErrorTable = {DeviceIOError: Remap(code="PRINTER_NOT_CONNECTED", message="{where}: link lost ({error})")}


#: ESC @: initialise (clears the print buffer, resets modes; not the receive buffer).
ESC_INIT = bytes((ESC, 0x40))
#: How long, how often and how many times the printer is asked whether ESC @ brought it online.
INIT_SETTLE_S, INIT_POLL_S, INIT_POLLS = 0.5, 0.05, 12
#: Faults of the link: reopening it may clear them (then ESC @ if it did not).
LINK_FAULTS = frozenset({"PRINTER_NOT_CONNECTED", "PRINTER_NO_RESPONSE", "PRINTER_PROTOCOL_ERROR"})

#: Python modules this driver needs, per URL scheme (Driver.needs).
NEEDS = {"usb": ("usb", "pyusb", "pip install pyusb; apt-get install libusb-1.0-0")}


class EscposDriver(Driver):
    name = "escpos"
    family = "printer"
    description = "ESC/POS receipt printer: real-time status, identity, test slip, paper and ribbon counters"
    schemes = ("serial", "tcp", "usb", "sim")
    shares = ("guest", "proxy", "owner")  # the POS application prints the receipts
    needs = NEEDS
    url_example = "serial:///dev/ttyS0?baudrate=38400"
    support = "beta"
    Options = EscposOptions
    codes = CODES
    #: What a person must fix (paper, cover, cutter, mechanism) is never "repaired".
    repairable = LINK_FAULTS | {"PRINTER_OFFLINE"}


    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        self._where = f"printer {device.name}"
        self._counters = CounterStore(counter_path(env.state_dir, device.name)) if env.state_dir else None
        self._state = PrinterState(self._counters, self._where)
        self._link = Link(device.url, where=self._where, open_errors=OPEN_ERRORS, lost_errors=LOST_ERRORS,
                          share=self.share, on_close=self._forget_connection, timeout=self.options.connect_timeout)
        self._proxy: PrintProxy | None = None
        self._id = IdentityReader(self._link, self.options, self._state, self.read_status, self._where)
        self._jobs = JobRunner(self._link, self.options, self._state, read_status=self.read_status,
                               graded=self._graded, identity=self._id, where=self._where,
                               terminal_id=env.terminal_id, device_name=device.name)

    def _forget_connection(self) -> None:
        self._id.forget()  # a reconnect may be another printer (the state file's memory stays)

    # -- status ------------------------------------------------------------------
    def query(self, n: int) -> int:
        """One real-time exchange: DLE EOT n -> the validated status byte."""
        return self._link.exchange(lambda s: self._query_on(s, n))

    def _query_on(self, s: Stream, n: int) -> int:
        timeout = self.options.reply_timeout
        s.flush_input()
        try:
            s.write(eot_query(n), timeout=timeout)
            data = s.read_exact(1, timeout)
        except DeviceTimeout as e:
            raise DeviceTimeout(f"{self._where} did not answer DLE EOT {n} within {timeout:g} s",
                                code="PRINTER_NO_RESPONSE") from e
        try:
            return check_eot_reply(n, data)
        except ProtocolError as e:
            raise ProtocolError(f"{self._where}: {e}", code="PRINTER_PROTOCOL_ERROR") from e

    def read_status(self, wait_free: float = 0.0) -> EscposStatus:
        """DLE EOT 1..4, decoded; raises DeviceError (silence, garbage, no device), DeviceBusy
        when another program holds the printer for longer than ``wait_free`` seconds."""
        st = self._link.exchange(self._status_on, wait_free=wait_free)
        self._state.update(lambda store: store.paper_state(st.paper == "end"))
        return st

    def _status_on(self, s: Stream) -> EscposStatus:
        """DLE EOT 1-4, or, on a printer bound to usblp (a guest's /dev/usb/lpN), the USB
        printer class port status (LPGETSTATUS): nothing is written to the printer at all."""
        port_status = getattr(s, "port_status", None)
        if callable(port_status):
            return decode_port_status(port_status())
        return decode_status(bytes(self._query_on(s, n) for n in EOT_KINDS))

    def read_identity(self) -> Identity:
        """GS I, asked now (see ``escpos.identity``)."""
        return self._id.read()

    def inventory(self, last: Result | None) -> dict[str, str | None]:
        """Maker, model and firmware as GS I (or the IEEE 1284 device ID) last told them,
        remembered in the state file: nothing is asked here. The serial number is not
        asked: GS I has no standard function for it."""
        self._state.counters()  # refresh what the state file remembers (a self-test may have asked)
        ident = self._id.identity
        if ident is None:
            return super().inventory(last)
        return {"maker": ident.maker, "model": ident.model_name or ident.model, "firmware": ident.firmware_text,
                "serial": None}

    def status(self, wait_free: float = 0.0) -> Result:
        t0 = time.perf_counter()
        try:
            st = self.read_status(wait_free)
        except DeviceError as e:
            return self._unknown(e)
        ms = round((time.perf_counter() - t0) * 1000.0, 3)
        # No GS I here: a model that ignores it would cost identity_timeout. The identity
        # check asks it; model/firmware come from what it remembered (state file).
        return self._graded(st, {"status_ms": ms})

    def _graded(self, st: EscposStatus, m: Measurements, prefix: str = "") -> Result:
        counters = self._state.counters()
        findings = grade(st)
        ribbon = self._ribbon(counters, m)
        if ribbon in ("near_end", "end"):
            findings.append(Finding(Status.WARN, "RIBBON_WORN",
                                    f"ribbon at {m.get('ribbon_used_pct')} % of its rated life"))
        fields = self._fields(st, counters, ribbon)
        if not self.options.impact and counters is not None:
            m["paper_used_mm"] = counters.paper_mm
            findings += self._paper_forecast(st, counters, fields, m)
        findings.sort(key=lambda f: f.status.severity, reverse=True)
        if not findings:
            ident = self._id.identity
            model = ident.model if ident else None
            msg = "ready: paper ok, cover closed" + (f" ({model})" if model else "")
            return Result.ok("PRINTER_OK", prefix + msg, measurements=m, fields=fields)
        top = findings[0]
        msg = "; ".join(f.message for f in findings)
        return Result(top.status, top.code, prefix + msg, measurements=m, fields=fields)

    def _paper_forecast(self, st: EscposStatus, counters: Counters, fields: dict[str, Any],
                        m: Measurements) -> list[Finding]:
        """``paper_remaining_pct`` and ``paper_days_left`` (escpos.forecast), and
        PAPER_LOW_FORECAST before the near-end sensor trips."""
        o = self.options
        if self.share == "guest":  # the POS application's receipts are not counted: no honest figure
            fields["paper_remaining_pct"] = fields["paper_days_left"] = None
            return []
        roll = forecast.roll_length_mm(o.roll_length_m, o.paper_width_mm)
        left = forecast.remaining_pct(counters.paper_mm, roll, st.paper == "near_end")
        days = forecast.days_left(left, roll, forecast.usage_per_day(counters.daily_mm, dt.date.today()))
        fields["paper_remaining_pct"], fields["paper_days_left"] = left, days
        m["paper_remaining_pct"] = left
        if days is not None:
            m["paper_days_left"] = days
        if days is not None and days < o.paper_warn_days and st.paper == "ok":
            return [Finding(Status.WARN, "PAPER_LOW_FORECAST",
                            f"paper for about {days:g} days left ({left:g} % of the roll)")]
        return []

    def _unknown(self, e: DeviceError) -> Result:
        """A status that could not be read, as a result that still carries the counters and
        the remembered model (the heartbeat's fields): the one place this driver makes a
        result from an error."""
        counters = self._state.counters()
        m: Measurements = dict(e.facts)  # the facts: path/host, reason
        ribbon = self._ribbon(counters, m)
        return Result(e.status, e.code, str(e), measurements=m, fields=self._fields(None, counters, ribbon))

    def _fields(self, st: EscposStatus | None, counters: Counters | None, ribbon: str | None) -> dict[str, Any]:
        ident = self._id.identity
        f: dict[str, Any] = {
            "paper": st.paper if st else "unknown",
            "cover": st.cover if st else "unknown",
            "ribbon": ribbon,
            "paper_remaining_pct": None,  # thermal printers: set by _paper_forecast
            "paper_days_left": None,
            "ribbon_days_left": self._ribbon_days(counters),
            "model": ident.model if ident else None,
            "firmware": ident.firmware_text if ident else None,
        }
        if st is not None:
            f["online"] = not st.offline
            f["errors"] = st.error_flags
            f["drawer_pin3"] = "high" if st.drawer_pin3_high else "low"
            level = self.options.drawer_open_level
            if level:
                f["drawer"] = "open" if (st.drawer_pin3_high == (level == "high")) else "closed"
            f["feed_button"] = st.feed_button
            f["status_bytes"] = st.hex()
        if counters is not None:
            f["counters"] = {"lines_printed": counters.lines_total, "cuts": counters.cuts_total,
                             "paper_mm": counters.paper_mm, "paper_end_at": counters.paper_end_at}
            if self.options.impact:
                f["counters"].update(ribbon_lines=counters.ribbon_lines,
                                     ribbon_changed_at=counters.ribbon_changed_at)
        return f

    def _ribbon_days(self, counters: Counters | None) -> float | None:
        """``ribbon_days_left`` (escpos.forecast): impact printers with a rated ribbon life and
        usage on record, not as a guest (the POS application's receipts are not counted)."""
        o = self.options
        if not o.impact or counters is None or self.share == "guest":
            return None
        per_day = forecast.usage_per_day(counters.daily_lines, dt.date.today())
        return forecast.ribbon_days_left(counters.ribbon_lines, o.ribbon_life_lines, per_day)

    def _ribbon(self, counters: Counters | None, m: Measurements) -> str | None:
        if not self.options.impact:
            return None
        if counters is None:
            return "unknown"
        state, pct = ribbon_grade(counters.ribbon_lines, self.options.ribbon_life_lines,
                                  self.options.ribbon_warn_pct)
        m["ribbon_lines"] = counters.ribbon_lines
        if pct is not None:
            m["ribbon_used_pct"] = pct
        days = self._ribbon_days(counters)
        if days is not None:
            m["ribbon_days_left"] = days
        return state

    # -- self-repair (docs/self-repair.md) -----------------------------------------------
    def repair(self, result: Result, deadline: float) -> list[str]:
        """Safe steps before ``result``'s fault is reported: as owner or proxy only, between
        jobs only (``Link.lock`` held, no proxy job under way). A link fault: reopen (and
        reset the USB port with ``usb_reset``), read the status again; still a fault, or
        the printer offline: ESC @. Returns the steps tried; stops at ``deadline``."""
        if self.share == "guest" or result.code not in self.repairable:
            return []  # the POS application owns the printer: nothing is sent, nothing reset
        if not self._link.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return []  # a job holds the printer until the deadline: it is not offline after all
        try:
            if self._proxy is not None and self._proxy.in_job:
                return []  # the rest of a job may still be offered: nothing may come between
            return self._repair_steps(result.code, deadline)
        finally:
            self._link.lock.release()

    def _repair_steps(self, code: str, deadline: float) -> list[str]:
        tried: list[str] = []
        if code in LINK_FAULTS:
            tried += self._reopen(deadline)
            if not self._still_faulty(deadline):
                return tried
        if time.monotonic() >= deadline:
            return tried
        try:
            self._link.exchange(lambda s: s.write(ESC_INIT, timeout=self._left(deadline)), retry=False)
        except DeviceError:
            return tried  # the printer cannot be reached: ESC @ was not sent
        self._settle(deadline)
        return [*tried, "init"]

    def _settle(self, deadline: float) -> None:
        """Give the printer time to execute ESC @, which it does in buffer order: ask DLE
        EOT 1 (real time, harmless) until it is online, for at most INIT_SETTLE_S and
        INIT_POLLS questions. Nothing else tells when ESC @ ran: GS r would, but a printer
        that stays offline answers it late, into whatever comes next (a POS job's stream)."""
        end = min(deadline, time.monotonic() + INIT_SETTLE_S)
        pause = threading.Event()
        for _ in range(INIT_POLLS):
            try:
                if not self.query(1) & OFFLINE_BIT:
                    return
            except DeviceError:
                return
            left = end - time.monotonic()
            if left <= 0:
                return
            pause.wait(min(INIT_POLL_S, left))  # the pace of the questions, not a wait for an answer

    def _reopen(self, deadline: float) -> list[str]:
        """Drop the link; reset the USB port first when allowed. The next exchange reopens."""
        steps = ["reopen"]
        if self.options.usb_reset and self.device.url is not None and self.device.url.scheme == "usb":
            try:
                stream = self._link.open()
                reset = getattr(stream, "reset_port", None)
                if callable(reset):
                    steps = ["usb_reset", "reopen"]
                    reset()
            except DeviceError:
                pass  # not there to reset, or the reset failed: reopening is all there is
        self._link.reset()
        return steps

    def _still_faulty(self, deadline: float) -> bool:
        if time.monotonic() >= deadline:
            return True
        try:
            st = self.read_status()
        except DeviceError:
            return True
        return any(f.status in (Status.FAIL, Status.UNKNOWN) for f in grade(st))

    def _left(self, deadline: float) -> float:
        return max(0.05, min(self.options.reply_timeout, deadline - time.monotonic()))

    # -- checks ------------------------------------------------------------------
    def checks(self) -> list[Check]:
        return [
            Check("status", Level.INTERNAL, lambda ctx: self.status(wait_free=self._patience(ctx)),
                  "paper, cover, errors (DLE EOT 1-4)"),
            Check("identity", Level.INTERNAL, self._id.check, "model and firmware (GS I)"),
            Check("slip", Level.EXTERNAL, self._check_slip, "print a test slip and confirm the printer is ready"),
        ]

    def _patience(self, ctx: CheckContext) -> float:
        """How long a self-test check waits for a printer the POS application holds: half
        of what is left, so the exchange itself still fits (0 for an owner: never busy)."""
        return ctx.remaining() / 2 if self.share == "guest" else 0.0

    def _check_slip(self, ctx: CheckContext) -> Result:
        """The test slip; as a guest, in one hold of the printer (status, job, status after),
        once it is free, and never while the POS application has it open in business hours."""
        if self.share != "guest":
            return self._jobs.check_slip(ctx)
        return self._link.exchange(lambda s: self._guest_slip(s, ctx), retry=False, wait_free=self._patience(ctx))

    def _guest_slip(self, s: Stream, ctx: CheckContext) -> Result:
        """Not inside business hours or on a blackout date; and, with no business hours
        configured, not while another program visibly has the port open."""
        path = s.where.get("path")
        holders = other_openers(path) if path else []
        refusal = self.env.quiet_time_refusal()
        if refusal and (self.env.business_hours is not None or holders):
            who = f"the POS application (process {holders[0]}) has it open" if holders else "it is shared"
            raise DeviceBusy(f"{self._where}: {who} and it is not the quiet window ({refusal}): "
                             "the test slip waits for it",
                             facts={"path": path, "reason": "quiet_window",
                                    **({"holder_pid": holders[0]} if holders else {})})
        return self._jobs.check_slip(ctx)

    def print_lines(self, lines: list[str]) -> None:
        """Print plain text lines, feed and cut (for a visit report); see ``JobRunner``."""
        self._jobs.print_lines(lines)

    # -- the print proxy (share = "proxy") ----------------------------------------------
    def serve(self, notify: Callable[[Result], None]) -> None:
        """In proxy mode, start the print proxy the POS application prints through
        (``escpos.proxy``); every job it passes feeds the counters, a lost one is an event."""
        sharing = getattr(self.device, "sharing", None)
        if self.share != "proxy" or sharing is None:
            return

        def lost(client: str, n: int, reason: str) -> None:
            notify(Result.fail("PRINT_JOB_LOST", f"{self._where}: a print job from {client} could not be printed "
                               f"({n} bytes lost): {reason}", facts={"client": client, "bytes_lost": n},
                               fields={"client": client}, measurements={"bytes_lost": n}))

        self._proxy = PrintProxy(self._link, listen=sharing.proxy_listen, pty_path=sharing.proxy_pty or None,
                                 job_idle=sharing.job_idle, job_timeout=sharing.job_timeout, on_job=self._proxied,
                                 on_lost=lost, line_mm=self.options.line_height_mm, where=self._where)
        self._proxy.start()

    def _proxied(self, counts: JobCounts, client: str) -> None:
        self._state.update(lambda store: store.add_printed(counts.lines, round(counts.paper_mm, 1), counts.cuts))

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
        self._link.close()
