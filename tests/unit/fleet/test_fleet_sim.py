"""The fleet simulator (``python -m tests.bench.fleet``) runs end to end on a small fleet and
prints every scenario and bar; the heartbeat phase it models is the one ``fleet/phase.py``
gives the daemon: stable per terminal, inside the interval, uniform over a fleet. Figures
are reported, never judged here (timing never fails a test)."""

from __future__ import annotations

import math

import pytest

from posagent.fleet.phase import heartbeat_offset, next_beat
from tests.bench import fleet


def test_the_simulator_prints_every_scenario_and_bar(capsys: pytest.CaptureFixture[str]) -> None:
    assert fleet.main(["--terminals", "3000", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    for needle in ("| steady day |", "| fleet-wide reload in 1 s |", "| mass boot 25 %, day |",
                   "| mass boot 25 %, night (rest off) |", "| 1 h down, back unlimited |",
                   "| 1 h down, back at 10,000/s", "| 1 h of 503 + Retry-After 30 s, back at 10,000/s",
                   "peak <= 2x normal", "backlog drained within 30 min", "heartbeat body on the wire <= 1.6 KB",
                   "backlog bytes per report <= 400 B", "steady day peak/mean <= 1.2"):
        assert any(needle in row for row in rows), needle
    assert "B gzipped alone" in out and "B/report in a gzip batch of 50" in out


def test_an_outage_drains_and_every_terminal_ends_steady() -> None:
    sizes = fleet.measure_sizes(rounds=5)
    hour = fleet.outage_hour(400, sizes, 3, 0.0, "down", "30")
    assert hour.active == 400  # every terminal is in its backoff when the collector comes back
    row, figures = fleet.after_outage(hour, fleet.Outage("back", "down", fleet.Collector()))
    assert hour.active == 0 and math.isfinite(figures["drain"])
    assert sum(hour.series.refused) > 400  # tries while it was down, one request each
    assert row.peak > 0


def test_work_held_by_the_collectors_retry_after_is_not_counted_free() -> None:
    """The utilisation "while the fleet was free to send" leaves out what the collector held
    back itself: at the end of an hour of 503 + Retry-After every terminal is held (or just
    back and sending its probe), so almost nothing is free; a shed limited collector's three
    utilisation figures are fractions, the tail one the lowest."""
    sizes = fleet.measure_sizes(rounds=5)
    n = 2000
    hour = fleet.outage_hour(n, sizes, 3, 0.0, "shed", "30")
    back = int(fleet.OUTAGE_START + fleet.OUTAGE_LENGTH)
    requests = [fleet.requests_left(hour.count[i], p) for i, p in enumerate(hour.pacer) if p is not None]
    assert sum(requests) > 2 * n  # the probe and a batch or two each
    assert max(hour.series.free[back - 30:back]) < n / 10
    limited = fleet.Collector(capacity=100.0, retry_after="30", ratelimit_policy='"drain";q=10;w=60')
    _, figures = fleet.after_outage(hour, fleet.Outage("back", "shed", limited))
    assert hour.active == 0
    assert 0.0 < figures["to_end"] <= figures["free"] <= 1.0 and 0.0 < figures["shedding"] <= 1.0


def test_heartbeat_offset_is_stable_inside_the_interval_and_uniform() -> None:
    assert heartbeat_offset("SH-0042", 60.0) == heartbeat_offset("SH-0042", 60.0)
    offsets = [heartbeat_offset(f"T{i:06d}", 60.0) for i in range(6000)]
    assert all(0.0 <= o < 60.0 for o in offsets)
    buckets = [0] * 60
    for o in offsets:
        buckets[int(o)] += 1
    assert max(buckets) < 2 * 100 and min(buckets) > 100 / 2  # no second holds a herd
    assert heartbeat_offset("x", 0.0) == 0.0
    beat = next_beat(1_800_000_000.0, 60.0, offsets[0])
    assert 1_800_000_000.0 < beat <= 1_800_000_060.0
    assert math.isclose((beat - offsets[0]) / 60.0, round((beat - offsets[0]) / 60.0))
