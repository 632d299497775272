"""Device URLs (design.md, "Device URLs"): parsed and validated per scheme.

| scheme  | example                                   |
| ------- | ----------------------------------------- |
| serial  | serial:///dev/ttyUSB0?baudrate=9600        |
| tcp     | tcp://10.0.0.5:9100                        |
| usb     | usb://04b8:0e15                            |
| evdev   | evdev:///dev/input/by-id/usb-XYZ-event-kbd or evdev://?name=Keypad |
| nut     | nut://user:pass@127.0.0.1:3493/ups         |
| pcsc    | pcsc://?reader=ACS                         |
| https   | https://acquirer.example.com/health (also http) |
| sim     | sim://escpos?paper=near_end                |

A scheme a third-party transport registers (entry-point group ``posagent.transports``)
parses too: host, port, path, user and query as the URL gives them, checked by its opener.

**User and password** (``nut://user:password@host/ups``). The canonical form is
percent-encoded: a character of the password other than letters, digits and ``-._~`` may
be written ``%XX`` (``urllib.parse.quote(password, safe="")`` gives it), and ``%XX`` in the
user and password is always decoded, so a ``%`` of the password itself must be written
``%25``. Other characters work as written too: the userinfo runs from ``//`` to the *last*
``@`` of the URL, so ``@``, ``:``, ``/``, ``?`` and ``#`` may appear in the password
(``nut://mon:pa#ss@host/ups``); the user name runs to the first ``:`` and holds none of
``/?#`` (an ``@`` after a path or query of a URL without a user, ``sim://x?k=a@b``, is not
a user). A URL longer than ``MAX_URL`` characters, or with a control or format character
(newline, ESC, NUL...), is refused. ``DeviceURL.redacted()`` rebuilds the URL from its
parts with the password as ``***``; errors quote only that form.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from dataclasses import dataclass, field

from posagent.core.i18n import _, did_you_mean
from posagent.core.registry import SIMS, TRANSPORTS, available, load_plugin
from posagent.core.values import control_char

#: The longest URL accepted (device URLs and the upstream URL).
MAX_URL = 2048

SCHEMES = ("serial", "tcp", "usb", "evdev", "nut", "pcsc", "https", "http", "sim")

#: pyserial settings accepted as query keys of serial: URLs, with their converters.
SERIAL_KEYS: dict[str, type] = {
    "baudrate": int,
    "bytesize": int,
    "parity": str,
    "stopbits": float,
    "xonxoff": bool,
    "rtscts": bool,
    "dsrdtr": bool,
    "exclusive": bool,
}
_BAUDS = {50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
          57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000}


@dataclass(frozen=True)
class DeviceURL:
    """A parsed device URL. ``params`` holds the query (single values, typed for serial).

    ``username`` and ``password`` are decoded (``%40`` -> ``@``); ``location`` is the URL
    without its userinfo (``nut://127.0.0.1/ups`` of ``nut://mon:pw@127.0.0.1/ups``)."""

    raw: str
    scheme: str
    host: str = ""
    port: int | None = None
    path: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    params: dict[str, object] = field(default_factory=dict)
    location: str = field(default="", repr=False)

    def redacted(self) -> str:
        """The URL for logs and reports: rebuilt from its parts, the password as ``***``."""
        if self.username is None and self.password is None:
            return self.raw
        user = urllib.parse.quote(self.username or "", safe="")
        userinfo = f"{user}:***" if self.password is not None else user
        rest = self.location.split("//", 1)[1] if "//" in self.location else self._place()
        return f"{self.scheme}://{userinfo}@{rest}"

    def _place(self) -> str:
        """host[:port]/path?query from the parsed parts (a DeviceURL made without ``location``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        path = self.path if not self.path or self.path.startswith("/") else "/" + self.path
        query = urllib.parse.urlencode({k: str(v) for k, v in self.params.items()})
        return f"{host}{port}{path}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"DeviceURL({self.redacted()!r})"


def split_userinfo(raw: str) -> tuple[str | None, str]:
    """(userinfo or None, the URL without it) by the rule in this module's docstring: from
    ``//`` to the last ``@``, when the user name (up to the first ``:``) holds no ``/?#``."""
    scheme, colon, rest = raw.partition(":")
    if not colon or not rest.startswith("//"):
        return None, raw
    authority_on = rest[2:]
    userinfo, at, after = authority_on.rpartition("@")
    if not at:
        return None, raw
    user = userinfo.partition(":")[0]
    if any(c in user for c in "/?#"):
        return None, raw
    return userinfo, f"{scheme}://{after}"


def redact_url(text: str) -> str:
    """Any URL (the upstream's, a redirect's Location) for a log line or message: the
    userinfo and the query string masked (``https://***@host/path?***``), never parsed
    beyond that, so it works on malformed text too."""
    userinfo, rest = split_userinfo(text)
    head, sep, _tail = rest.partition("?")
    head, hash_sep, _frag = head.partition("#")
    if userinfo is not None:
        scheme, _c, place = head.partition("://")
        head = f"{scheme}://***@{place}"
    return head + ("?***" if sep else "#***" if hash_sep else "")


def _bool(v: str) -> bool:
    low = v.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(_("'{value}' is not a boolean (use true or false)").format(value=v))


def _query(parsed: urllib.parse.SplitResult) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=False):
        if k in out:
            raise ValueError(_("query key '{key}' is given twice").format(key=k))
        out[k] = v
    return out


def parse_url(raw: str) -> DeviceURL:
    """Parse and validate a device URL; raises ValueError naming what is wrong and the fix.

    The parsers of the schemes see the URL without its userinfo; what they quote in an
    error is the redacted URL, so a password never reaches a terminal or the journal."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(_("a device URL is required, e.g. {example}").format(example="serial:///dev/ttyS0?baudrate=9600"))
    if len(raw) > MAX_URL:
        raise ValueError(_("the URL is {length} characters long; at most {limit} are accepted").format(
            length=len(raw), limit=MAX_URL))
    bad = control_char(raw)
    if bad is not None:
        raise ValueError(_("the URL holds the control character {char}; write it as %XX or remove it").format(
            char=bad))
    raw = raw.strip()
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", raw)
    if not m:
        raise ValueError(_("'{url}' has no scheme; write it like {example}").format(
            url=redact_url(raw), example="serial:///dev/ttyS0 or tcp://host:9100"))
    scheme = m.group(1).lower()
    if scheme not in SCHEMES and scheme not in available(TRANSPORTS):
        raise ValueError(_("unknown URL scheme '{scheme}' ({suggestion})").format(
            scheme=scheme, suggestion=did_you_mean(scheme, SCHEMES)))
    userinfo, location = split_userinfo(raw)
    user = password = None
    shown = raw
    if userinfo is not None:
        name, colon, secret = userinfo.partition(":")
        user = urllib.parse.unquote(name) or None
        password = urllib.parse.unquote(secret) if colon and secret else None
        shown = DeviceURL(raw, scheme, username=user, password=password, location=location).redacted()
    parsed = urllib.parse.urlsplit(location)
    # the scheme's parser gets the redacted URL as the text to quote, never the password
    url = _PARSERS.get(scheme, _plugin)(shown, parsed, _query(parsed))
    return dataclasses.replace(url, raw=raw, username=user, password=password, location=location)


def _serial(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    if p.netloc:
        raise ValueError(_("'{url}': a serial URL has three slashes and a device path, e.g. {example}").format(
            url=raw, example="serial:///dev/ttyS0"))
    if not p.path.startswith("/dev/") and not p.path.startswith("/"):
        raise ValueError(_("'{url}': the serial device path must be absolute, e.g. {example}").format(
            url=raw, example="/dev/ttyUSB0"))
    params: dict[str, object] = {}
    for k, v in q.items():
        conv = SERIAL_KEYS.get(k)
        if conv is None:
                raise ValueError(_("unknown serial setting '{key}' ({suggestion})").format(
                key=k, suggestion=did_you_mean(k, SERIAL_KEYS.keys())))
        try:
            params[k] = _bool(v) if conv is bool else conv(v)
        except ValueError as e:
            raise ValueError(_("serial setting {setting} is not a valid {type}").format(
                setting=f"{k}={v!r}", type=conv.__name__)) from e
    baud = params.get("baudrate")
    if baud is not None and baud not in _BAUDS:
        raise ValueError(_("baudrate {baud} is not a standard rate (e.g. {examples})").format(
            baud=baud, examples="2400, 9600, 38400, 115200"))
    if params.get("parity", "N") not in ("N", "E", "O", "M", "S"):
        raise ValueError(_("parity must be one of N, E, O, M, S"))
    if params.get("bytesize", 8) not in (5, 6, 7, 8):
        raise ValueError(_("bytesize must be 5, 6, 7 or 8"))
    if params.get("stopbits", 1) not in (1, 1.5, 2):
        raise ValueError(_("stopbits must be 1, 1.5 or 2"))
    return DeviceURL(raw, "serial", path=p.path, params=params)


def _hostport(raw: str, p: urllib.parse.SplitResult, default_port: int | None) -> tuple[str, int | None]:
    try:
        port = p.port
    except ValueError as e:
        raise ValueError(_("'{url}': the port is not a number between 1 and 65535").format(url=raw)) from e
    host = p.hostname or ""
    if not host:
        raise ValueError(_("'{url}' has no host name; write it like {example}").format(
            url=raw, example=f"{p.scheme}://host:port"))
    if port is None:
        port = default_port
    if port is not None and not (1 <= port <= 65535):
        raise ValueError(_("'{url}': port {port} is out of range 1-65535").format(url=raw, port=port))
    return host, port


def _tcp(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    host, port = _hostport(raw, p, None)
    if port is None:
        raise ValueError(_("'{url}' has no port; write it like {example}").format(url=raw, example="tcp://10.0.0.5:9100"))
    return DeviceURL(raw, "tcp", host=host, port=port, params=dict(q))


def _http(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    host, port = _hostport(raw, p, 443 if p.scheme == "https" else 80)
    return DeviceURL(raw, p.scheme, host=host, port=port, path=p.path or "/", params=dict(q))


def _usb(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    m = re.fullmatch(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", p.netloc)
    if not m:
        raise ValueError(_("'{url}': a USB URL names vendor:product in hex, e.g. {example}").format(
            url=raw, example="usb://04b8:0e15"))
    params: dict[str, object] = {"vendor": int(m.group(1), 16), "product": int(m.group(2), 16)}
    for k, v in q.items():
        try:
            params[k] = int(v, 0)
        except ValueError as e:
            raise ValueError(_("'{url}': USB option {setting} must be a number (e.g. {example})").format(
                url=raw, setting=f"{k}={v!r}", example="0x81")) from e
    return DeviceURL(raw, "usb", params=params)


def _evdev(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    if not p.path and "name" not in q:
        raise ValueError(_("'{url}': give a device path ({example}) or ?name=").format(
            url=raw, example="evdev:///dev/input/by-id/..."))
    if p.path and not p.path.startswith("/"):
        raise ValueError(_("'{url}': the evdev path must be absolute").format(url=raw))
    return DeviceURL(raw, "evdev", path=p.path, params=dict(q))


def _nut(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    host, port = _hostport(raw, p, 3493)
    ups = p.path.strip("/")
    if not ups or "/" in ups:
        raise ValueError(_("'{url}': name the UPS after the host, e.g. {example}").format(
            url=raw, example="nut://127.0.0.1:3493/ups"))
    return DeviceURL(raw, "nut", host=host, port=port, path=ups, params=dict(q))


def _pcsc(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    unknown = set(q) - {"reader"}
    if unknown:
        raise ValueError(_("'{url}': unknown pcsc option '{key}' ({suggestion})").format(
            url=raw, key=sorted(unknown)[0], suggestion=_("valid: {choices}").format(choices="reader")))
    return DeviceURL(raw, "pcsc", params=dict(q))


def _sim(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    family = p.netloc
    if not family:
        raise ValueError(_("'{url}': name the simulated device, e.g. {example}").format(url=raw, example="sim://escpos"))
    load_plugin(SIMS, family)(**q)  # the simulator validates its knobs (ValueError)
    return DeviceURL(raw, "sim", host=family, params=dict(q))


def _plugin(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    """A URL of a scheme a third-party transport registered: its parts as given."""
    try:
        port = p.port
    except ValueError as e:
        raise ValueError(_("'{url}': the port is not a number between 1 and 65535").format(url=raw)) from e
    return DeviceURL(raw, p.scheme, host=p.hostname or "", port=port, path=p.path, params=dict(q))


_PARSERS = {
    "serial": _serial,
    "tcp": _tcp,
    "usb": _usb,
    "evdev": _evdev,
    "nut": _nut,
    "pcsc": _pcsc,
    "https": _http,
    "http": _http,
    "sim": _sim,
}
