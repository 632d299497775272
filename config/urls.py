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
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

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
    raise ValueError(f"'{v}' is not a boolean (use true or false)")


def _query(parsed: urllib.parse.SplitResult) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=False):
        if k in out:
            raise ValueError(f"query key '{k}' is given twice")
        out[k] = v
    return out


def parse_url(raw: str) -> DeviceURL:
    """Parse and validate a device URL; raises ValueError naming what is wrong and the fix."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("a device URL is required, e.g. serial:///dev/ttyS0?baudrate=9600")
    raw = raw.strip()
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", raw)
    if not m:
        raise ValueError(f"'{raw}' has no scheme; write it like serial:///dev/ttyS0 or tcp://host:9100")
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        from posagent.config.errors import did_you_mean

        raise ValueError(f"unknown URL scheme '{scheme}' ({did_you_mean(scheme, SCHEMES)})")
    parsed = urllib.parse.urlsplit(raw)
    query = _query(parsed)
    parser = _PARSERS[scheme]
    return parser(raw, parsed, query)


def _serial(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    if p.netloc:
        raise ValueError(f"'{raw}': a serial URL has three slashes and a device path, e.g. serial:///dev/ttyS0")
    if not p.path.startswith("/dev/") and not p.path.startswith("/"):
        raise ValueError(f"'{raw}': the serial device path must be absolute, e.g. /dev/ttyUSB0")
    params: dict[str, object] = {}
    for k, v in q.items():
        conv = SERIAL_KEYS.get(k)
        if conv is None:
            from posagent.config.errors import did_you_mean

            raise ValueError(f"unknown serial setting '{k}' ({did_you_mean(k, SERIAL_KEYS.keys())})")
        try:
            params[k] = _bool(v) if conv is bool else conv(v)
        except ValueError as e:
            raise ValueError(f"serial setting {k}={v!r} is not a valid {conv.__name__}") from e
    baud = params.get("baudrate")
    if baud is not None and baud not in _BAUDS:
        raise ValueError(f"baudrate {baud} is not a standard rate (e.g. 2400, 9600, 38400, 115200)")
    if params.get("parity", "N") not in ("N", "E", "O", "M", "S"):
        raise ValueError("parity must be one of N, E, O, M, S")
    if params.get("bytesize", 8) not in (5, 6, 7, 8):
        raise ValueError("bytesize must be 5, 6, 7 or 8")
    if params.get("stopbits", 1) not in (1, 1.5, 2):
        raise ValueError("stopbits must be 1, 1.5 or 2")
    return DeviceURL(raw, "serial", path=p.path, params=params)


def _hostport(raw: str, p: urllib.parse.SplitResult, default_port: int | None) -> tuple[str, int | None]:
    try:
        port = p.port
    except ValueError as e:
        raise ValueError(f"'{raw}': the port is not a number between 1 and 65535") from e
    host = p.hostname or ""
    if not host:
        raise ValueError(f"'{raw}' has no host name; write it like {p.scheme}://host:port")
    if port is None:
        port = default_port
    if port is not None and not (1 <= port <= 65535):
        raise ValueError(f"'{raw}': port {port} is out of range 1-65535")
    return host, port


def _tcp(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    host, port = _hostport(raw, p, None)
    if port is None:
        raise ValueError(f"'{raw}' has no port; write it like tcp://10.0.0.5:9100")
    return DeviceURL(raw, "tcp", host=host, port=port, params=dict(q))


def _http(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    host, port = _hostport(raw, p, 443 if p.scheme == "https" else 80)
    return DeviceURL(raw, p.scheme, host=host, port=port, path=p.path or "/", params=dict(q))


def _usb(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    m = re.fullmatch(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", p.netloc)
    if not m:
        raise ValueError(f"'{raw}': a USB URL names vendor:product in hex, e.g. usb://04b8:0e15")
    params: dict[str, object] = {"vendor": int(m.group(1), 16), "product": int(m.group(2), 16)}
    for k, v in q.items():
        try:
            params[k] = int(v, 0)
        except ValueError as e:
            raise ValueError(f"'{raw}': USB option {k}={v!r} must be a number (e.g. 0x81)") from e
    return DeviceURL(raw, "usb", params=params)


def _evdev(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    if not p.path and "name" not in q:
        raise ValueError(f"'{raw}': give a device path (evdev:///dev/input/by-id/...) or ?name=")
    if p.path and not p.path.startswith("/"):
        raise ValueError(f"'{raw}': the evdev path must be absolute")
    return DeviceURL(raw, "evdev", path=p.path, params=dict(q))


def _nut(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    host, port = _hostport(raw, p, 3493)
    ups = p.path.strip("/")
    if not ups or "/" in ups:
        raise ValueError(f"'{raw}': name the UPS after the host, e.g. nut://127.0.0.1:3493/ups")
    user = urllib.parse.unquote(p.username) if p.username else None
    pw = urllib.parse.unquote(p.password) if p.password else None
    return DeviceURL(raw, "nut", host=host, port=port, path=ups, username=user, password=pw, params=dict(q))


def _pcsc(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    unknown = set(q) - {"reader"}
    if unknown:
        raise ValueError(f"'{raw}': unknown pcsc option '{sorted(unknown)[0]}' (valid: reader)")
    return DeviceURL(raw, "pcsc", params=dict(q))


def _sim(raw: str, p: urllib.parse.SplitResult, q: dict[str, str]) -> DeviceURL:
    family = p.netloc
    if not family:
        raise ValueError(f"'{raw}': name the simulated device, e.g. sim://escpos")
    from posagent.drivers.sim import validate_knobs

    validate_knobs(family, q)
    return DeviceURL(raw, "sim", host=family, params=dict(q))


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
