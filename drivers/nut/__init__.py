"""Driver ``nut``: a UPS behind Network UPS Tools' ``upsd``, over its text protocol.

URL: ``nut://[user:pass@]host[:port]/upsname`` (port 3493 by default). The client is
written on the socket: one command per line, replies ``VAR <ups> <var> "<value>"`` with
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
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from posagent.config.values import Duration, HourRange
from posagent.core.base import Check, CheckContext, Driver, Level, Measurements, Result
from posagent.core.errors import DeviceError
from posagent.drivers.transport.stream import connect_reason
from posagent.drivers.ups_common import HINTS, UpsReading, grade, parse_number, quiet_reason

MAX_LINE = 8192
MAX_LIST = 5000

_AUTH = ("ACCESS-DENIED", "USERNAME-REQUIRED", "PASSWORD-REQUIRED", "INVALID-PASSWORD", "INVALID-USERNAME")


class NutError(DeviceError):
    """upsd answered ``ERR <token>``."""

    def __init__(self, token: str, message: str, code: str, measurements: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code, status="unknown", measurements={**(measurements or {}),
                                                                             "nut_error": token})
        self.token = token


def split_words(line: str) -> list[str]:
    """Split one upsd line into words; quoted words lose their quotes and escapes."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        buf: list[str] = []
        quoted = line[i] == '"'
        i += quoted
        while i < n:
            ch = line[i]
            if ch == "\\" and i + 1 < n:
                buf.append(line[i + 1])
                i += 2
                continue
            if quoted and ch == '"':
                i += 1
                break
            if not quoted and ch == " ":
                break
            buf.append(ch)
            i += 1
        else:
            if quoted:
                raise ValueError(f"unterminated quote in {line!r}")
        words.append("".join(buf))
    return words


def quote(value: str) -> str:
    """A value as upsd expects it in a command: double-quoted, \\ and \" escaped."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("a NUT value cannot hold a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class UpsdClient:
    """One connection to upsd. Every call has a deadline; errors are DeviceErrors."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.where = f"upsd at {host}:{port}"
        self.facts: dict[str, Any] = {"host": host, "port": port}
        self._sock: socket.socket | None = None
        self._buf = bytearray()

    def connect(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except ConnectionRefusedError:
            raise DeviceError(f"{self.where} refused the connection (upsd not running or not listening there)",
                              code="UPSD_UNREACHABLE", measurements=self._facts("refused")) from None
        except TimeoutError:
            raise DeviceError(f"{self.where}: no answer within {self.timeout:g} s", code="UPSD_UNREACHABLE",
                              measurements=self._facts("timeout")) from None
        except OSError as e:
            raise DeviceError(f"{self.where}: {e.strerror or e}", code="UPSD_UNREACHABLE",
                              measurements=self._facts(connect_reason(e))) from None

    def _facts(self, reason: str) -> dict[str, Any]:
        return {**self.facts, "reason": reason}

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    # -- wire --------------------------------------------------------------------
    def _io(self, fn: Any, *args: Any) -> Any:
        assert self._sock is not None
        self._sock.settimeout(self.timeout)
        try:
            return fn(*args)
        except TimeoutError:
            raise DeviceError(f"{self.where} stopped answering (no reply within {self.timeout:g} s)",
                              code="UPSD_UNREACHABLE", measurements=self._facts("no_answer")) from None
        except (OSError, ssl.SSLError) as e:
            raise DeviceError(f"{self.where}: connection lost ({e})", code="UPSD_UNREACHABLE",
                              measurements=self._facts("link_lost")) from None

    def send(self, line: str) -> None:
        assert self._sock is not None
        self._io(self._sock.sendall, line.encode("utf-8") + b"\n")

    def readline(self) -> str:
        assert self._sock is not None
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE:
                raise DeviceError(f"{self.where} sent a line longer than {MAX_LINE} bytes", code="UPS_PROTOCOL_ERROR")
            if time.monotonic() > deadline:
                raise DeviceError(f"{self.where} sent no complete line within {self.timeout:g} s",
                                  code="UPSD_UNREACHABLE", measurements=self._facts("no_answer"))
            chunk = self._io(self._sock.recv, 4096)
            if not chunk:
                raise DeviceError(f"{self.where} closed the connection", code="UPSD_UNREACHABLE",
                                  measurements=self._facts("closed"))
            self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return line.decode("utf-8", errors="replace").rstrip("\r")

    def command(self, line: str, what: str = "") -> str:
        """Send one command, return its one-line reply; ERR replies raise NutError."""
        self.send(line)
        reply = self.readline()
        if reply.startswith("ERR"):
            raise self.error(reply, what or line.split(" ")[0])
        return reply

    def error(self, reply: str, what: str) -> NutError:
        token = [*reply.split(), "", ""][1]
        code = {"UNKNOWN-UPS": "UPS_UNKNOWN_NAME", "DATA-STALE": "UPS_DATA_STALE",
                "DRIVER-NOT-CONNECTED": "UPS_DRIVER_NOT_CONNECTED",
                "CMD-NOT-SUPPORTED": "UPS_TEST_NOT_SUPPORTED"}.get(token, "UPS_PROTOCOL_ERROR")
        if token in _AUTH:
            code = "UPS_ACCESS_DENIED"
        return NutError(token, f"{self.where} answered {reply.strip()} to {what}", code, self.facts)

    # -- commands ----------------------------------------------------------------
    def list(self, query: str) -> list[list[str]]:
        """``LIST <query>``: the words of each line between BEGIN and END."""
        reply = self.command(f"LIST {query}", f"LIST {query}")
        if reply != f"BEGIN LIST {query}":
            raise DeviceError(f"{self.where} answered {reply!r} to LIST {query}", code="UPS_PROTOCOL_ERROR")
        rows: list[list[str]] = []
        for _ in range(MAX_LIST):
            line = self.readline()
            if line == f"END LIST {query}":
                return rows
            try:
                rows.append(split_words(line))
            except ValueError as e:
                raise DeviceError(f"{self.where}: {e}", code="UPS_PROTOCOL_ERROR") from None
        raise DeviceError(f"{self.where}: LIST {query} longer than {MAX_LIST} lines", code="UPS_PROTOCOL_ERROR")

    def list_vars(self, ups: str) -> dict[str, str]:
        return {w[2]: w[3] for w in self.list(f"VAR {ups}") if len(w) == 4 and w[0] == "VAR"}

    def list_ups(self) -> dict[str, str]:
        return {w[1]: (w[2] if len(w) > 2 else "") for w in self.list("UPS") if len(w) >= 2 and w[0] == "UPS"}

    def get_var(self, ups: str, var: str) -> str:
        reply = self.command(f"GET VAR {ups} {var}", f"GET VAR {var}")
        try:
            words = split_words(reply)
        except ValueError as e:
            raise DeviceError(f"{self.where}: {e}", code="UPS_PROTOCOL_ERROR") from None
        if len(words) != 4 or words[:3] != ["VAR", ups, var]:
            raise DeviceError(f"{self.where} answered {reply!r} to GET VAR {var}", code="UPS_PROTOCOL_ERROR")
        return words[3]

    def starttls(self, ca_file: str, verify: bool) -> None:
        try:
            reply = self.command("STARTTLS")
        except NutError as e:
            if e.token.startswith("FEATURE-NOT"):
                raise DeviceError(f"{self.where} has no TLS ({e.token}): configure CERTFILE (OpenSSL builds) or "
                                  "CERTPATH and CERTIDENT (NSS builds, e.g. Debian's) in upsd.conf, "
                                  "or set starttls = false", code="UPSD_TLS_UNAVAILABLE",
                                  measurements={**self._facts("no_tls"), "nut_error": e.token}) from None
            raise
        if not reply.startswith("OK"):
            raise DeviceError(f"{self.where} answered {reply!r} to STARTTLS", code="UPS_PROTOCOL_ERROR")
        ctx = ssl.create_default_context(cafile=ca_file or None)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        assert self._sock is not None
        try:
            self._sock = ctx.wrap_socket(self._sock, server_hostname=self.host)
        except (ssl.SSLError, OSError) as e:
            raise DeviceError(f"{self.where}: TLS handshake failed: {e}", code="UPSD_TLS_UNAVAILABLE",
                              measurements=self._facts("tls_failed")) from None

    def authenticate(self, user: str, password: str | None, login_ups: str | None) -> None:
        self.command(f"USERNAME {quote(user)}", "USERNAME")
        if password is not None:
            self.command(f"PASSWORD {quote(password)}", "PASSWORD")
        if login_ups is not None:
            self.command(f"LOGIN {login_ups}", "LOGIN")

    def logout(self) -> None:
        try:
            self.send("LOGOUT")
        except DeviceError:
            pass


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

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ValueError("timeout must be between 0 and 60 s")
        if not self.test_command or " " in self.test_command:
            raise ValueError("test_command must be one NUT instant command name, e.g. test.battery.start.quick")


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
    return UpsReading(tokens=tokens, battery_charge_pct=parse_number(v.get("battery.charge")),
                      battery_runtime_s=parse_number(v.get("battery.runtime")),
                      input_voltage_v=parse_number(v.get("input.voltage")), load_pct=parse_number(v.get("ups.load")),
                      model=model, alarm=v.get("ups.alarm") or None, measurements=extra)


class NutDriver(Driver):
    name = "nut"
    family = "ups"
    description = "UPS behind a Network UPS Tools upsd (local or on the network)"
    schemes = ("nut",)
    url_example = "nut://monuser:secret@127.0.0.1:3493/ups"
    support = "beta"
    Options = NutOptions
    hints = HINTS

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
            names = ", ".join(known) or "none"
            if known:
                facts["ups_names"] = names
        except DeviceError:
            names = "unknown"
        return DeviceError(f"{client.where} has no UPS named '{self.ups}' (ERR UNKNOWN-UPS; it has: {names})",
                           code="UPS_UNKNOWN_NAME", measurements=facts)

    def status(self) -> Result:
        client = self._connect(login=True)
        try:
            variables = self._vars(client)
            client.logout()
        finally:
            client.close()
        return grade(reading_from_vars(variables), overload_pct=self.options.overload_pct)

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
        before = self.status()
        if before.code not in ("UPS_OK", "UPS_REPLACE_BATTERY"):
            before.message = "battery test not run: " + before.message
            return before
        if not self.device.url or not self.device.url.username:
            return Result.unknown("UPS_ACCESS_DENIED", "battery test needs a user with 'instcmds' in upsd.users: "
                                  "put user:password in the device URL", measurements={"reason": "no_user"})
        client = self._connect(login=False)
        try:
            tokens = client.get_var(self.ups, "ups.status").split()
            if "LB" in tokens or "OB" in tokens:  # changed since the status query: re-check right before
                r = grade(UpsReading(tokens=tokens))
                r.message = "battery test not run: " + r.message
                return r
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
        return Result.ok("UPS_TEST_STARTED", f"upsd accepted {opts.test_command} ({reply}); the UPS reports the "
                         "outcome in ups.test.result and flags a worn battery with RB at the next status",
                         measurements=before.measurements, fields=before.fields)
