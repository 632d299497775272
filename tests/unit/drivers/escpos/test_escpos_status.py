"""Bit-level decoding of ESC/POS status replies, from the manual's bit tables.

Every byte 0x00-0xFF is tried for each DLE EOT n: the ones without the fixed bits
(``0xx1xx10``) must be ProtocolErrors, the others must decode to exactly the flags the
tables name. The tables are written out again here, bit by bit, rather than imported.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posagent.core.base import Status
from posagent.core.errors import ProtocolError
from posagent.drivers.escpos.status import (
    EscposStatus,
    check_eot_reply,
    check_id_byte,
    decode_flags,
    decode_status,
    eot_query,
    grade,
    gs_i,
    identity_from,
    parse_id_string,
)

# (n, bit, flag): protocols.md 1.2, DLE EOT n reply bits that are not fixed.
MANUAL_BITS = [
    (1, 2, "drawer_pin3_high"), (1, 3, "offline"), (1, 5, "waiting_online_recovery"), (1, 6, "feed_button"),
    (2, 2, "cover_open"), (2, 3, "paper_feeding"), (2, 5, "stopped_by_paper_end"), (2, 6, "error"),
    (3, 2, "mechanical_error"), (3, 3, "autocutter_error"), (3, 5, "unrecoverable_error"),
    (3, 6, "auto_recoverable_error"),
    (4, 2, "paper_near_end"), (4, 3, "paper_near_end"), (4, 5, "paper_end"), (4, 6, "paper_end"),
]
FIXED_ZERO = (0, 7)
FIXED_ONE = (1, 4)


def _expected_flags(n: int, b: int) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for kind, bit, flag in MANUAL_BITS:
        if kind == n:
            out[flag] = out.get(flag, False) or bool(b >> bit & 1)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_byte_of_every_reply(n: int) -> None:
    valid = 0
    for b in range(256):
        fixed_ok = all(not b >> i & 1 for i in FIXED_ZERO) and all(b >> i & 1 for i in FIXED_ONE)
        if not fixed_ok:
            with pytest.raises(ProtocolError):
                check_eot_reply(n, bytes((b,)))
            continue
        valid += 1
        assert check_eot_reply(n, bytes((b,))) == b
        assert decode_flags(n, b) == _expected_flags(n, b), f"DLE EOT {n} reply 0x{b:02X}"
    assert valid == 16  # 4 free bits


@pytest.mark.parametrize("n, bit, flag", MANUAL_BITS)
def test_single_bit(n: int, bit: int, flag: str) -> None:
    b = 0x12 | (1 << bit)
    flags = decode_flags(n, b)
    assert flags[flag] is True
    assert [k for k, v in flags.items() if v] == [flag]


# protocols.md 1.2 "Example replies"; "-" cells (not given) read as 12.
EXAMPLES = [
    ("all ok", "12 12 12 12", Status.OK, None, "ok", "closed"),
    ("out of paper", "1A 32 12 7E", Status.FAIL, "PAPER_END", "end", "closed"),
    ("out of paper, no near-end sensor", "1A 32 12 72", Status.FAIL, "PAPER_END", "end", "closed"),
    ("cover open", "1A 16 12 12", Status.FAIL, "PRINTER_COVER_OPEN", "ok", "open"),
    ("cover opened while printing", "1A 16 52 12", Status.FAIL, "PRINTER_COVER_OPEN", "ok", "open"),
    ("autocutter jam", "1A 52 1A 12", Status.FAIL, "CUTTER_ERROR", "ok", "closed"),
]


@pytest.mark.parametrize("what, replies, status, code, paper, cover", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_manual_examples(what: str, replies: str, status: Status, code: str | None, paper: str,
                         cover: str) -> None:
    s = decode_status(bytes.fromhex(replies))
    found = grade(s)
    assert (found[0].status, found[0].code) == (status, code) if code else found == []
    assert s.paper == paper and s.cover == cover
    assert s.hex() == replies


# One condition at a time -> (grade, code): the design's status table.
GRADES = [
    ("12 12 12 1E", Status.WARN, "PAPER_NEAR_END"),
    ("1A 12 12 7E", Status.FAIL, "PAPER_END"),
    ("1A 32 12 12", Status.FAIL, "PAPER_END"),  # printing stopped by paper end (near-end sensor set to stop)
    ("1A 16 12 12", Status.FAIL, "PRINTER_COVER_OPEN"),
    ("1A 52 1A 12", Status.FAIL, "CUTTER_ERROR"),
    ("1A 52 16 12", Status.FAIL, "PRINTER_MECHANICAL_ERROR"),
    ("1A 52 32 12", Status.FAIL, "PRINTER_UNRECOVERABLE_ERROR"),
    ("1A 52 52 12", Status.WARN, "PRINTER_OVERHEAT"),
    ("1A 12 12 12", Status.FAIL, "PRINTER_OFFLINE"),
    ("3A 12 12 12", Status.FAIL, "PRINTER_OFFLINE"),
    ("1A 1A 12 12", Status.FAIL, "PRINTER_OFFLINE"),  # feeding with the FEED button
    ("12 52 12 12", Status.FAIL, "PRINTER_OFFLINE"),  # error bit without a cause
    ("16 12 12 12", None, None),  # drawer pin high: not a fault
    ("52 12 12 12", None, None),  # feed button pressed while online: not a fault
]


@pytest.mark.parametrize("replies, status, code", GRADES)
def test_grades(replies: str, status: Status | None, code: str | None) -> None:
    found = grade(decode_status(bytes.fromhex(replies)))
    if status is None:
        assert found == []
    else:
        assert (found[0].status, found[0].code) == (status, code)


def test_worst_first_and_all_named() -> None:
    found = grade(decode_status(bytes.fromhex("1A 56 7E 7E")))  # everything at once
    codes = [f.code for f in found]
    assert codes[0] == "PRINTER_UNRECOVERABLE_ERROR"
    assert {"PRINTER_MECHANICAL_ERROR", "CUTTER_ERROR", "PRINTER_COVER_OPEN", "PAPER_END",
            "PRINTER_OVERHEAT", "PAPER_NEAR_END"} <= set(codes)
    assert [f.status for f in found] == sorted((f.status for f in found), reverse=True)
    assert len(codes) == len(set(codes))


def test_query_bytes() -> None:
    assert [eot_query(n) for n in (1, 2, 3, 4)] == [b"\x10\x04\x01", b"\x10\x04\x02", b"\x10\x04\x03",
                                                     b"\x10\x04\x04"]
    assert gs_i(67) == b"\x1dIC"
    with pytest.raises(ValueError):
        eot_query(5)


@pytest.mark.parametrize("data", [b"", b"\x12\x12", b"\x00", b"\xff", b"\x5f", b"\x10"])
def test_not_a_status(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        check_eot_reply(1, data)


def test_identity_parsing() -> None:
    assert check_id_byte(1, b"\x20") == 0x20
    with pytest.raises(ProtocolError):
        check_id_byte(1, b"\x12")  # bit 4 set: a DLE EOT reply, not an ID
    assert parse_id_string(65, b"_30.03 ESC/POS\x00") == "30.03 ESC/POS"
    for bad in (b"30.03\x00", b"_30.03", b"_\x01\x00", b"_" + b"A" * 81 + b"\x00", b"\x00"):
        with pytest.raises(ProtocolError):
            parse_id_string(65, bad)
    ident = identity_from({1: 0x20, 2: 0x02, 3: 0x05}, {65: "1.28", 66: "EPSON", 67: "TM-T88V"})
    assert ident.model == "EPSON TM-T88V" and ident.firmware_text == "1.28"
    assert ident.type_flags == {"multibyte": False, "autocutter": True, "customer_display": False}
    only_ids = identity_from({1: 0x0D, 3: 0x05}, {})
    assert only_ids.model == "model id 0x0D (TM-U220/U200/U210)" and only_ids.firmware_text == "ROM id 0x05"
    nothing = identity_from({}, {})
    assert not nothing.answered and nothing.model is None and nothing.firmware_text is None


# -- properties: any bytes are a status or a ProtocolError, nothing else --------------------

@given(st.sampled_from([1, 2, 3, 4]), st.binary(max_size=6))
def test_any_reply_is_status_or_protocol_error(n: int, data: bytes) -> None:
    try:
        b = check_eot_reply(n, data)
    except ProtocolError:
        assert len(data) != 1 or (data[0] & 0x93) != 0x12
        return
    assert len(data) == 1 and b == data[0] and (b & 0x93) == 0x12


@given(st.binary(max_size=10))
def test_any_four_bytes_decode_or_protocol_error(data: bytes) -> None:
    try:
        s = decode_status(data)
    except ProtocolError:
        assert len(data) != 4 or any((b & 0x93) != 0x12 for b in data)
        return
    assert isinstance(s, EscposStatus) and s.paper in ("ok", "near_end", "end") and s.cover in ("open", "closed")
    found = grade(s)
    assert all(f.status in (Status.WARN, Status.FAIL) for f in found)
    # Offline is never graded ok; a ready printer has no findings.
    assert not s.offline or found
    assert bool(found) == (s.offline or s.error or s.paper != "ok" or s.cover_open or bool(s.error_flags))


@given(st.binary(max_size=100))
def test_any_id_string_is_text_or_protocol_error(data: bytes) -> None:
    try:
        text = parse_id_string(65, data)
    except ProtocolError:
        return
    assert data[0] == 0x5F and data[-1] == 0 and text.isprintable()


@given(st.binary(max_size=3))
def test_any_id_byte_is_id_or_protocol_error(data: bytes) -> None:
    try:
        b = check_id_byte(1, data)
    except ProtocolError:
        return
    assert len(data) == 1 and (b & 0x90) == 0
