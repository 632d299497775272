"""Megatec "Q1" UPS protocol: pure parsing, status bits to NUT tokens, charge from voltage.

No I/O here. Replies are the bytes up to and including the CR terminator:

    Q1 -> (MMM.M NNN.N PPP.P QQQ RR.R S.SS TT.T b7b6b5b4b3b2b1b0<CR>   47 bytes
    F  -> #MMM.M QQQ SS.SS RR.R<CR>                                     22 bytes
    I  -> #<company 15> <model 10> <version 10><CR>                     39 bytes

Fields are separated by single spaces in the spec; extra spaces and unpadded numbers
(odd but legal spacing seen on real units) are tolerated, a field filled with ``@`` (not
supported by the unit) reads as None. Anything else (wrong field count, junk, a truncated
line, a missing start byte, a NAK or the echo of the command that real units send for a
command they do not know) raises ProtocolError with the raw line in the message.

The battery charge is estimated from the battery voltage the way NUT's Q1 drivers do
(``qx_initbattery``/``qx_battery``): low = 104/120 and high = 130/120 of the nominal
pack voltage, per-cell readings multiplied by an auto-detected pack factor. NUT warns the
guess is unreliable under load; it is reported as approximate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from posagent.core.errors import ProtocolError

Q1_LENGTH = 47  # spec length including CR; odd spacing may change it
MAX_LINE = 128  # longer is not a Megatec reply

_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
_UNSUPPORTED = re.compile(r"@[@.]*")
_BITS = re.compile(r"[01]{8}")

#: Pack factors NUT tries, in order, to turn a per-cell battery voltage into the pack's.
PACK_FACTORS = (120.0, 100.0, 80.0, 60.0, 48.0, 36.0, 30.0, 24.0, 18.0, 12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0, 0.5)


def show(raw: bytes) -> str:
    """The raw reply for an error message: printable, bounded."""
    text = repr(bytes(raw[:MAX_LINE]))
    return text + ("..." if len(raw) > MAX_LINE else "")


def _text(raw: bytes, command: str, start: str) -> str:
    """Common checks of one reply line; returns the text between start byte and CR."""
    if len(raw) > MAX_LINE:
        raise ProtocolError(f"{command} reply too long ({len(raw)} bytes): {show(raw)}")
    if not raw.endswith(b"\r"):
        raise ProtocolError(f"{command} reply truncated (no CR terminator): {show(raw)}")
    body = raw[:-1]
    stripped = body.strip()
    if stripped.upper() in (command.encode(), b"NAK"):
        what = "NAK" if stripped.upper() == b"NAK" else "echoed the command"
        raise ProtocolError(f"UPS does not support {command} ({what}): {show(raw)}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"{command} reply has non-ASCII bytes: {show(raw)}") from None
    if not text.isprintable():
        raise ProtocolError(f"{command} reply has control characters: {show(raw)}")
    if not text.startswith(start):
        raise ProtocolError(f"{command} reply does not start with '{start}': {show(raw)}")
    return text[1:]


def _number(field: str, name: str, command: str, raw: bytes) -> float | None:
    if _UNSUPPORTED.fullmatch(field):
        return None
    if not _NUMBER.fullmatch(field):
        raise ProtocolError(f"{command} {name} field {field!r} is not a number: {show(raw)}")
    return float(field)


@dataclass(frozen=True)
class Q1Status:
    input_voltage: float | None
    input_fault_voltage: float | None
    output_voltage: float | None
    load_pct: float | None
    input_frequency: float | None
    battery_voltage: float | None  # per cell on on-line units, total on standby units
    temperature: float | None
    bits: str  # b7 first

    def bit(self, n: int) -> bool:
        return self.bits[7 - n] == "1"

    utility_fail = property(lambda self: self.bit(7))
    battery_low = property(lambda self: self.bit(6))
    bypass_boost_buck = property(lambda self: self.bit(5))
    ups_failed = property(lambda self: self.bit(4))
    standby_type = property(lambda self: self.bit(3))
    test_in_progress = property(lambda self: self.bit(2))
    shutdown_active = property(lambda self: self.bit(1))
    beeper_on = property(lambda self: self.bit(0))


_Q1_NAMES = ("input voltage", "input fault voltage", "output voltage", "load", "frequency",
             "battery voltage", "temperature")
#: What a UPS can measure at all (a field outside is a garbled reply, not a reading): mains
#: and output up to 500 V, load up to 300 % (an overload reads above 100), 0-100 Hz, a
#: battery up to 500 V (a string of 40 blocks), -40..150 C.
_Q1_RANGES = ((0.0, 500.0), (0.0, 500.0), (0.0, 500.0), (0.0, 300.0), (0.0, 100.0), (0.0, 500.0),
              (-40.0, 150.0))


def _in_range(value: float | None, bounds: tuple[float, float], name: str, command: str, raw: bytes) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise ProtocolError(f"{command} {name} {value:g} is outside {bounds[0]:g}..{bounds[1]:g}, "
                            f"no UPS measures that: {show(raw)}")


def parse_q1(raw: bytes) -> Q1Status:
    """Parse one Q1 reply (with its CR). Raises ProtocolError with the raw line."""
    text = _text(raw, "Q1", "(")
    fields = text.split()
    if len(fields) != 8:
        raise ProtocolError(f"Q1 reply has {len(fields)} fields, expected 8: {show(raw)}")
    bits = fields[7]
    if not _BITS.fullmatch(bits):
        raise ProtocolError(f"Q1 status bits {bits!r} are not 8 digits 0/1: {show(raw)}")
    v = [_number(f, n, "Q1", raw) for f, n in zip(fields[:7], _Q1_NAMES, strict=True)]
    for value, bounds, name in zip(v, _Q1_RANGES, _Q1_NAMES, strict=True):
        _in_range(value, bounds, name, "Q1", raw)
    return Q1Status(v[0], v[1], v[2], v[3], v[4], v[5], v[6], bits)


@dataclass(frozen=True)
class Rating:
    voltage: float | None
    current: float | None
    battery_voltage: float | None
    frequency: float | None


def parse_f(raw: bytes) -> Rating:
    """Parse the F (rating) reply."""
    text = _text(raw, "F", "#")
    fields = text.split()
    if len(fields) != 4:
        raise ProtocolError(f"F reply has {len(fields)} fields, expected 4: {show(raw)}")
    names = ("rating voltage", "rating current", "battery voltage", "rating frequency")
    return Rating(*[_number(f, n, "F", raw) for f, n in zip(fields, names, strict=True)])


@dataclass(frozen=True)
class Identity:
    company: str
    model: str
    version: str

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.company, self.model) if p)


def parse_i(raw: bytes) -> Identity:
    """Parse the I (vendor) reply: fixed columns when 39 bytes, else runs of 2+ spaces."""
    text = _text(raw, "I", "#")
    if len(raw) == 39:
        parts = [text[0:15], text[16:26], text[27:37]]
    else:
        parts = re.split(r"\s{2,}", text.strip())
        if len(parts) > 3 or not text.strip():
            raise ProtocolError(f"I reply is not company/model/version: {show(raw)}")
        parts += [""] * (3 - len(parts))
    company, model, version = (p.strip() for p in parts)
    return Identity(company, model, version)


def status_tokens(q: Q1Status, *, ignore_bypass_bit: bool = False, ignore_shutdown_bit: bool = False) -> list[str]:
    """NUT ``ups.status`` tokens for a Q1 reply (NUT's blazer_process_status_bits rules)."""
    tokens = ["OB" if q.utility_fail else "OL"]
    if q.bypass_boost_buck and not ignore_bypass_bit:
        vi, vo = q.input_voltage, q.output_voltage
        if vi and vo is not None and 0.5 * vi <= vo <= 1.5 * vi:
            if vo < 0.95 * vi:
                tokens.append("TRIM")
            elif vo < 1.05 * vi:
                tokens.append("BYPASS")
            elif vo < 1.5 * vi:
                tokens.append("BOOST")
    if q.battery_low:
        tokens.append("LB")
    if q.test_in_progress:
        tokens.append("CAL")
    if q.shutdown_active and not ignore_shutdown_bit:
        tokens.append("FSD")
    if q.ups_failed:
        tokens.append("ALARM")  # NUT: ups.alarm "UPS selftest failed!"
    return tokens


def detect_packs(voltage: float, nominal: float) -> float | None:
    """NUT's battery pack factor guess: the first factor whose product with the reading is
    at most 1.25 x nominal, if that product is at least 0.8 x nominal; else None."""
    if voltage <= 0 or nominal <= 0:
        return None
    for factor in PACK_FACTORS:
        if factor * voltage > 1.25 * nominal:
            continue
        return None if factor * voltage < 0.8 * nominal else factor
    return None


@dataclass(frozen=True)
class ChargeEstimate:
    charge_pct: float  # 0..100, rounded like NUT's %.0f
    pack_voltage: float  # reading x packs
    packs: float
    low: float
    high: float
    approximate: bool = True


def estimate_charge(voltage: float | None, nominal: float | None, *, low: float | None = None,
                    high: float | None = None, packs: float | None = None) -> ChargeEstimate | None:
    """Battery charge from its voltage, the NUT way; None when it cannot be estimated.

    ``nominal`` is the pack's nominal voltage (F reply, or an override); ``low``/``high``
    override NUT's 104/120 and 130/120 guesses; ``packs`` overrides the pack detection.
    """
    if voltage is None or voltage <= 0:
        return None
    if low is None or high is None:
        if not nominal or nominal <= 0:
            return None
        low = low if low is not None else 104.0 / 120.0 * nominal
        high = high if high is not None else 130.0 / 120.0 * nominal
    if high <= low:
        return None
    if packs is None:
        ref = nominal if nominal and nominal > 0 else (low + high) / 2.0 * 120.0 / 117.0
        packs = detect_packs(voltage, ref)
        if packs is None:
            return None
    pack_v = voltage * packs
    charge = 100.0 * (pack_v - low) / (high - low)
    charge = float(round(min(100.0, max(0.0, charge))))
    return ChargeEstimate(charge, round(pack_v, 3), packs, round(low, 3), round(high, 3))

