"""The card-reader frame codec: vendor vectors, every profile, overrides, typed errors,
and property tests (round trip; any bytes decode to a frame or a ProtocolError)."""

from __future__ import annotations

import functools
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posagent.core.errors import ProtocolError
from posagent.core.status import Status
from posagent.drivers.cardreader import CardReaderOptions, frames
from posagent.drivers.cardreader.frames import PROFILES, FrameProfile, decode, encode, frame_end, get_profile, lrc

IDTECH, STAR, GENLEN = PROFILES["idtech"], PROFILES["star"], PROFILES["generic-len"]


def loop_xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


# -- vendor vectors (protocols.md section 4) ------------------------------------------
@pytest.mark.parametrize(("profile", "payload", "frame_hex"), [
    (IDTECH, b"R\x22", "02 52 22 03 71"),  # ID TECH get firmware version
    (IDTECH, b"R\x4c", "02 52 4C 03 1F"),  # read encryption setting
    (IDTECH, b"S\x58\x01\x31", "02 53 58 01 31 03 3A"),  # set DUKPT key management
    (IDTECH, b"\x4c\x01\x30", "02 4C 01 30 03 7C"),  # the reply to it, after ACK
    (STAR, b"X", "02 58 03 5B"),  # Star TCP300 ROM version request
])
def test_vendor_vectors(profile: FrameProfile, payload: bytes, frame_hex: str) -> None:
    frame = bytes.fromhex(frame_hex)
    assert encode(payload, profile) == frame
    assert decode(frame, profile) == payload


def test_length_byte_profile_layout() -> None:
    frame = encode(b"E\x03\x02", GENLEN)  # with a length byte, ETX and STX may ride in the payload
    assert frame[:2] == b"\x02\x03" and frame[-2] == 0x03
    assert frame[-1] == functools.reduce(operator.xor, frame[1:-1])  # after-stx: LEN..ETX
    assert decode(frame, GENLEN) == b"E\x03\x02"


def test_payload_span() -> None:
    p = FrameProfile("payload-only", lrc_span="payload")
    frame = encode(b"\x10\x20\x40", p)
    assert frame == b"\x02\x10\x20\x40\x03\x70"


# -- typed errors ---------------------------------------------------------------------
@pytest.mark.parametrize(("frame", "profile", "code"), [
    (b"\x02\x52", IDTECH, "READER_BAD_FRAME"),  # too short
    (b"\x05\x52\x22\x03\x71", IDTECH, "READER_BAD_FRAME"),  # no STX
    (b"\x02\x52\x22\x04\x71", IDTECH, "READER_BAD_FRAME"),  # no ETX
    (b"\x02\x52\x03\x22\x03\x71", IDTECH, "READER_BAD_FRAME"),  # ETX inside
    (b"\x02\x52\x22\x03\x70", IDTECH, "READER_BAD_CHECKSUM"),
    (b"\x02\x05E\x03\x46", GENLEN, "READER_BAD_LENGTH"),
])
def test_decode_errors(frame: bytes, profile: FrameProfile, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame, profile)
    assert info.value.code == code


def test_bad_checksum_grades_fail_and_names_no_payload() -> None:
    frame = bytearray(encode(b"SECRET", IDTECH))
    frame[-1] ^= 1
    with pytest.raises(ProtocolError) as info:
        decode(bytes(frame), IDTECH)
    assert info.value.status is Status.FAIL
    assert "SECRET" not in str(info.value)


def test_encode_refuses_what_the_profile_cannot_carry() -> None:
    with pytest.raises(ValueError, match="ETX"):
        encode(b"a\x03b", IDTECH)
    with pytest.raises(ValueError, match="one-byte length"):
        encode(bytes(256), GENLEN)


def test_frame_end_waits_for_whole_frames() -> None:
    frame = encode(b"hello", GENLEN)
    for cut in range(len(frame)):
        assert frame_end(frame[:cut], GENLEN) is None
    assert frame_end(frame + b"tail", GENLEN) == len(frame)
    frame = encode(b"hello", STAR)
    assert frame_end(frame[:-1], STAR) is None
    assert frame_end(b"junk" + frame, STAR, start=4) == 4 + len(frame)
    assert frame_end(frame, STAR, stop=len(frame) - 1) is None


# -- profiles and overrides -------------------------------------------------------------
def test_overrides_make_a_new_vendor_without_code() -> None:
    opts = CardReaderOptions(profile="idtech", length_byte=True, lrc_span="payload", stx=0x0A,
                             command="version", retries_on_nak=3)
    p = opts.frame_profile()
    assert (p.stx, p.length_byte, p.lrc_span, p.retries_on_nak) == (0x0A, True, "payload", 3)
    assert p.etx == IDTECH.etx and p.version_cmd == IDTECH.version_cmd
    assert decode(encode(b"R\x22", p), p) == b"R\x22"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lrc_span": "everything"}, "lrc_span"),
    ({"stx": 0x03}, "differ"),
    ({"ack": 0x02}, "different"),
    ({"stx": 300}, "byte value"),
    ({"retries_on_nak": 50}, "retries"),
])
def test_bad_profile_fields(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IDTECH.with_overrides(**kwargs)


def test_options_check_the_command_exists() -> None:
    with pytest.raises(ValueError, match="no echo command"):
        CardReaderOptions(profile="idtech", command="echo")
    assert CardReaderOptions(profile="idtech", command="echo", echo_command="45").frame_profile().echo_cmd == b"E"
    with pytest.raises(ValueError, match="hex"):
        CardReaderOptions(echo_command="zz")
    with pytest.raises(ValueError, match="unknown reader profile"):
        get_profile("acme")


# -- properties ---------------------------------------------------------------------------
@given(st.binary(max_size=4096))
def test_lrc_is_the_xor_of_all_bytes(data: bytes) -> None:
    assert lrc(data) == loop_xor(data) == lrc(memoryview(data)) == lrc(bytearray(data))


@settings(max_examples=300)
@given(st.sampled_from(sorted(PROFILES)), st.binary(max_size=255))
def test_round_trip(name: str, payload: bytes) -> None:
    p = PROFILES[name]
    if not p.length_byte:
        payload = payload.replace(bytes((p.etx,)), b"")
    frame = encode(payload, p)
    assert decode(frame, p) == payload
    assert frame_end(frame, p) == len(frame) == len(payload) + p.overhead


@settings(max_examples=500)
@given(st.sampled_from(sorted(PROFILES)), st.binary(max_size=64))
def test_any_bytes_decode_to_a_frame_or_a_protocol_error(name: str, data: bytes) -> None:
    p = PROFILES[name]
    try:
        payload = decode(data, p)
    except ProtocolError as e:
        assert e.code in ("READER_BAD_FRAME", "READER_BAD_LENGTH", "READER_BAD_CHECKSUM")
        return
    assert encode(payload, p) == data  # whatever decodes is exactly a frame of its payload


@settings(max_examples=200)
@given(st.sampled_from(sorted(PROFILES)), st.binary(min_size=1, max_size=40), st.integers(0, 39), st.integers(1, 255))
def test_any_single_corruption_is_detected(name: str, payload: bytes, pos: int, flip: int) -> None:
    p = PROFILES[name]
    if not p.length_byte:
        payload = payload.replace(bytes((p.etx,)), b"") or b"x"
    frame = bytearray(encode(payload, p))
    frame[pos % len(frame)] ^= flip
    try:
        got = decode(bytes(frame), p)
    except ProtocolError:
        return
    pytest.fail(f"corrupted frame decoded to {got!r}")


def test_codes_exported() -> None:
    assert frames.COMMANDS == ("echo", "version")
    assert set(frames.LRC_SPANS) == {"stx-etx", "after-stx", "payload"}
