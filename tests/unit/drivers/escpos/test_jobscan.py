"""The print proxy's job scanner (escpos/jobscan.py): counts what a job prints, skipping
image and barcode data, however the bytes are split; checked against the simulated
printer's own print layer on receipts and on generated jobs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posagent.drivers.escpos.commands import CUT_FEED_MM, LINE_MM, QR_MM
from posagent.drivers.escpos.jobscan import HEADER_MAX, JobCounts, JobScanner
from posagent.drivers.escpos.sim import EscposSim
from tests.integration.pos_app import ESC, GS, raster, receipt

DLE = b"\x10"


def scanned(job: bytes, cuts: list[int] | None = None, line_mm: float = LINE_MM) -> JobCounts:
    """The counts of ``job`` fed in pieces split at ``cuts`` (offsets)."""
    s = JobScanner(line_mm)
    bounds = sorted({c for c in (cuts or []) if 0 < c < len(job)})
    for a, b in zip([0, *bounds], [*bounds, len(job)], strict=True):
        s.feed(job[a:b])
    return s.counts


def printed_by_sim(job: bytes) -> EscposSim:
    sim = EscposSim()
    sim.on_bytes(job)
    return sim


def assert_like_sim(c: JobCounts, sim: EscposSim, advances: int) -> None:
    assert (c.lines, c.cuts, c.images) == (len(sim.printed_lines), sim.cuts, sim.images)
    # the simulator rounds its running total to 0.01 mm at every advance
    assert c.paper_mm == pytest.approx(sim.printed_mm, abs=0.005 * (advances + 1))


# -- fixed jobs ------------------------------------------------------------------------
def test_a_receipt_counts_like_the_printer_prints_it() -> None:
    job = receipt(1)
    sim = printed_by_sim(job)
    c = scanned(job)
    assert_like_sim(c, sim, advances=len(job))
    assert (c.lines, c.cuts, c.images, c.bytes) == (4, 1, 1, len(job))
    assert c.realtime == 0  # the 10 04 01 inside the image is data, not a query
    assert c.paper_mm == pytest.approx(4 * LINE_MM + 24 / 8 + QR_MM + 3 * LINE_MM + 16 / 8 + CUT_FEED_MM)


def test_realtime_queries_outside_data_are_counted_apart() -> None:
    c = scanned(b"\x10\x04\x01" + b"abc\n" + b"\x10\x05\x01" + b"\x10\x14\x01\x00\x05" + b"\x10\x04\x04")
    assert (c.realtime, c.lines) == (4, 1)


def test_fixed_length_commands_are_not_text() -> None:
    # ESC @, ESC ! n, ESC E n, GS ! n, ESC a n with parameter bytes that look like text or LF
    job = ESC + b"@" + ESC + b"!\x0a" + ESC + b"E\x41" + GS + b"!\x11" + ESC + b"a\x31" + ESC + b"d\x02"
    c = scanned(job)
    assert (c.lines, c.paper_mm) == (0, pytest.approx(2 * LINE_MM))  # only ESC d's feed, no text line


def test_payloads_are_skipped_whole() -> None:
    lf_data = b"\n\x1dVA\x00\x10\x04\x01" * 8
    job = (
        GS + b"(L" + (len(lf_data) + 2).to_bytes(2, "little") + b"0p" + lf_data  # GS ( L: stored graphics
        + GS + b"8L" + (len(lf_data) + 2).to_bytes(4, "little") + b"0p" + lf_data  # GS 8 L: 4-byte length
        + GS + b"(k\x06\x001P0\n\n\n"  # GS ( k: store a QR code whose data is LFs
        + ESC + b"*\x21" + (len(lf_data) // 3).to_bytes(2, "little") + lf_data  # ESC * 33: 3 bytes a column
        + ESC + b"*\x00" + len(lf_data).to_bytes(2, "little") + lf_data  # ESC * 0: 1 byte a column
        + GS + b"kI" + bytes((len(lf_data),)) + lf_data  # GS k 73 (CODE128): length-prefixed
        + GS + b"k\x04" + b"*A\n1*\x00"  # GS k 4 (CODE39): NUL-terminated
    )
    c = scanned(job)
    assert (c.lines, c.cuts, c.realtime, c.images) == (0, 0, 0, 0)
    assert_like_sim(c, printed_by_sim(job), advances=1)


def test_an_esc_star_band_is_printed_by_the_line_feed_after_it() -> None:
    band = ESC + b"*\x21" + (10).to_bytes(2, "little") + b"\n" * 30 + b"\n"
    assert scanned(band).paper_mm == pytest.approx(LINE_MM)  # the line height covers a 24-dot band
    assert scanned(band, line_mm=2.0).paper_mm == pytest.approx(24 / 8)  # a short line: the band's height
    assert scanned(band + b"\n", line_mm=2.0).paper_mm == pytest.approx(24 / 8 + 2.0)


def test_byte_by_byte_and_big_images() -> None:
    job = b"head\n" + raster(72, 1000, b"\n\x1dV") + b"tail\n" + GS + b"V\x00"
    whole = scanned(job)
    assert (whole.lines, whole.cuts, whole.images) == (2, 1, 1)
    assert whole.paper_mm == pytest.approx(2 * LINE_MM + 1000 / 8)
    assert scanned(job, list(range(len(job)))) == whole


def test_an_overlong_header_is_passed_over_the_same_way_however_split() -> None:
    job = b"a" + GS + b"k\x04" + b"1\n" * 320 + GS + b"V\x00"  # a barcode with no NUL within HEADER_MAX
    whole = scanned(job)
    assert HEADER_MAX < 640 and (whole.lines, whole.cuts) == (320, 1)  # its bytes are read as what they are
    for cut in (2, 3, 100, HEADER_MAX, HEADER_MAX + 1, HEADER_MAX + 3, 600):
        assert scanned(job, [cut]) == whole, cut
        assert scanned(job, [cut, cut + 1, cut + 7]) == whole, cut


def test_noise_never_raises() -> None:
    s = JobScanner()
    for chunk in (b"\x1b", b"\x1d(", b"\xff" * 600, b"\x1dk\x04" + b"x" * 1000, bytes(range(256)) * 4):
        s.feed(chunk)
    assert s.counts.bytes == 1 + 2 + 600 + 1003 + 1024


# -- generated jobs ----------------------------------------------------------------------
def _data(n: int) -> st.SearchStrategy[bytes]:
    """``n`` payload bytes: anything, with LF, ESC, GS and DLE EOT often (but never
    DLE ENQ 2, which makes a printer clear its buffer wherever it appears)."""
    byte = st.one_of(st.integers(0, 255), st.sampled_from([0x0A, 0x0C, 0x10, 0x04, 0x1B, 0x1D, 0x56, 0x00]))
    return st.lists(byte, min_size=n, max_size=n).map(lambda bs: bytes(bs).replace(b"\x10\x05\x02", b"\x10\x06\x02"))


@st.composite
def _command(draw: st.DrawFn) -> tuple[bytes, int]:
    """One piece of a job and how many real-time commands it holds outside data."""
    kind = draw(st.integers(0, 17))
    if kind == 0:
        text = draw(st.binary(min_size=1, max_size=30))
        return bytes(b if 0x20 <= b != 0x7F else 0x41 for b in text), 0
    if kind == 1:
        return draw(st.sampled_from([b"\n", b"\x0c", b"\r", b"\t", b"\x00", b"\n\n"])), 0
    if kind == 2:
        op = draw(st.sampled_from([b"d", b"J", b"!", b"E", b"a", b"3", b"t", b"-"]))
        return ESC + op + bytes((draw(st.integers(0, 6 if op == b"d" else 255)),)), 0
    if kind == 3:
        return draw(st.sampled_from([ESC + b"@", ESC + b"2", ESC + b"i", ESC + b"m", GS + b"!\x0a", GS + b"r\x01"])), 0
    if kind == 4:
        m = draw(st.sampled_from([0, 1, 48, 49]))
        return GS + b"V" + bytes((m,)), 0
    if kind == 5:
        m = draw(st.sampled_from([65, 66, 97, 98]))
        return GS + b"V" + bytes((m, draw(st.integers(0, 255)))), 0
    if kind == 6:
        w, h = draw(st.integers(1, 6)), draw(st.integers(0, 40))
        head = GS + b"v0" + bytes((draw(st.integers(0, 3)),)) + w.to_bytes(2, "little") + h.to_bytes(2, "little")
        return head + draw(_data(w * h)), 0
    if kind == 7:
        m = draw(st.sampled_from([0, 1, 32, 33]))
        cols = draw(st.integers(0, 20))
        return ESC + b"*" + bytes((m,)) + cols.to_bytes(2, "little") + draw(_data(cols * (1 if m < 2 else 3))), 0
    if kind == 8:
        digits = draw(st.binary(min_size=0, max_size=12).map(lambda b: bytes(0x30 + x % 10 for x in b)))
        return GS + b"k" + bytes((draw(st.integers(0, 6)),)) + digits + b"\x00", 0
    if kind == 9:
        data = draw(_data(draw(st.integers(0, 30))))
        return GS + b"k" + bytes((draw(st.integers(65, 73)), len(data))) + data, 0
    if kind == 10:
        qr = draw(_data(draw(st.integers(0, 30))))
        store = GS + b"(k" + (len(qr) + 3).to_bytes(2, "little") + b"1P0" + qr
        return store + draw(st.sampled_from([b"", GS + b"(k\x03\x001Q0"])), 0
    if kind == 11:
        data = draw(_data(draw(st.integers(0, 40))))
        return GS + b"(L" + len(data).to_bytes(2, "little") + data, 0
    if kind == 12:
        data = draw(_data(draw(st.integers(0, 40))))
        return GS + b"8L" + len(data).to_bytes(4, "little") + data, 0
    if kind == 13:
        return DLE + b"\x04" + bytes((draw(st.integers(1, 4)),)), 1
    if kind == 14:
        return DLE + b"\x05\x01", 1
    if kind == 15:
        return DLE + b"\x14\x01" + bytes((draw(st.integers(0, 1)), draw(st.integers(1, 8)))), 1
    if kind == 16:
        return draw(st.sampled_from([b"\x1c&", b"\x1c.", b"\x1c&\xb0\xa1\n"])), 0  # FS &: Kanji mode
    return ESC + b"D" + bytes(sorted(set(draw(st.lists(st.integers(1, 40), max_size=8))))) + b"\x00", 0


@st.composite
def _job(draw: st.DrawFn) -> tuple[bytes, int]:
    pieces = draw(st.lists(_command(), min_size=1, max_size=25))
    return b"".join(p for p, _ in pieces), sum(n for _, n in pieces)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_job(), st.lists(st.integers(min_value=1, max_value=3000), max_size=12))
def test_generated_jobs_count_like_the_printer_however_split(job: tuple[bytes, int], cuts: list[int]) -> None:
    data, realtime = job
    whole = scanned(data)
    assert whole.realtime == realtime and whole.bytes == len(data)
    assert_like_sim(whole, printed_by_sim(data), advances=len(data))
    assert scanned(data, cuts) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2000), max_size=12, unique=True))
def test_any_split_of_receipts_gives_the_same_counts(points: list[int]) -> None:
    job = receipt(2) + receipt(3)
    assert scanned(job, points) == scanned(job)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0x00, 0x0A, 0x10, 0x04, 0x05, 0x14, 0x1B, 0x1D, 0x1C, 0x28, 0x6B, 0x56, 0x76,
                                 0x30, 0x2A, 0x38, 0x4C, 0x41, 0xFF, 0x01, 0x03]), max_size=400),
       st.lists(st.integers(min_value=1, max_value=400), max_size=10))
def test_any_split_of_noise_gives_the_same_counts(noise: list[int], cuts: list[int]) -> None:
    data = bytes(noise)
    assert scanned(data, cuts) == scanned(data)
