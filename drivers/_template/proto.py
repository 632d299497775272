"""The template's protocol: a fictional "status lamp". Pure parsing, no I/O.

Copy this file to ``drivers/<family>/proto.py`` and write your device's protocol in its
place. Keep it pure: bytes in, values or a ``ProtocolError`` out. Then the unit tests run
on byte fixtures alone (``tests/unit/drivers/_template/test_proto.py``), and the driver
only moves bytes and grades what this module returns.

The lamp speaks ASCII lines ending in CR, one request and one reply at a time:

    STATUS<CR>  ->  OK <temp_c> <flags><CR>     e.g. b"OK 41.5 00\\r"
    BLINK<CR>   ->  OK<CR>                      blinks the lamp (the customer sees it)
    other       ->  ERR <text><CR>              a command the lamp does not know

``<temp_c>`` is the lamp's temperature in degrees Celsius, an integer or one decimal
(``-5``, ``41.5``), or ``-`` when the lamp has no working sensor. ``<flags>`` is two hex
digits: bit 0 the bulb is out, bit 1 the fan has stalled; the other bits are reserved and
ignored, because later firmware may set them. Fields are separated by single spaces.
Anything else (an ``ERR`` reply, a missing CR, junk, a wrong field) raises ProtocolError
naming the raw line, with the driver's code ``TEMPLATE_PROTOCOL_ERROR``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from posagent.core.errors import ProtocolError

END = b"\r"  # every request and reply ends here: the driver reads up to it, never to a timeout
MAX_LINE = 64  # a longer line is not a reply of the lamp (line noise, wrong baud rate)

STATUS = b"STATUS" + END
BLINK = b"BLINK" + END

FLAG_LAMP_OUT = 0x01
FLAG_FAN_STALLED = 0x02

_TEMPERATURE = re.compile(r"-?\d{1,3}(?:\.\d)?")
_FLAGS = re.compile(r"[0-9A-Fa-f]{2}")


@dataclass(frozen=True)
class Reading:
    """What one STATUS reply says."""

    temperature_c: float | None  # None: the lamp has no working sensor
    lamp_out: bool
    fan_stalled: bool


def show(raw: bytes) -> str:
    """The raw line for an error message: printable and bounded."""
    text = repr(bytes(raw[:MAX_LINE]))
    return text + ("..." if len(raw) > MAX_LINE else "")


def command_name(request: bytes) -> str:
    """``b"STATUS\\r"`` -> ``"STATUS"``, for messages."""
    return request.rstrip(END).decode("ascii", "replace")


def _bad(what: str, why: str, raw: bytes) -> ProtocolError:
    return ProtocolError(f"{what} reply {why}: {show(raw)}", code="TEMPLATE_PROTOCOL_ERROR")


def _fields(raw: bytes, what: str) -> list[str]:
    """The checks every reply line passes; returns its space-separated fields after ``OK``."""
    if len(raw) > MAX_LINE:
        raise _bad(what, f"is too long ({len(raw)} bytes)", raw)
    if not raw.endswith(END):
        raise _bad(what, "is truncated (no CR)", raw)
    try:
        text = raw[: -len(END)].decode("ascii")
    except UnicodeDecodeError:
        raise _bad(what, "has non-ASCII bytes", raw) from None
    if not text.isprintable():
        raise _bad(what, "has control characters", raw)
    fields = text.split(" ")
    if fields[0] == "ERR":
        raise _bad(what, "is a refusal (the lamp does not know the command)", raw)
    if fields[0] != "OK":
        raise _bad(what, "does not start with OK", raw)
    return fields[1:]


def parse_status(raw: bytes) -> Reading:
    """The reply to STATUS, CR included."""
    fields = _fields(raw, "STATUS")
    if len(fields) != 2:
        raise _bad("STATUS", f"has {len(fields)} fields after OK, not 2", raw)
    temp, flags = fields
    if temp != "-" and not _TEMPERATURE.fullmatch(temp):
        raise _bad("STATUS", f"temperature {temp!r} is not a number", raw)
    if not _FLAGS.fullmatch(flags):
        raise _bad("STATUS", f"flags {flags!r} are not two hex digits", raw)
    bits = int(flags, 16)
    return Reading(temperature_c=None if temp == "-" else float(temp),
                   lamp_out=bool(bits & FLAG_LAMP_OUT), fan_stalled=bool(bits & FLAG_FAN_STALLED))


def parse_ack(raw: bytes, what: str) -> None:
    """The bare ``OK<CR>`` a command without data (BLINK) is answered with."""
    fields = _fields(raw, what)
    if fields:
        raise _bad(what, "carries data where a bare OK was expected", raw)
