"""The template's status-lamp protocol on byte fixtures: the documented example, every
flag, every malformed form, and property tests (a well-formed line round-trips; any bytes
are either a reading or a ProtocolError). Copy it for a new family's ``proto.py``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posagent.core.errors import ProtocolError
from posagent.drivers._template import proto


def test_documented_example() -> None:
    assert proto.parse_status(b"OK 41.5 00\r") == proto.Reading(temperature_c=41.5, lamp_out=False,
                                                                fan_stalled=False)


@pytest.mark.parametrize(("temp", "value"), [("41.5", 41.5), ("41", 41.0), ("-5", -5.0), ("-0.5", -0.5),
                                             ("0", 0.0), ("120.0", 120.0), ("-", None)])
def test_temperatures(temp: str, value: float | None) -> None:
    assert proto.parse_status(f"OK {temp} 00\r".encode()).temperature_c == value


@pytest.mark.parametrize(("flags", "lamp_out", "fan_stalled"), [
    ("00", False, False), ("01", True, False), ("02", False, True), ("03", True, True),
    ("F0", False, False), ("fd", True, False),  # reserved bits ignored; lower-case hex too
])
def test_flags(flags: str, lamp_out: bool, fan_stalled: bool) -> None:
    r = proto.parse_status(f"OK 30.0 {flags}\r".encode())
    assert (r.lamp_out, r.fan_stalled) == (lamp_out, fan_stalled)


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "truncated"),
    (b"OK 41.5 00", "truncated"),
    (b"\r", "does not start with OK"),
    (b"ok 41.5 00\r", "does not start with OK"),
    (b"STATUS\r", "does not start with OK"),  # an echo of the request
    (b"ERR unknown command\r", "refusal"),
    (b"OK\r", "0 fields"),
    (b"OK 41.5\r", "1 fields"),
    (b"OK 41.5 00 7\r", "3 fields"),
    (b"OK  41.5 00\r", "3 fields"),  # single spaces only
    (b"OK 41.5 00 \r", "3 fields"),
    (b"OK 41,5 00\r", "not a number"),
    (b"OK 41.55 00\r", "not a number"),
    (b"OK 1000 00\r", "not a number"),
    (b"OK . 00\r", "not a number"),
    (b"OK 41.5 0\r", "not two hex digits"),
    (b"OK 41.5 0G\r", "not two hex digits"),
    (b"OK 41.5 000\r", "not two hex digits"),
    (b"OK 41.5\t00\r", "control characters"),
    (b"OK 41.5 00\n\r", "control characters"),
    (b"OK \xb0C 00\r", "non-ASCII"),
    (b"OK " + b"1" * 80 + b" 00\r", "too long"),
])
def test_malformed_status(raw: bytes, why: str) -> None:
    with pytest.raises(ProtocolError) as e:
        proto.parse_status(raw)
    assert e.value.code == "TEMPLATE_PROTOCOL_ERROR"
    assert why in str(e.value) and str(e.value).startswith("STATUS reply")
    assert proto.show(raw) in str(e.value)  # the raw line is named


def test_ack() -> None:
    proto.parse_ack(b"OK\r", "BLINK")
    for raw in (b"OK 1\r", b"ERR busy\r", b"OK", b"\r"):
        with pytest.raises(ProtocolError, match=r"^BLINK reply"):
            proto.parse_ack(raw, "BLINK")


def test_requests_and_messages() -> None:
    assert (proto.STATUS, proto.BLINK) == (b"STATUS\r", b"BLINK\r")
    assert proto.command_name(proto.STATUS) == "STATUS"
    assert proto.show(b"OK\r") == "b'OK\\r'"
    shown = proto.show(b"x" * 1000)
    assert shown.endswith("...") and len(shown) < proto.MAX_LINE + 10


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(-999, 999).map(lambda n: n / 10)), st.integers(0, 255))
def test_a_well_formed_line_round_trips(temp: float | None, bits: int) -> None:
    text = "-" if temp is None else f"{temp:.1f}"
    r = proto.parse_status(f"OK {text} {bits:02X}\r".encode())
    assert r == proto.Reading(temperature_c=temp, lamp_out=bool(bits & 1), fan_stalled=bool(bits & 2))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_are_a_reading_or_a_protocol_error(raw: bytes) -> None:
    try:
        r = proto.parse_status(raw)
    except ProtocolError as e:
        assert e.code == "TEMPLATE_PROTOCOL_ERROR"
        return
    assert raw.startswith(b"OK ") and raw.endswith(b"\r")
    assert r.temperature_c is None or -999 <= r.temperature_c <= 999
