"""The print proxy's job scanner (escpos/jobscan.py): counts what a job prints, skipping
image and barcode data, however the bytes are split; checked against the simulated
printer's own print layer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posagent.drivers.escpos.jobscan import JobCounts, JobScanner
from posagent.drivers.escpos.sim import EscposSim
from tests.integration.pos_app import GS, raster, receipt


def scanned(job: bytes, cuts: list[int] | None = None) -> JobCounts:
    s = JobScanner()
    pieces = [job] if not cuts else [job[a:b] for a, b in zip([0, *cuts], [*cuts, len(job)], strict=False)]
    for p in pieces:
        s.feed(p)
    return s.counts


def test_a_receipt_counts_like_the_printer_prints_it() -> None:
    job = receipt(1)
    sim = EscposSim()
    sim.on_bytes(job)
    c = scanned(job)
    assert (c.lines, c.cuts, c.images, c.bytes) == (len(sim.printed_lines), sim.cuts, sim.images, len(job))
    assert c.lines == 4 and c.cuts == 1 and c.images == 1
    assert c.paper_mm == pytest.approx(sim.printed_mm, abs=0.05)
    assert c.realtime == 0  # the 10 04 01 inside the image is data, not a query


def test_realtime_queries_outside_data_are_counted_apart() -> None:
    c = scanned(b"\x10\x04\x01" + b"abc\n" + b"\x10\x04\x04")
    assert (c.realtime, c.lines) == (2, 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2000), max_size=12, unique=True))
def test_any_split_gives_the_same_counts(points: list[int]) -> None:
    job = receipt(2) + receipt(3)
    cuts = sorted(p for p in points if p < len(job))
    assert scanned(job, cuts) == scanned(job)


def test_byte_by_byte_and_big_images() -> None:
    job = b"head\n" + raster(72, 1000, b"\n\x1dV") + b"tail\n" + GS + b"V\x00"
    whole = scanned(job)
    assert (whole.lines, whole.cuts, whole.images) == (2, 1, 1)
    assert whole.paper_mm == pytest.approx(2 * 4.23 + 1000 / 8)
    one = JobScanner()
    for i in range(len(job)):
        one.feed(job[i:i + 1])
    assert one.counts == whole


def test_noise_never_raises() -> None:
    s = JobScanner()
    for chunk in (b"\x1b", b"\x1d(", b"\xff" * 600, b"\x1dk\x04" + b"x" * 1000, bytes(range(256)) * 4):
        s.feed(chunk)
    assert s.counts.bytes == 1 + 2 + 600 + 1003 + 1024
