"""Driver ``megatec``: a UPS speaking the Megatec "Q1" protocol on a serial line.

URL: ``serial:///dev/ttyS1`` (2400 8N1 unless the URL says otherwise) or ``sim://megatec``.
Every status query sends ``Q1``; the rating (``F``, for the battery charge estimate) and
identity (``I``, for the model) are asked once per opened port, each given only
``info_timeout`` to start answering; the first one a unit ignores ends the asking and is
remembered in the state dir (``megatec_memo``), so a Q1-only unit costs that wait once.
Replies end at the CR terminator, never on a timeout; a reply that does not parse is a
protocol error naming the raw line. The port is reached through a ``Link``
(``drivers/transport/link.py``): as an owner (the default: no POS application talks to the
UPS line) it stays open between queries and a stale one is reopened once after an I/O
error; with ``share = "guest"`` (a line another program also polls) every query opens,
locks, asks and closes, like the printer's guest mode. A UPS gone silent or garbled on a port
held open gets the port reopened once per fault episode (self-repair, docs/self-repair.md).

Checks: ``status`` (internal); ``battery_test`` (external, only with ``battery_test =
true``): the Megatec ``T`` 10-second battery test, run only outside business hours
([schedule], or the device's ``business_hours`` option) and blackout dates, and never
when the battery is already low or on battery. Each test's voltage before and lowest under
test are kept in the state dir (``battery_health``); their trend gives
``battery_health_pct`` and BATTERY_AGED (warn) when the drop under test has grown.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from posagent.core.base import Check, CheckContext, Driver, Level, Measurements, Result
from posagent.core.errors import DeviceError, DeviceIOError, DeviceTimeout, ProtocolError
from posagent.core.values import Duration, HourRange
from posagent.drivers import battery_health as bh
from posagent.drivers.megatec import proto as mp
from posagent.drivers.megatec.codes import CODES
from posagent.drivers.megatec.memo import SilenceMemo, memo_path
from posagent.drivers.transport import LineOverflow, Stream
from posagent.drivers.transport.link import ErrorTable, Link, Remap
from posagent.drivers.ups_common import UpsReading, grade, quiet_reason

log = logging.getLogger(__name__)

TEST_SECONDS = 10.0  # the length of the Megatec T test
_WRITE_ERRORS: dict[str, str] = {}  # memo file -> the last error logged: each is logged once per process
_POLL_GAP = 0.5  # pause between Q1 polls during a test: a read with this deadline
#: The link broke mid-query (after the one reopen of a stale port): the UPS is not answering.
LOST_ERRORS: ErrorTable = {DeviceIOError: Remap(code="UPS_NO_RESPONSE", message="{where} link lost: {error}")}


@dataclass(frozen=True)
class MegatecOptions:
    reply_timeout: Duration = Duration(1.5)  # per query; 47 bytes at 2400 bps take 0.2 s
    info_timeout: Duration = Duration(0.3)  # wait for F / I to start answering (many units ignore them)
    battery_voltage_nominal: float = 0.0  # 0: from the F reply
    battery_voltage_low: float = 0.0  # 0: 104/120 of nominal (NUT's guess)
    battery_voltage_high: float = 0.0  # 0: 130/120 of nominal
    battery_packs: float = 0.0  # 0: detect (NUT's factor list)
    overload_pct: float = 100.0  # load at or above this: UPS_OVERLOAD (0 = never)
    ignore_bypass_bit: bool = False  # bit 5 set in normal operation (some OMRON firmware)
    ignore_shutdown_bit: bool = False  # bit 1 stuck at 1 (NUT's ignoresab)
    battery_test: bool = False  # offer the external 10-second battery test
    business_hours: HourRange | None = None  # overrides [schedule] business_hours for this UPS
    battery_aged_pct: float = 70.0  # BATTERY_AGED below this battery_health_pct (0 = never)

    def __post_init__(self) -> None:
        if not 0 <= self.battery_aged_pct <= 100:
            raise ValueError("battery_aged_pct must be between 0 and 100")
        if self.battery_voltage_low and self.battery_voltage_high \
                and self.battery_voltage_low >= self.battery_voltage_high:
            raise ValueError("battery_voltage_low must be below battery_voltage_high")
        if min(self.battery_voltage_nominal, self.battery_voltage_low, self.battery_voltage_high,
               self.battery_packs) < 0:
            raise ValueError("battery voltages and packs cannot be negative")
        if not 0 < self.reply_timeout <= 30:
            raise ValueError("reply_timeout must be between 0 and 30 s")
        if not 0 < self.info_timeout <= 30:
            raise ValueError("info_timeout must be between 0 and 30 s")


class MegatecDriver(Driver):
    name = "megatec"
    family = "ups"
    description = "UPS on a serial line speaking Megatec Q1 (most small line-interactive UPSes)"
    schemes = ("serial", "sim")
    shares = ("owner", "guest")  # no POS application talks to the UPS line (NUT drivers hold theirs)
    repairable = frozenset({"UPS_NO_RESPONSE", "UPS_PROTOCOL_ERROR"})  # the link, never the UPS itself
    url_example = "serial:///dev/ttyS1?baudrate=2400"
    support = "beta"
    codes = CODES
    Options = MegatecOptions

    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        self._link = Link(device.url, where="UPS", lost_errors=LOST_ERRORS, on_close=self._forget_connection,
                          serial_defaults={"baudrate": 2400}, share=self.share)
        self._rating: mp.Rating | None = None
        self._identity: mp.Identity | None = None
        self._asked_info = False
        self._memo = SilenceMemo(memo_path(env.state_dir, device.name)) if env.state_dir else None
        self._battery_log = bh.BatteryLog(bh.log_path(env.state_dir, device.name)) if env.state_dir else None

    def repair(self, result: Result, deadline: float) -> list[str]:
        """docs/self-repair.md: a UPS gone silent or garbled on a port held open gets the
        port reopened once per fault episode (its 2400 8N1 applied again: another program
        may have changed the line's settings under it); nothing is sent to the UPS."""
        return self._link.reopen(deadline) if result.code in self.repairable else []

    def _forget_connection(self) -> None:
        self._asked_info = False  # F and I are asked again on the next port opened

    # -- link ------------------------------------------------------------------
    @staticmethod
    def _read_line(stream: Stream, command: str, timeout: float) -> bytes:
        try:
            return stream.read_until(b"\r", timeout, max_bytes=mp.MAX_LINE)
        except DeviceTimeout:
            partial = stream.read_available(0)
            if partial:
                raise ProtocolError(f"{command} reply truncated (no CR within {timeout:g} s): {mp.show(partial)}",
                                    code="UPS_PROTOCOL_ERROR") from None
            raise DeviceTimeout(f"UPS on {stream.name} did not answer {command} within {timeout:g} s",
                                code="UPS_NO_RESPONSE") from None

    def _query(self, command: str, timeout: float, *, flush: bool = True, start: float | None = None) -> bytes:
        """Send one command, return its CR-terminated reply line (one reopen of a stale port).
        ``start``: a shorter wait for the first byte (for queries many units ignore)."""
        return self._link.exchange(lambda s: self._query_on(s, command, timeout, flush, start))

    def _query_on(self, stream: Stream, command: str, timeout: float, flush: bool, start: float | None) -> bytes:
        try:
            if flush:
                stream.flush_input()
            stream.write(command.encode("ascii") + b"\r", timeout)
            if start is None:
                return self._read_line(stream, command, timeout)
            head = self._first_byte(stream, command, start)
            try:
                return head if head == b"\r" else head + self._read_line(stream, command, timeout)
            except DeviceTimeout:
                raise ProtocolError(f"{command} reply truncated (no CR within {timeout:g} s): "
                                    f"{mp.show(head)}", code="UPS_PROTOCOL_ERROR") from None
        except LineOverflow:
            # The line is noise, the link is fine: no reopen-and-retry, but start the next
            # query on a fresh port.
            self._link.reset()
            raise ProtocolError(f"{command} reply: {mp.MAX_LINE} bytes without a CR (line noise or "
                                "wrong baud rate)", code="UPS_PROTOCOL_ERROR") from None

    @staticmethod
    def _first_byte(stream: Stream, command: str, timeout: float) -> bytes:
        try:
            return stream.read_exact(1, timeout)
        except DeviceTimeout:
            raise DeviceTimeout(f"UPS on {stream.name} did not answer {command} within {timeout:g} s",
                                code="UPS_NO_RESPONSE") from None

    def _info(self) -> None:
        """F and I, once per opened port; a unit that echoes them (its "unknown command") has
        none. Each gets ``info_timeout`` to start its reply; the first one left unanswered ends
        the asking (a unit that ignores F ignores I too) and is remembered for INFO_RETRY_S in
        the state dir, so it is not waited for again by this or the next process."""
        if self._asked_info:
            return
        self._asked_info = True
        self._rating = self._identity = None
        now = time.time()
        remembered = self._memo.silent_from(now) if self._memo is not None else None
        start = min(self.options.info_timeout, self.options.reply_timeout)
        silent: str | None = None
        for command, parse in (("F", mp.parse_f), ("I", mp.parse_i)):
            if command == remembered:
                break
            try:
                value = parse(self._query(command, self.options.reply_timeout, start=start))
            except ProtocolError:
                value = None  # echoed or junk: no rating / model
            except DeviceTimeout:
                silent = command
                break
            if command == "F":
                self._rating = value  # type: ignore[assignment]
            else:
                self._identity = value  # type: ignore[assignment]
        if remembered is None:
            self._remember(silent, now)

    def _remember(self, silent: str | None, now: float) -> None:
        memo = self._memo
        if memo is None:
            return
        try:
            memo.store(silent, now)
        except OSError as e:
            if _WRITE_ERRORS.get(memo.path) != str(e):
                _WRITE_ERRORS[memo.path] = str(e)
                log.warning("UPS %s: cannot update %s: %s (logged once)", self.device.name, memo.path, e)

    def _q1(self) -> mp.Q1Status:
        return self._parse_q1(self._query("Q1", self.options.reply_timeout))

    @staticmethod
    def _parse_q1(raw: bytes) -> mp.Q1Status:
        try:
            return mp.parse_q1(raw)
        except ProtocolError as e:
            raise ProtocolError(str(e), code="UPS_PROTOCOL_ERROR") from None

    # -- reading ---------------------------------------------------------------
    def reading(self, q: mp.Q1Status) -> UpsReading:
        opts: MegatecOptions = self.options
        nominal = opts.battery_voltage_nominal or (self._rating.battery_voltage if self._rating else None)
        est = mp.estimate_charge(q.battery_voltage, nominal, low=opts.battery_voltage_low or None,
                                 high=opts.battery_voltage_high or None, packs=opts.battery_packs or None)
        tokens = mp.status_tokens(q, ignore_bypass_bit=opts.ignore_bypass_bit,
                                  ignore_shutdown_bit=opts.ignore_shutdown_bit)
        extra = {"output_voltage_v": q.output_voltage, "input_frequency_hz": q.input_frequency,
                 "temperature_c": q.temperature, "battery_voltage_v": est.pack_voltage if est else q.battery_voltage,
                 "ups_type": "standby" if q.standby_type else "online"}
        model = self._identity.label if self._identity and self._identity.label else None
        return UpsReading(tokens=tokens, battery_charge_pct=est.charge_pct if est else None,
                          input_voltage_v=q.input_voltage, load_pct=q.load_pct, model=model,
                          charge_approximate=est is not None,
                          alarm="UPS selftest failed" if q.ups_failed else None, measurements=extra)

    def status(self) -> Result:
        with self._link.lock:  # Q1 and the once-per-port F and I belong together
            q = self._q1()
            self._info()
            return bh.apply(grade(self.reading(q), overload_pct=self.options.overload_pct), self._health())

    def inventory(self, last: Result | None) -> dict[str, str | None]:
        """What the UPS said to ``I`` (company, model, version) when the port was opened:
        no new request. Megatec has no serial number command."""
        ident = self._identity
        if ident is None:
            return super().inventory(last)
        return {"maker": ident.company or None, "model": ident.model or None,
                "firmware": ident.version or None, "serial": None}

    def _health(self, tests: list[bh.BatteryTest] | None = None) -> bh.Health:
        """The battery's health from the kept tests (none kept: unknown)."""
        if tests is None:
            tests = self._battery_log.tests() if self._battery_log is not None else []
        return bh.assess(tests, aged_pct=self.options.battery_aged_pct)

    def _keep_test(self, test: bh.BatteryTest) -> list[bh.BatteryTest] | None:
        log_ = self._battery_log
        if log_ is None:
            return None
        try:
            return log_.add(test)
        except OSError as e:
            if _WRITE_ERRORS.get(log_.path) != str(e):
                _WRITE_ERRORS[log_.path] = str(e)
                log.warning("UPS %s: cannot update %s: %s (logged once)", self.device.name, log_.path, e)
            return None

    # -- self-test ---------------------------------------------------------------
    def checks(self) -> list[Check]:
        out = [Check("status", Level.INTERNAL, lambda ctx: self.status(), "UPS status (Q1)")]
        if self.options.battery_test:
            out.append(Check("battery_test", Level.EXTERNAL, self.battery_test, "10-second battery test (T)",
                             timeout=max(self.timeout, TEST_SECONDS + 15.0)))
        return out

    def battery_test(self, ctx: CheckContext) -> Result:
        now = dt.datetime.now()
        refusal = self.env.quiet_time_refusal(self.options.business_hours, now)
        if refusal:
            return Result.ok("UPS_TEST_SKIPPED", f"battery test not run: {refusal}",
                             measurements={"reason": quiet_reason(self.env, self.options.business_hours, now)})
        with self._link.lock:
            before = self.status()
            # Never on a low battery, on battery, or a UPS in trouble: the result says why.
            if before.code not in ("UPS_OK", "UPS_REPLACE_BATTERY", "BATTERY_AGED"):
                return before.with_message("battery test not run: " + before.message)
            return self._run_test(ctx, before)

    def _run_test(self, ctx: CheckContext, before: Result) -> Result:
        self._send("T", flush=True)
        t0 = time.monotonic()
        deadline = min(ctx.deadline - 1.0, t0 + TEST_SECONDS + 10.0)
        seen_test = weak = False
        v_before = before.measurements.get("battery_voltage_v")
        v_min: float | None = None
        # First Q1 without flushing: a unit without T echoes "T" before the Q1 reply.
        first = self._query("Q1", self.options.reply_timeout, flush=False)
        if first.strip() == b"T":
            return Result.unknown("UPS_TEST_NOT_SUPPORTED", "the UPS echoed T: it has no battery test")
        q = self._parse_q1(first)
        for _ in range(int((deadline - t0) / _POLL_GAP) + 2):
            if q.test_in_progress or q.utility_fail:
                seen_test = True
            weak = weak or q.battery_low or q.ups_failed
            v = self.reading(q).measurements.get("battery_voltage_v")
            if isinstance(v, float) and (v_min is None or v < v_min):
                v_min = v
            if seen_test and not q.test_in_progress and not q.utility_fail:
                break
            if not seen_test and time.monotonic() - t0 > 3.0:
                break
            if time.monotonic() >= deadline:
                self._query_silent("CT")
                return Result.unknown("UPS_TEST_NOT_CONFIRMED", f"battery test still running after "
                                      f"{time.monotonic() - t0:.0f} s; cancelled it (CT)")
            # Pace the polls: a read with a deadline, not a sleep.
            self._link.exchange(lambda s: s.read_available(_POLL_GAP))
            q = self._q1()
        m: Measurements = {"test_duration_s": round(time.monotonic() - t0, 1),
                                      "battery_voltage_before_v": v_before, "battery_voltage_min_v": v_min}
        tests: list[bh.BatteryTest] | None = None
        if seen_test and isinstance(v_before, float) and v_min is not None:
            m["battery_drop_test_v"] = round(v_before - v_min, 3)
            load = before.measurements.get("load_pct")
            tests = self._keep_test(bh.BatteryTest(time.time(), drop_v=round(v_before - v_min, 3),
                                                   voltage_before_v=v_before, voltage_min_v=v_min,
                                                   load_pct=float(load) if isinstance(load, int | float) else None))
        if weak:
            return Result.fail("UPS_TEST_FAILED", "battery went low during the 10-second test: the battery is "
                               "worn out", measurements=m, fields=before.fields)
        if not seen_test:
            return Result.unknown("UPS_TEST_NOT_CONFIRMED", "the UPS accepted T but never reported a test "
                                  "in progress", measurements=m, fields=before.fields)
        drop = f" (battery {v_before:g} V -> {v_min:g} V)" if isinstance(v_before, float) and v_min else ""
        passed = Result.ok("UPS_TEST_PASSED", f"10-second battery test passed{drop}", measurements=m,
                           fields=before.fields)
        return bh.apply(passed, self._health(tests))

    def _send(self, command: str, *, flush: bool) -> None:
        """A command without a reply of its own (T starts the test, CT cancels it): sent
        once, never again on a reopened port."""
        def send(stream: Stream) -> None:
            if flush:
                stream.flush_input()
            stream.write(command.encode("ascii") + b"\r")

        self._link.exchange(send, retry=False)

    def _query_silent(self, command: str) -> None:
        try:
            self._send(command, flush=False)
        except DeviceError:
            pass

    def close(self) -> None:
        self._link.close(wait=0.0)  # as before the Link: never wait for a query in progress
