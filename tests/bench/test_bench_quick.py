"""The benchmark command runs end to end (quick mode) and prints its table.

It reports figures; it never fails on timing. What it asserts is that every section ran
against real simulators and produced a FLOOR-relative row.
"""

from __future__ import annotations

import pytest

from tests.bench.run import main

pytestmark = pytest.mark.bench


def test_benchmark_quick_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--no-clean-install", "--daemon-seconds", "5"]) == 0
    out = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + out)
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    for needle in ("| printer status DLE EOT 1 | FLOOR |", "EscposDriver.query(1)", "MegatecDriver Q1 exchange",
                   "CardReaderDriver echo", "python-escpos: paper_status()", "pyserial naive: read_until",
                   "wire limit at 9600 / 115200", "frame codec", "posagent --version",
                   "selftest --sim --level external", "daemon, 5 simulated devices",
                   "| printer status as a guest, DLE EOT 1-4 | FLOOR |", "guest Link exchange",
                   "share = guest", "share = owner", "CPU as guest / as owner"):
        assert any(needle in row for row in rows), needle
    # Every exchange row carries a ratio to the FLOOR measured in the same run.
    for row in rows:
        if " FLOOR " not in row and "x FLOOR" not in row and "| process |" not in row and "frame codec" not in row \
                and "daemon" not in row and "wire limit" not in row and "---" not in row:
            assert row.rstrip(" |").split("|")[-1].strip().replace(",", "").replace(".", "").isdigit(), row
