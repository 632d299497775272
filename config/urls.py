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
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from posagent.core.i18n import _, did_you_mean
from posagent.core.registry import SIMS, TRANSPORTS, available, load_plugin

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
    """A parsed device URL. ``params`` holds the query (single values, typed for serial)."""

    raw: str
    scheme: str
    host: str = ""
    port: int | None = None
    path: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    params: dict[str, object] = field(default_factory=dict)

    def redacted(self) -> str:
        """The URL with any password masked, for logs and reports."""
        if self.password is None:
            return self.raw
        return re.sub(r"(//[^/:@]*):[^@/]*@", r"\1:***@", self.raw, count=1)

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"DeviceURL({self.redacted()!r})"


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
    """Parse and validate a device URL; raises ValueError naming what is wrong and the fix."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(_("a device URL is required, e.g. {example}").format(example="serial:///dev/ttyS0?baudrate=9600"))
    raw = raw.strip()
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", raw)
    if not m:
        raise ValueError(_("'{url}' has no scheme; write it like {example}").format(
            url=raw, example="serial:///dev/ttyS0 or tcp://host:9100"))
    scheme = m.group(1).lower()
    if scheme not in SCHEMES and scheme not in available(TRANSPORTS):
        raise ValueError(_("unknown URL scheme '{scheme}' ({suggestion})").format(
            scheme=scheme, suggestion=did_you_mean(scheme, SCHEMES)))
    parsed = urllib.parse.urlsplit(raw)
    try:
        return _PARSERS.get(scheme, _plugin)(raw, parsed, _query(parsed))
    except ValueError as e:
        # Errors quote the URL; a password in it must not reach a terminal or the journal.
        secret = parsed.password
        if not secret:
            raise
        message = str(e)
        for form in {secret, urllib.parse.unquote(secret)}:
            message = message.replace(form, "***")
        raise ValueError(message) from None


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
    user = urllib.parse.unquote(p.username) if p.username else None
    pw = urllib.parse.unquote(p.password) if p.password else None
    return DeviceURL(raw, "nut", host=host, port=port, path=ups, username=user, password=pw, params=dict(q))


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
    user = urllib.parse.unquote(p.username) if p.username else None
    pw = urllib.parse.unquote(p.password) if p.password else None
    return DeviceURL(raw, p.scheme, host=p.hostname or "", port=port, path=p.path, username=user, password=pw,
                     params=dict(q))


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
