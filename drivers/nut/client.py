"""The upsd client of the ``nut`` driver: NUT's text protocol on one TCP connection.

One command per line; replies ``VAR <ups> <var> "<value>"`` with ``\\"`` and ``\\\\``
escapes inside the quotes, ``BEGIN LIST``/``END LIST`` framing, and ``ERR <TOKEN>``
errors (``NutError``). Every call has a deadline; every error is a DeviceError with a
code of the UPS catalogue (UPSD_UNREACHABLE, UPS_PROTOCOL_ERROR, ...).

The client keeps its own socket rather than a transport ``Link``: ``STARTTLS`` upgrades
the connection in the middle of the conversation (an ``ssl`` socket, which the raw-fd
``ByteStream`` cannot read), and the driver holds no connection between calls (connect,
ask, ``LOGOUT``, close), so there is no stale link to reopen.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from posagent.core.errors import DeviceError
from posagent.core.status import Status
from posagent.drivers.transport.tcp import connect_reason

MAX_LINE = 8192
MAX_LIST = 5000

_AUTH = ("ACCESS-DENIED", "USERNAME-REQUIRED", "PASSWORD-REQUIRED", "INVALID-PASSWORD", "INVALID-USERNAME")


class NutError(DeviceError):
    """upsd answered ``ERR <token>``."""

    def __init__(self, token: str, message: str, code: str, measurements: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code, status=Status.UNKNOWN, measurements={**(measurements or {}),
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
        self._secrets: list[str] = []  # what the agent told upsd that no message may repeat
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
        return NutError(token, f"{self.where} answered {self.scrub(reply.strip())} to {what}", code, self.facts)

    def scrub(self, text: str) -> str:
        """``text`` quoted from upsd with anything the agent sent it (the password) masked:
        a hostile or broken upsd that echoes it must not put it into a log or a report."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- commands ----------------------------------------------------------------
    def list(self, query: str) -> list[list[str]]:
        """``LIST <query>``: the words of each line between BEGIN and END."""
        reply = self.command(f"LIST {query}", f"LIST {query}")
        if reply != f"BEGIN LIST {query}":
            raise DeviceError(f"{self.where} answered {self.scrub(reply)!r} to LIST {query}",
                              code="UPS_PROTOCOL_ERROR")
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
            raise DeviceError(f"{self.where} answered {self.scrub(reply)!r} to GET VAR {var}",
                              code="UPS_PROTOCOL_ERROR")
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
            raise DeviceError(f"{self.where} answered {self.scrub(reply)!r} to STARTTLS", code="UPS_PROTOCOL_ERROR")
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
            self._secrets += [quote(password), password] if password else []
            self.command(f"PASSWORD {quote(password)}", "PASSWORD")
        if login_ups is not None:
            self.command(f"LOGIN {login_ups}", "LOGIN")

    def logout(self) -> None:
        try:
            self.send("LOGOUT")
        except DeviceError:
            pass
