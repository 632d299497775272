"""Benchmark: one ESC/POS status exchange (DLE EOT n) on a healthy simulated printer.

The simulator runs in its own process (``posagent sim``) on a pty. Reported, never
asserted on timing: the median and p99 of ``EscposDriver.query(1)`` (flush, write,
one-byte read with a 1 s timeout, validation), of a full ``status()`` (DLE EOT 1-4 plus
the counters file), and of FLOOR, the bare os.write + poll + os.read of the same bytes.
The only assertions are that every reply was valid and nothing waited out its timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from posagent.config.model import DeviceConfig
from posagent.config.urls import parse_url
from posagent.drivers.base import DriverEnv
from posagent.drivers.escpos import EscposDriver, EscposOptions
from tests.bench.harness import SimProcess, Variant, floor_exchange, measure, median_us, open_raw, p99_us, ratio

pytestmark = pytest.mark.bench

ROUNDS = 6
PER_ROUND = 500  # 3000 queries per variant


def test_status_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimProcess("sim://escpos") as sim:
        driver = EscposDriver(DeviceConfig("receipt", "escpos", parse_url(sim.url), EscposOptions()),
                              DriverEnv(str(tmp_path), "BENCH"))
        fd = open_raw(sim.path)
        try:
            replies: set[int] = set()

            def query() -> None:
                replies.add(driver.query(1))

            floor = Variant("FLOOR os.write+poll+read", floor_exchange(fd, b"\x10\x04\x01", 1), PER_ROUND)
            one = Variant("EscposDriver.query(1)", query, PER_ROUND)
            full = Variant("EscposDriver.status() (4 queries)", driver.status, PER_ROUND // 5)
            measure([floor, one, full], ROUNDS)
        finally:
            driver.close()
            import os

            os.close(fd)
    assert replies == {0x12}
    assert p99_us(one) < 1_000_000  # nothing waited out the 1 s reply timeout
    with capsys.disabled():
        print(f"\nESC/POS status round trip over a pty, sim in its own process ({ROUNDS} rounds):")
        for v in (floor, one, full):
            n = sum(len(r) for r in v.samples)
            print(f"  {v.label:<36} n={n:<5} median {median_us(v):8.1f} us  p99 {p99_us(v):8.1f} us"
                  f"  x{ratio(v, floor):.2f} FLOOR")
