"""Megatec Q1/F/I parsing on byte fixtures: the spec example, odd but legal spacing, every
malformed form, NUT's status-bit and charge-from-voltage rules, and a property test that
any line is either a reading or a ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posagent.core.errors import ProtocolError
from posagent.drivers.megatec import proto as mp

SPEC_Q1 = b"(208.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r"


def test_spec_example_offsets_and_values() -> None:
    assert len(SPEC_Q1) == mp.Q1_LENGTH
    # Offsets of the spec table, checked on the example.
    assert SPEC_Q1[0:1] == b"(" and SPEC_Q1[1:6] == b"208.4" and SPEC_Q1[7:12] == b"140.0"
    assert SPEC_Q1[19:22] == b"034" and SPEC_Q1[28:32] == b"2.05" and SPEC_Q1[38:46] == b"00110000"
    q = mp.parse_q1(SPEC_Q1)
    assert (q.input_voltage, q.input_fault_voltage, q.output_voltage) == (208.4, 140.0, 208.4)
    assert (q.load_pct, q.input_frequency, q.battery_voltage, q.temperature) == (34.0, 59.9, 2.05, 35.0)
    assert q.bypass_boost_buck and q.ups_failed
    assert not (q.utility_fail or q.battery_low or q.standby_type or q.test_in_progress or q.shutdown_active
                or q.beeper_on)
    # vo == vi with bit 5 set: NUT calls that BYPASS; the failed bit raises an alarm.
    assert mp.status_tokens(q) == ["OL", "BYPASS", "ALARM"]
    assert mp.status_tokens(q, ignore_bypass_bit=True) == ["OL", "ALARM"]


@pytest.mark.parametrize(("vi", "vo", "token"), [
    (230.0, 210.0, "TRIM"), (230.0, 230.0, "BYPASS"), (200.0, 230.0, "BOOST"),
    (230.0, 100.0, None), (100.0, 230.0, None),  # outside 0.5-1.5 x vi: ignored
])
def test_bit5_compares_output_with_input(vi: float, vo: float, token: str | None) -> None:
    q = mp.parse_q1(f"({vi:05.1f} {vi:05.1f} {vo:05.1f} 020 50.0 27.0 25.0 00101001\r".encode())
    tokens = mp.status_tokens(q)
    assert tokens[0] == "OL"
    extra = [t for t in tokens if t in ("TRIM", "BYPASS", "BOOST")]
    assert extra == ([token] if token else [])


def test_all_bits_to_tokens() -> None:
    q = mp.parse_q1(b"(000.0 000.0 230.0 050 50.0 21.0 25.0 11011110\r")
    assert mp.status_tokens(q) == ["OB", "LB", "CAL", "FSD", "ALARM"]
    assert mp.status_tokens(q, ignore_shutdown_bit=True) == ["OB", "LB", "CAL", "ALARM"]
    assert q.standby_type and not q.beeper_on


@pytest.mark.parametrize("raw", [
    b"( 230.0 230.0  230.0 23 50.0  27.0 25.0 00001001\r",  # blank after '(', double blanks, unpadded load
    b"(230.0 230.0 230.0 023 50.0 27.0 25.0 00001001 \r",  # trailing blank
    b"(230 230 230 23 50 27 25 00001001\r",  # no decimals
])
def test_odd_but_legal_spacing(raw: bytes) -> None:
    q = mp.parse_q1(raw)
    assert (q.input_voltage, q.load_pct, q.battery_voltage, q.temperature) == (230.0, 23.0, 27.0, 25.0)
    assert q.standby_type


def test_unsupported_field_is_none_not_zero() -> None:
    q = mp.parse_q1(b"(230.0 230.0 230.0 023 50.0 27.0 @@.@ 00001001\r")
    assert q.temperature is None and q.battery_voltage == 27.0


@pytest.mark.parametrize(("raw", "why"), [
    (b"(208.4 140.0 208.4 034 59.9 2.05 00110000\r", "7 fields"),
    (b"(208.4 140.0 208.4 034 59.9 2.05 35.0 35.0 00110000\r", "9 fields"),
    (b"208.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r", "does not start"),
    (b"(208.4 140.0 20X.4 034 59.9 2.05 35.0 00110000\r", "not a number"),
    (b"(208.4 140.0 208.4 034 59.9 2.05 35.0 0011000\r", "bits"),
    (b"(208.4 140.0 208.4 034 59.9 2.05 35.0 00120000\r", "bits"),
    (b"(208.4 140.0\r", "fields"),  # truncated line
    (b"(208.4 140.0 208.4 034 59.9 2.05 35.0 0011", "no CR"),  # truncated, no terminator
    (b"Q1\r", "echoed"),  # NAK by echo: the unit does not know Q1
    (b"NAK\r", "NAK"),
    (b"\r", "does not start"),
    (b"(2\xb3\x80.4 ?4 Z30.0 0!3 5\x00.0\r", "non-ASCII"),
    (b"(208.4 140.0 208.4 034 59.9 2.05 35.0\x0700110000\r", "control"),
    (b"(" + b"1" * 200 + b"\r", "too long"),
    (b"(nan inf 208.4 034 59.9 2.05 35.0 00110000\r", "not a number"),
    (b"(1e3 140.0 208.4 034 59.9 2.05 35.0 00110000\r", "not a number"),
    # absurd readings (#18): a garbled reply, a protocol error of the UPS, never a reading
    (b"(208.4 140.0 208.4 999 59.9 2.05 35.0 00110000\r", "load 999 is outside"),
    (b"(99999999999999999999.9 140.0 208.4 034 59.9 2.05 35.0 00110000\r", "input voltage 1e+20 is outside"),
    (b"(208.4 140.0 208.4 034 59.9 2.05 -99.0 00110000\r", "temperature -99 is outside"),
    (b"(208.4 140.0 208.4 034 9999 2.05 35.0 00110000\r", "frequency 9999 is outside"),
])
def test_malformed_q1_is_protocol_error_with_raw_line(raw: bytes, why: str) -> None:
    with pytest.raises(ProtocolError) as info:
        mp.parse_q1(raw)
    msg = str(info.value)
    assert why in msg
    assert repr(raw[:20])[2:-1][:10] in msg  # the raw line is in the message


def test_rating_and_identity() -> None:
    r = mp.parse_f(b"#220.0 000 024.0 50.0\r")
    assert (r.voltage, r.current, r.battery_voltage, r.frequency) == (220.0, 0.0, 24.0, 50.0)
    assert mp.parse_f(b"#230.0 004 12.00 50.0\r").battery_voltage == 12.0
    ident = b"#" + b"ACME POWER".ljust(15) + b" " + b"LI-650".ljust(10) + b" " + b"V2.1".ljust(10) + b"\r"
    assert len(ident) == 39
    i = mp.parse_i(ident)
    assert (i.company, i.model, i.version, i.label) == ("ACME POWER", "LI-650", "V2.1", "ACME POWER LI-650")
    assert mp.parse_i(b"#MEGA  UPS1K  1.0\r").model == "UPS1K"
    for bad in (b"F\r", b"#220.0 000 024.0\r", b"(220.0 000 024.0 50.0\r", b"#2x0.0 000 024.0 50.0\r"):
        with pytest.raises(ProtocolError):
            mp.parse_f(bad)
    for bad in (b"I\r", b"#\r", b"ACME\r", b"#A  B  C  D\r"):
        with pytest.raises(ProtocolError):
            mp.parse_i(bad)


def test_charge_nut_formula() -> None:
    # 24 V nominal: low 20.8 V, high 26.0 V (104/120, 130/120).
    est = mp.estimate_charge(23.4, 24.0)
    assert est is not None and est.approximate
    assert (est.low, est.high, est.packs) == (20.8, 26.0, 1.0)
    assert est.charge_pct == 50.0
    assert mp.estimate_charge(27.5, 24.0).charge_pct == 100.0  # type: ignore[union-attr]  # clamped
    assert mp.estimate_charge(20.0, 24.0).charge_pct == 0.0  # type: ignore[union-attr]
    assert mp.estimate_charge(12.35, 12.0).charge_pct == 75.0  # type: ignore[union-attr]  # 12 V: 10.4-13.0


def test_charge_per_cell_pack_detection() -> None:
    # 2.05 V per cell on a 24 V unit: factor 12 -> 24.6 V -> (24.6-20.8)/5.2 = 73 %.
    assert mp.detect_packs(2.05, 24.0) == 12.0
    est = mp.estimate_charge(2.05, 24.0)
    assert est is not None and est.packs == 12.0 and est.pack_voltage == 24.6 and est.charge_pct == 73.0
    assert mp.detect_packs(27.0, 24.0) == 1.0
    assert mp.detect_packs(13.0, 24.0) == 2.0  # two 12 V blocks reported one at a time
    assert mp.detect_packs(16.0, 24.0) is None  # 2 x 16 > 30, 1 x 16 < 19.2: detection fails
    assert mp.estimate_charge(16.0, 24.0) is None


def test_charge_overrides_and_unknowns() -> None:
    est = mp.estimate_charge(25.0, None, low=22.0, high=26.0)
    assert est is not None and est.charge_pct == 75.0 and est.packs == 1.0
    est = mp.estimate_charge(2.0, 24.0, packs=12.0, low=21.0, high=27.0)
    assert est is not None and est.charge_pct == 50.0
    assert mp.estimate_charge(None, 24.0) is None
    assert mp.estimate_charge(25.0, None) is None  # no nominal, no range: no guess
    assert mp.estimate_charge(25.0, 24.0, low=26.0, high=22.0) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_any_line_is_a_reading_or_protocol_error(data: bytes) -> None:
    for raw in (data, data + b"\r", b"(" + data + b"\r", b"#" + data + b"\r"):
        for parse in (mp.parse_q1, mp.parse_f, mp.parse_i):
            try:
                parse(raw)
            except ProtocolError:
                pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["230.0", "23", "@@@.@", "-5.0", "0", ".5", "1.", "x", "", "  "]),
                min_size=6, max_size=9),
       st.text(alphabet="012 ", min_size=0, max_size=10))
def test_near_miss_q1_lines(fields: list[str], bits: str) -> None:
    raw = ("(" + " ".join(fields) + " " + bits + "\r").encode()
    try:
        q = mp.parse_q1(raw)
    except ProtocolError:
        return
    assert len(q.bits) == 8
    mp.status_tokens(q)
    mp.estimate_charge(q.battery_voltage, 24.0)
