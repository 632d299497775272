"""Driver ``nut``: a UPS behind Network UPS Tools' ``upsd``, over its text protocol.

URL: ``nut://[user:pass@]host[:port]/upsname`` (port 3493 by default). The client
(``nut.client``) is written on the socket: one command per line, replies ``VAR <ups> <var> "<value>"`` with
``\\"`` and ``\\\\`` escapes inside the quotes, ``BEGIN LIST``/``END LIST`` framing, and
``ERR <TOKEN>`` errors, mapped to codes:

    UNKNOWN-UPS                    UPS_UNKNOWN_NAME (with the names upsd knows)
    ACCESS-DENIED, *-REQUIRED ...  UPS_ACCESS_DENIED
    DATA-STALE                     UPS_DATA_STALE
    DRIVER-NOT-CONNECTED           UPS_DRIVER_NOT_CONNECTED
    FEATURE-NOT-CONFIGURED (TLS)   UPSD_TLS_UNAVAILABLE
    connection refused / timeout   UPSD_UNREACHABLE

Values are reported as upsd gives them (``battery.charge``, ``battery.runtime``,
``ups.status`` tokens). With credentials in the URL the client sends USERNAME, PASSWORD
and (option ``login``) LOGIN, which needs an ``upsmon secondary`` line in upsd.users.
``starttls = true`` upgrades the connection with STARTTLS before anything else.

External check ``battery_test`` (option, off by default): ``INSTCMD <ups>
test.battery.start.quick`` outside business hours and blackout dates, never on a low battery.
Each test keeps ``battery.runtime``, ``ups.load`` and ``battery.charge`` in the state dir
(``battery_health``); their trend, and the battery's age from ``battery.date`` (else
``battery.mfr.date``), give ``battery_health_pct`` and BATTERY_AGED (warn).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from posagent.core.base import Check, CheckContext, Driver, Level, Measurements, Result
from posagent.core.errors import DeviceError
from posagent.core.logonce import warn_once
from posagent.core.values import Duration, HourRange
from posagent.drivers import battery_health as bh
from posagent.drivers.nut.client import NutError, UpsdClient, quote, split_words
from posagent.drivers.nut.codes import CODES
from posagent.drivers.ups_common import UpsReading, grade, parse_number, quiet_reason

log = logging.getLogger(__name__)

__all__ = ["NutDriver", "NutError", "NutOptions", "UpsdClient", "quote", "reading_from_vars", "split_words"]

@dataclass(frozen=True)
class NutOptions:
    timeout: Duration = Duration(3.0)  # connect and each reply
    starttls: bool = False
    tls_ca_file: str = ""
    tls_verify: bool = True
    login: bool = True  # send LOGIN when the URL has a user (needs 'upsmon secondary')
    overload_pct: float = 100.0  # ups.load at or above this: UPS_OVERLOAD (0 = only the OVER token)
    battery_test: bool = False
    business_hours: HourRange | None = None  # overrides [schedule] business_hours for this UPS
    test_command: str = "test.battery.start.quick"
    battery_aged_pct: float = 70.0  # BATTERY_AGED below this battery_health_pct (0 = never)
    battery_life_years: float = 4.0  # BATTERY_AGED when battery.date is older (0 = never); 3-5 years is usual

    def __post_init__(self) -> None:
        if not 0 <= self.battery_aged_pct <= 100 or not 0 <= self.battery_life_years <= 50:
            raise ValueError("battery_aged_pct must be 0-100 and battery_life_years 0-50")
        if not 0 < self.timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 s")
        if not self.test_command or " " in self.test_command:
            raise ValueError("test_command must be one NUT instant command name, e.g. test.battery.start.quick")


#: What a UPS can report at all; a value outside is a protocol error of that UPS, not a reading.
_PLAUSIBLE = {"battery.charge": (0.0, 100.0), "ups.load": (0.0, 300.0), "input.voltage": (0.0, 1000.0),
              "output.voltage": (0.0, 1000.0), "battery.voltage": (0.0, 1000.0),
              "battery.runtime": (0.0, 10_000_000.0), "input.frequency": (0.0, 1000.0),
              "ups.temperature": (-60.0, 200.0)}


def reading_from_vars(v: dict[str, str]) -> UpsReading:
    """The common reading from upsd's variables, values exactly as upsd gave them."""
    status = v.get("ups.status")
    if status is None:
        raise DeviceError("upsd gave no ups.status for this UPS", code="UPS_PROTOCOL_ERROR")
    tokens = status.split()
    if tokens == ["WAIT"]:
        raise DeviceError("upsd has no data from the UPS driver yet (ups.status WAIT)", code="UPS_NO_RESPONSE")
    extra: Measurements = {"battery_voltage_v": parse_number(v.get("battery.voltage")),
             "output_voltage_v": parse_number(v.get("output.voltage")),
             "input_frequency_hz": parse_number(v.get("input.frequency")),
             "temperature_c": parse_number(v.get("ups.temperature"))}
    model = (v.get("ups.model") or v.get("device.model") or "").strip() or None
    for name, (lo, hi) in _PLAUSIBLE.items():
        value = parse_number(v.get(name))
        if value is not None and not lo <= value <= hi:
            raise DeviceError(f"upsd reports {name} = {value:g}, outside {lo:g}..{hi:g}: no UPS measures that "
                              "(a broken driver or UPS)", code="UPS_PROTOCOL_ERROR")
    return UpsReading(tokens=tokens, battery_charge_pct=parse_number(v.get("battery.charge")),
                      battery_runtime_s=parse_number(v.get("battery.runtime")),
                      input_voltage_v=parse_number(v.get("input.voltage")), load_pct=parse_number(v.get("ups.load")),
                      model=model, alarm=v.get("ups.alarm") or None, measurements=extra)


def identity_from_vars(v: dict[str, str]) -> dict[str, str | None]:
    """maker/model/firmware/serial from upsd's variables (NUT's ups.* names, else device.*)."""
    def pick(*names: str) -> str | None:
        return next((v[n].strip()[:80] for n in names if (v.get(n) or "").strip()), None)

    return {"maker": pick("ups.mfr", "device.mfr"), "model": pick("ups.model", "device.model"),
            "firmware": pick("ups.firmware", "ups.firmware.aux"), "serial": pick("ups.serial", "device.serial")}


class NutDriver(Driver):
    name = "nut"
    family = "ups"
    description = "UPS behind a Network UPS Tools upsd (local or on the network)"
    schemes = ("nut",)
    url_example = "nut://monuser:secret@127.0.0.1:3493/ups"
    support = "beta"
    codes = CODES
    Options = NutOptions

    @property
    def ups(self) -> str:
        assert self.device.url is not None
        return self.device.url.path

    def _connect(self, *, login: bool) -> UpsdClient:
        url = self.device.url
        assert url is not None and url.port is not None
        opts: NutOptions = self.options
        client = UpsdClient(url.host, url.port, min(float(opts.timeout), self.timeout))
        client.connect()
        try:
            if opts.starttls:
                client.starttls(opts.tls_ca_file, opts.tls_verify)
            if url.username:
                client.authenticate(url.username, url.password, self.ups if login and opts.login else None)
        except BaseException:
            client.close()
            raise
        return client

    def _vars(self, client: UpsdClient) -> dict[str, str]:
        try:
            return client.list_vars(self.ups)
        except NutError as e:
            if e.token == "UNKNOWN-UPS":
                raise self._unknown_ups(client) from None
            if e.token == "DATA-STALE":
                raise NutError(e.token, f"{client.where}: the data of UPS '{self.ups}' is stale, its driver "
                               "stopped updating (ERR DATA-STALE)", e.code,
                               {**client.facts, "ups": self.ups}) from None
            if e.token == "DRIVER-NOT-CONNECTED":
                raise NutError(e.token, f"{client.where} runs, but the driver of UPS '{self.ups}' is not "
                               "connected (ERR DRIVER-NOT-CONNECTED)", e.code,
                               {**client.facts, "ups": self.ups}) from None
            raise

    def _unknown_ups(self, client: UpsdClient) -> DeviceError:
        facts: dict[str, Any] = {**client.facts, "ups": self.ups, "nut_error": "UNKNOWN-UPS"}
        try:
            known = sorted(client.list_ups())
            names = client.scrub(", ".join(known)) or "none"
            if known:
                facts["ups_names"] = names
        except DeviceError:
            names = "unknown"
        return DeviceError(f"{client.where} has no UPS named '{self.ups}' (ERR UNKNOWN-UPS; it has: {names})",
                           code="UPS_UNKNOWN_NAME", measurements=facts)

    def _battery_log(self) -> bh.BatteryLog | None:
        return bh.BatteryLog(bh.log_path(self.env.state_dir, self.device.name)) if self.env.state_dir else None

    def _health(self, variables: dict[str, str], tests: list[bh.BatteryTest] | None = None) -> bh.Health:
        """The health from the kept tests and the battery's date: installed, else made, or the
        day ``posagent ups battery-changed`` recorded if that is later (a UPS that keeps no
        battery.date, or was not told of the new battery)."""
        log_ = self._battery_log()
        kept = log_.load() if log_ is not None else bh.Kept([])  # one read of the file a poll
        if tests is None:
            tests = kept.tests
        dates = [bh.parse_date(variables.get("battery.date")) or bh.parse_date(variables.get("battery.mfr.date")),
                 kept.changed_on]
        installed = max((d for d in dates if d is not None), default=None)
        return bh.assess(tests, aged_pct=self.options.battery_aged_pct, installed=installed,
                         life_years=self.options.battery_life_years)

    def _status_vars(self) -> tuple[Result, dict[str, str]]:
        client = self._connect(login=True)
        try:
            variables = self._vars(client)
            client.logout()
        finally:
            client.close()
        graded = grade(reading_from_vars(variables), overload_pct=self.options.overload_pct)
        self._ident = identity_from_vars(variables)
        return bh.apply(graded, self._health(variables)), variables

    def status(self) -> Result:
        return self._status_vars()[0]

    def inventory(self, last: Result | None) -> dict[str, str | None]:
        """What upsd said of the UPS at the last status read (ups.mfr, ups.model,
        ups.firmware, ups.serial, or their device.* names): no new request."""
        known: dict[str, str | None] | None = getattr(self, "_ident", None)  # set by the first status read
        return dict(known) if known else super().inventory(last)

    def checks(self) -> list[Check]:
        out = [Check("status", Level.INTERNAL, lambda ctx: self.status(), "UPS status from upsd")]
        if self.options.battery_test:
            out.append(Check("battery_test", Level.EXTERNAL, self.battery_test,
                             f"quick battery test ({self.options.test_command})"))
        return out

    def battery_test(self, ctx: CheckContext) -> Result:
        opts: NutOptions = self.options
        now = dt.datetime.now()
        refusal = self.env.quiet_time_refusal(opts.business_hours, now)
        if refusal:
            return Result.ok("UPS_TEST_SKIPPED", f"battery test not run: {refusal}",
                             measurements={"reason": quiet_reason(self.env, opts.business_hours, now)})
        before, variables = self._status_vars()
        if before.code not in ("UPS_OK", "UPS_REPLACE_BATTERY", "BATTERY_AGED"):
            return before.with_message("battery test not run: " + before.message)
        if not self.device.url or not self.device.url.username:
            return Result.unknown("UPS_ACCESS_DENIED", "battery test needs a user with 'instcmds' in upsd.users: "
                                  "put user:password in the device URL", measurements={"reason": "no_user"})
        client = self._connect(login=False)
        try:
            tokens = client.get_var(self.ups, "ups.status").split()
            if "LB" in tokens or "OB" in tokens:  # changed since the status query: re-check right before
                r = grade(UpsReading(tokens=tokens))
                return r.with_message("battery test not run: " + r.message)
            try:
                reply = client.command(f"INSTCMD {self.ups} {opts.test_command}", f"INSTCMD {opts.test_command}")
            except NutError as e:
                if e.token == "CMD-NOT-SUPPORTED":
                    return Result.unknown("UPS_TEST_NOT_SUPPORTED", f"UPS '{self.ups}' does not support "
                                          f"{opts.test_command} (ERR CMD-NOT-SUPPORTED)", fields=before.fields)
                raise
            client.logout()
        finally:
            client.close()
        started = Result.ok("UPS_TEST_STARTED", f"upsd accepted {opts.test_command} ({reply}); the UPS reports "
                            "the outcome in ups.test.result and flags a worn battery with RB at the next status",
                            measurements=before.measurements, fields=before.fields)
        return bh.apply(started, self._health(variables, self._keep_test(variables)))

    def _keep_test(self, variables: dict[str, str]) -> list[bh.BatteryTest] | None:
        """The figures upsd gave at the test (runtime, load, charge), kept for the trend."""
        log_ = self._battery_log()
        if log_ is None:
            return None

        def num(name: str) -> float | None:
            value = parse_number(variables.get(name))
            return float(value) if value is not None else None

        test = bh.BatteryTest(time.time(), runtime_s=num("battery.runtime"), load_pct=num("ups.load"),
                              charge_pct=num("battery.charge"))
        try:
            return log_.add(test)
        except OSError as e:
            warn_once(log, f"battery-log:{log_.path}", "UPS %s: cannot update %s: %s (logged once)",
                      self.device.name, log_.path, e)
            return None
