"""Driver ``escpos``: ESC/POS receipt printers (thermal and impact) over serial, TCP, USB.

Status is the agent's own: flush stale input, send ``DLE EOT n`` (n = 1..4), read exactly
one byte with a deadline, validate its fixed bits, decode bit by bit
(``escpos_status``). python-escpos is used only to compose the test slip. The stream
stays open between calls and is reopened after an I/O error (once per call). The identity
(GS I) lives in ``escpos_identity``, printing (jobs, test slip) in ``escpos_jobs``.

Codes: PRINTER_OK; warn: PAPER_NEAR_END, PRINTER_OVERHEAT (auto-recoverable error),
RIBBON_WORN; fail: PRINTER_OFFLINE, PRINTER_COVER_OPEN, PAPER_END, CUTTER_ERROR,
PRINTER_MECHANICAL_ERROR, PRINTER_UNRECOVERABLE_ERROR, SLIP_INTERRUPTED; unknown:
PRINTER_NOT_CONNECTED, PRINTER_NO_RESPONSE, PRINTER_PROTOCOL_ERROR, SLIP_NOT_CONFIRMED,
SLIP_FAILED.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from posagent.config.values import Duration
from posagent.core.base import Check, Driver, Level, Measurements, Missing, Result, Status
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound, DeviceTimeout, ProtocolError
from posagent.core.i18n import N_
from posagent.drivers.escpos.counters import Counters, CounterStore, IdentityMemo, counter_path, ribbon_grade
from posagent.drivers.escpos.identity import IDENTITY_RETRY_S
from posagent.drivers.escpos.jobs import GS_R_PAPER, OFFLINE_BIT, JobsMixin
from posagent.drivers.escpos.slip import Job
from posagent.drivers.escpos.status import (
    EOT_KINDS,
    EscposStatus,
    Finding,
    check_eot_reply,
    decode_status,
    eot_query,
    grade,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
__all__ = ["GS_R_PAPER", "IDENTITY_RETRY_S", "OFFLINE_BIT", "EscposDriver", "EscposOptions"]

_WRITE_ERRORS: dict[str, str] = {}  # state file -> the last error logged: each is logged once per process


@dataclass(frozen=True)
class EscposOptions:
    impact: bool = False  # dot-matrix: ribbon counted, text-only slip
    ribbon_life_lines: int = 0  # rated ribbon life in printed lines; 0 = unknown (count, never warn)
    ribbon_warn_pct: float = 80.0  # RIBBON_WORN from this share of the life
    paper_width_mm: float = 80.0
    line_height_mm: float = 4.23  # ESC 2 default spacing, 1/6 inch
    columns: int = 0  # characters per line; 0 = from the paper width (80 mm: 42, 58 mm: 32)
    slip_qr: bool = True  # QR code of the terminal id on the test slip (thermal only)
    cut: str = "partial"  # partial | full | none
    feed_lines: int = 4  # lines fed before the cut
    drawer_open_level: str = ""  # high | low: drawer pin 3 level meaning "open"; "" = not reported
    text_encoding: str = "ascii"  # ascii | cp437 | gb18030, for print_lines()
    reply_timeout: Duration = Duration(1.0)  # wait for one DLE EOT reply
    identity_timeout: Duration = Duration(0.3)  # wait for one GS I reply (unsupported n: no reply)
    job_timeout: Duration = Duration(30.0)  # wait for a printed job to finish (capped by the check)
    connect_timeout: Duration = Duration(3.0)  # TCP connect

    def __post_init__(self) -> None:
        if self.cut not in ("partial", "full", "none"):
            raise ValueError("cut must be partial, full or none")
        if self.drawer_open_level not in ("", "high", "low"):
            raise ValueError('drawer_open_level must be "high", "low" or "" (not reported)')
        if self.text_encoding not in ("ascii", "cp437", "gb18030"):
            raise ValueError("text_encoding must be ascii, cp437 or gb18030")
        if self.ribbon_life_lines < 0:
            raise ValueError("ribbon_life_lines cannot be negative")
        if not 0 < self.ribbon_warn_pct <= 100:
            raise ValueError("ribbon_warn_pct must be between 0 and 100")
        if not 20 <= self.paper_width_mm <= 120 or not 0 < self.line_height_mm <= 20:
            raise ValueError("paper_width_mm must be 20-120 and line_height_mm 0-20")
        if not 0 <= self.columns <= 255 or not 0 <= self.feed_lines <= 255:
            raise ValueError("columns and feed_lines must be 0-255")
        if min(self.reply_timeout, self.identity_timeout, self.job_timeout, self.connect_timeout) <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def line_columns(self) -> int:
        if self.columns:
            return self.columns
        return 42 if self.paper_width_mm >= 70 else 32


class EscposDriver(JobsMixin, Driver):
    name = "escpos"
    family = "printer"
    description = "ESC/POS receipt printer: real-time status, identity, test slip, paper and ribbon counters"
    schemes = ("serial", "tcp", "usb", "sim")
    url_example = "serial:///dev/ttyS0?baudrate=38400"
    support = "beta"
    Options = EscposOptions
    hints: ClassVar[dict[str, str]] = {
        "PRINTER_NOT_CONNECTED": N_("Reseat the printer's data cable and power cable, check that the printer is "
                                    "switched on, and check the port in the config."),
        "PRINTER_NO_RESPONSE": N_("Check the data cable and the printer's power; power-cycle the printer."),
        "PRINTER_PROTOCOL_ERROR": N_("The printer answered nonsense: check the baud rate in the config and the cable."),
        "PRINTER_OFFLINE": N_("Press the printer's online/feed button or power-cycle it; check for a paper jam."),
        "PRINTER_COVER_OPEN": N_("Close the printer cover firmly until it clicks."),
        "PAPER_END": N_("Load a new paper roll of the right width and close the cover."),
        "PAPER_NEAR_END": N_("The paper roll is nearly used up: have a new roll of the right width ready."),
        "CUTTER_ERROR": N_("Open the cover, clear the paper jam at the cutter, close the cover."),
        "PRINTER_MECHANICAL_ERROR": N_("Open the cover, clear any paper jam and free the print head carriage, then "
                                       "power-cycle the printer."),
        "PRINTER_UNRECOVERABLE_ERROR": N_("Power-cycle the printer; if the error stays, send it for service."),
        "PRINTER_OVERHEAT": N_("The print head is hot: let the printer cool down; it recovers by itself."),
        "RIBBON_WORN": N_("Check that the ribbon lever is closed and the ribbon advances while printing (print "
                          "turns faint when it does not); replace the ribbon, then run: posagent printer "
                          "ribbon-changed NAME"),
        "SLIP_INTERRUPTED": N_("The link dropped while printing: reseat the data cable, then print the test again."),
        "SLIP_NOT_CONFIRMED": N_("The printer did not finish the test slip: check the paper path and the slip."),
        "SLIP_FAILED": N_("The test slip could not be composed: reinstall posagent (python-escpos)."),
    }

    #: Message templates per code, for tables in other languages (selftest/messages.py).
    messages: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "PRINTER_OK": N_("Printer ready: paper ok, cover closed"),
        "PRINTER_NOT_CONNECTED": (N_("Printer not connected: {where} {reason}"), N_("Printer not connected: {reason}"),
                                  N_("Printer not connected: {detail}")),
        "PRINTER_NO_RESPONSE": N_("The printer does not answer"),
        "PRINTER_PROTOCOL_ERROR": N_("The printer's answer makes no sense (garbled)"),
        "PRINTER_OFFLINE": N_("Printer offline"),
        "PRINTER_COVER_OPEN": N_("Printer cover open"),
        "PAPER_END": N_("Paper end"),
        "PAPER_NEAR_END": N_("Paper near end"),
        "CUTTER_ERROR": N_("Autocutter error (paper jam?)"),
        "PRINTER_MECHANICAL_ERROR": N_("Printer mechanical error"),
        "PRINTER_UNRECOVERABLE_ERROR": N_("Unrecoverable printer error"),
        "PRINTER_OVERHEAT": N_("Print head too hot (recovers by itself)"),
        "RIBBON_WORN": N_("Ribbon at {ribbon_used_pct} % of its rated life"),
        "PRINTER_ID_OK": N_("Model {model}, firmware {firmware}"),
        "PRINTER_ID_NOT_REPORTED": N_("The printer does not report its model and firmware"),
        "PRINTER_ID_NOT_READ": N_("Identity not read: the printer is offline"),
        "SLIP_OK": N_("Test slip printed; printer ready"),
        "SLIP_INTERRUPTED": N_("The link to the printer broke during the test slip"),
        "SLIP_NOT_CONFIRMED": N_("The printer did not confirm the end of the test slip"),
        "SLIP_FAILED": (N_("The test slip could not be composed: the Python module {package} is missing"),
                        N_("The test slip could not be composed: {detail}")),
    }

    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        self._stream: Any = None
        self._lock = threading.RLock()
        self._id_memo: IdentityMemo | None = None  # GS I as asked by this instance
        self._stored_memo: IdentityMemo | None = None  # GS I as remembered in the state file
        self._counters = CounterStore(counter_path(env.state_dir, device.name)) if env.state_dir else None

    def check_environment(self) -> str | None:
        url = self.device.url
        if url is not None and url.scheme == "usb" and importlib.util.find_spec("usb") is None:
            return Missing("pyusb", "pip install pyusb; apt-get install libusb-1.0-0")
        return None

    # -- the link ----------------------------------------------------------------
    def _where(self) -> str:
        return f"printer {self.device.name}"

    def _open(self) -> Any:
        url = self.device.url
        if url is None:
            raise DeviceNotFound(f"{self._where()}: no URL configured", code="PRINTER_NOT_CONNECTED",
                                 measurements={"reason": "no_url"})
        try:
            if url.scheme == "usb":
                from posagent.drivers.transport.usb import UsbStream

                return UsbStream(url)
            from posagent.drivers.transport.stream import open_stream

            return open_stream(url, timeout=self.options.connect_timeout)
        except (DeviceNotFound, DeviceTimeout, DeviceIOError) as e:
            raise DeviceNotFound(f"{self._where()} not connected: {e}", code="PRINTER_NOT_CONNECTED",
                                 measurements=e.measurements) from e

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._id_memo = None  # a reconnect may be another printer (the state file's memory stays)
        if stream is not None:
            try:
                stream.close()
            except Exception as e:  # closing must never raise
                log.debug("closing %s: %s", self._where(), e)

    def _exchange(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run ``fn(stream)`` under the lock; after an I/O error on a stream that had been
        open since an earlier call (a stale TCP connection, a replugged adapter), reopen once."""
        with self._lock:
            for attempt in (1, 2):
                fresh = self._stream is None
                if fresh:
                    self._stream = self._open()
                try:
                    return fn(self._stream)
                except DeviceIOError as e:
                    self._drop_stream()
                    if fresh or attempt == 2 or not retry:
                        raise DeviceIOError(f"{self._where()}: link lost ({e})", code="PRINTER_NOT_CONNECTED",
                                            measurements=e.measurements) from e
                    log.info("%s: reopening after %s", self._where(), e)
            raise AssertionError("unreachable")

    # -- status ------------------------------------------------------------------
    def query(self, n: int) -> int:
        """One real-time exchange: DLE EOT n -> the validated status byte."""
        return self._exchange(lambda s: self._query_on(s, n))

    def _query_on(self, s: Any, n: int) -> int:
        timeout = self.options.reply_timeout
        s.flush_input()
        try:
            s.write(eot_query(n), timeout=timeout)
            data = s.read_exact(1, timeout)
        except DeviceTimeout as e:
            raise DeviceTimeout(f"{self._where()} did not answer DLE EOT {n} within {timeout:g} s",
                                code="PRINTER_NO_RESPONSE") from e
        try:
            return check_eot_reply(n, data)
        except ProtocolError as e:
            raise ProtocolError(f"{self._where()}: {e}", code="PRINTER_PROTOCOL_ERROR") from e

    def read_status(self) -> EscposStatus:
        """DLE EOT 1..4, decoded; raises DeviceError (silence, garbage, no device)."""
        st = self._exchange(lambda s: decode_status(bytes(self._query_on(s, n) for n in EOT_KINDS)))
        self._note_paper(st)
        return st

    def status(self) -> Result:
        t0 = time.perf_counter()
        try:
            st = self.read_status()
        except DeviceError as e:
            return self._unknown(e)
        ms = round((time.perf_counter() - t0) * 1000.0, 3)
        # No GS I here: a model that ignores it would cost identity_timeout. The identity
        # check asks it; model/firmware come from what it remembered (state file).
        return self._graded(st, {"status_ms": ms})

    def _graded(self, st: EscposStatus, m: Measurements, prefix: str = "") -> Result:
        counters = self._read_counters()
        findings = grade(st)
        ribbon = self._ribbon(counters, m)
        if ribbon in ("near_end", "end"):
            findings.append(Finding(Status.WARN, "RIBBON_WORN",
                                    f"ribbon at {m.get('ribbon_used_pct')} % of its rated life"))
        findings.sort(key=lambda f: f.status, reverse=True)
        fields = self._fields(st, counters, ribbon)
        if not self.options.impact and counters is not None:
            m["paper_used_mm"] = counters.paper_mm
        if not findings:
            model = self._identity.model if self._identity else None
            msg = "ready: paper ok, cover closed" + (f" ({model})" if model else "")
            return Result.ok("PRINTER_OK", prefix + msg, measurements=m, fields=fields)
        top = findings[0]
        msg = "; ".join(f.message for f in findings)
        return Result(top.status, top.code, prefix + msg, measurements=m, fields=fields)

    def _unknown(self, e: DeviceError) -> Result:
        try:
            status = Status.parse(e.status)
        except KeyError:
            status = Status.UNKNOWN
        code = e.code
        counters = self._read_counters()
        m: Measurements = dict(e.measurements)  # the facts: path/host, reason
        ribbon = self._ribbon(counters, m)
        return Result(status, code, str(e), measurements=m, fields=self._fields(None, counters, ribbon))

    def _fields(self, st: EscposStatus | None, counters: Counters | None, ribbon: str | None) -> dict[str, Any]:
        ident = self._identity
        f: dict[str, Any] = {
            "paper": st.paper if st else "unknown",
            "cover": st.cover if st else "unknown",
            "ribbon": ribbon,
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
        return state

    # -- counters ----------------------------------------------------------------
    def _read_counters(self) -> Counters | None:
        """The counters, and (as a side effect) the identity the state file remembers."""
        if self._counters is None:
            return None
        counters, self._stored_memo = self._counters.read_state()
        return counters

    def _store(self, update: Callable[[CounterStore], object]) -> None:
        """Update the state file; a failure is logged once per process and error, not per call."""
        store = self._counters
        if store is None:
            return
        try:
            update(store)
        except OSError as e:
            if _WRITE_ERRORS.get(store.path) != str(e):
                _WRITE_ERRORS[store.path] = str(e)
                log.warning("%s: cannot update %s: %s (logged once; counters and identity are not kept "
                            "while it cannot be written)", self._where(), store.path, e)

    def _note_paper(self, st: EscposStatus) -> None:
        self._store(lambda store: store.paper_state(st.paper == "end"))

    def _count(self, job: Job) -> None:
        self._store(lambda store: store.add_printed(job.lines, job.length_mm(self.options.line_height_mm),
                                                    job.cuts))

    # -- checks ------------------------------------------------------------------
    def checks(self) -> list[Check]:
        return [
            Check("status", Level.INTERNAL, lambda ctx: self.status(), "paper, cover, errors (DLE EOT 1-4)"),
            Check("identity", Level.INTERNAL, self._check_identity, "model and firmware (GS I)"),
            Check("slip", Level.EXTERNAL, self._check_slip, "print a test slip and confirm the printer is ready"),
        ]

    def close(self) -> None:
        got = self._lock.acquire(timeout=2.0)
        try:
            self._drop_stream()
        finally:
            if got:
                self._lock.release()
