"""ISO 7811/7813 track parsing: sentinels, LRC, layout, masking, and no card data in what
the parser returns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posagent.drivers.cardreader.sim import TEST_CARDS, TEST_PAN
from posagent.drivers.cardreader.tracks import mask_pan, parse_swipe, track_lrc, wipe

T1 = b"%B" + TEST_PAN + b"^TEST/CARD^30122010000000000000?"
T2 = b";" + TEST_PAN + b"=30122010000000000000?"


def lrc_by_bits(track: bytes, number: int) -> int:
    """Independent LRC: per bit row, the even parity over all characters (ISO 7811-2)."""
    bits, offset = (6, 0x20) if number == 1 else (4, 0x30)
    value = 0
    for bit in range(bits):
        ones = sum(((c - offset) >> bit) & 1 for c in track)
        value |= (ones & 1) << bit
    return value + offset


def test_lrc_matches_the_bit_parity_definition() -> None:
    for number, track in ((1, T1), (2, T2), (3, b";011234567890123456789=1234?")):
        assert track_lrc(track, number) == lrc_by_bits(track, number)


def test_good_swipe_with_lrc() -> None:
    info = parse_swipe(bytearray(TEST_CARDS["visa"]))
    assert info.read_tracks == [1, 2]
    assert info.good and info.luhn_ok is True
    assert info.masked_pan == "476173******0010"
    assert [t.lrc for t in info.tracks.values()] == ["ok", "ok"]


def test_swipe_without_lrc_is_well_formed_with_lrc_absent() -> None:
    info = parse_swipe(bytearray(T1 + T2 + b"\r"))
    assert info.good and [t.lrc for t in info.tracks.values()] == ["absent", "absent"]
    info = parse_swipe(bytearray(T2), track_lrc_mode="yes")
    assert not info.good and info.tracks[2].problems == ["track 2 LRC missing"]
    info = parse_swipe(bytearray(TEST_CARDS["visa"]), track_lrc_mode="no")
    assert info.good and info.stray_bytes == 2  # the LRC characters, taken for noise


def test_bad_lrc_is_named_per_track() -> None:
    info = parse_swipe(bytearray(TEST_CARDS["bad-lrc"]))
    assert info.tracks[1].well_formed
    assert info.tracks[2].lrc == "bad" and info.tracks[2].problems == ["track 2 LRC does not match"]
    assert not info.good


def test_missing_end_sentinel_and_unreadable_tracks() -> None:
    info = parse_swipe(bytearray(TEST_CARDS["no-end"]))
    assert info.tracks[1].problems == ["track 1 has no end sentinel"]
    assert info.tracks[2].well_formed  # the next track still parses
    info = parse_swipe(bytearray(TEST_CARDS["unreadable"]))
    assert info.read_tracks == []
    assert [t.problems for t in info.tracks.values()] == [["track 1 unreadable (reader reported an error)"],
                                                         ["track 2 unreadable (reader reported an error)"]]


def test_track3_and_stray_bytes() -> None:
    t3 = b";011234567890123456789=1234?"
    data = b"\x02" + T2 + t3 + bytes((track_lrc(t3, 3),)) + b"\r\n"
    info = parse_swipe(bytearray(data), track_lrc_mode="auto")
    assert info.read_tracks == [2, 3] and info.tracks[3].lrc == "ok" and info.good
    assert info.stray_bytes == 1


@pytest.mark.parametrize(("track", "problem"), [
    (b"%A" + TEST_PAN + b"^TEST/CARD^3012201?", "track 1 format code is not B"),
    (b"%B" + TEST_PAN + b"TEST/CARD3012201?", "track 1 lacks the two ^ field separators"),
    (b"%B" + TEST_PAN + b"^X^3012201?", "track 1 name field is not 2-26 characters"),
    (b"%B12AB^TEST/CARD^3012201?", "track 1 account number is not 1-19 digits"),
    (b"%B" + TEST_PAN + b"^TEST/CARD^30?", "track 1 expiry date and service code are not 7 digits"),
    (b";" + TEST_PAN + b"3012201?", "track 2 lacks the = field separator"),
    (b";" + TEST_PAN + b"=3012201A?", "track 2 has characters outside its alphabet"),
    (b";" + b"1" * 20 + b"=3012201?", "track 2 account number is not 1-19 digits"),
    (b";" + TEST_PAN + b"=" + b"0" * 30 + b"?", "track 2 is longer than 40 characters"),
])
def test_layout_problems(track: bytes, problem: str) -> None:
    info = parse_swipe(bytearray(track), track_lrc_mode="no")
    number = 1 if track[:1] == b"%" else 2
    assert info.tracks[number].problems == [problem]
    assert not info.good


def test_pan_mismatch_between_tracks() -> None:
    other = b";4111111111111111=30122010000000000000?"
    info = parse_swipe(bytearray(T1 + other))
    assert "account numbers of tracks 1 and 2 differ" in info.tracks[2].problems


def test_luhn_failure_is_reported() -> None:
    bad = TEST_PAN[:-1] + b"1"
    info = parse_swipe(bytearray(b";" + bad + b"=3012201?"))
    assert info.good and info.luhn_ok is False


def test_auto_mode_takes_a_sentinel_valued_lrc_when_a_track_follows() -> None:
    # Find a track 1 whose LRC character is ';' (a start sentinel): auto mode must still
    # read it as the LRC because another track follows it.
    names = (bytes((a, b))[:k] for k in (1, 2) for a in range(0x41, 0x5B) for b in range(0x41, 0x5B))
    t1 = next(t for t in (b"%B" + TEST_PAN + b"^TEST/" + name + b"^3012201?" for name in names)
              if track_lrc(t, 1) == 0x3B)
    info = parse_swipe(bytearray(t1 + b";" + T2))
    assert info.tracks[1].lrc == "ok" and info.tracks[2].well_formed


@pytest.mark.parametrize(("pan", "masked"), [
    (b"4761739001010010", "476173******0010"),
    (b"4761739001010010123", "476173*********0123"),
    (b"4111111111111", "411111***1111"),
    (b"123456789012", "********9012"),
    (b"1234", "****"),
])
def test_mask_pan(pan: bytes, masked: str) -> None:
    assert mask_pan(pan) == masked


def test_results_carry_no_card_data_and_wipe_clears_the_buffer() -> None:
    buf = bytearray(TEST_CARDS["visa"])
    info = parse_swipe(buf)
    text = repr(info)
    assert TEST_PAN.decode() not in text and "TEST/CARD" not in text and "3012201" not in text
    wipe(buf)
    assert buf == bytearray(len(TEST_CARDS["visa"]))


@given(st.binary(max_size=300))
def test_parser_never_raises_on_any_bytes(data: bytes) -> None:
    info = parse_swipe(bytearray(data))
    assert all(t.number in (1, 2, 3) for t in info.tracks.values())
    if info.masked_pan is not None:
        assert "*" in info.masked_pan or len(info.masked_pan) <= 4
