"""``--format nagios``: the Monitoring Plugins output (selftest/nagios.py)."""

from __future__ import annotations

import re

from posagent.core.base import Result
from posagent.selftest.nagios import perfdata, render
from tests.conftest import run_cli

PAPER_END = Result.fail("PAPER_END", "paper end | roll empty", measurements={"status_ms": 1.25})
ON_BATTERY = Result.warn("UPS_ON_BATTERY", "on battery", fields={"battery_charge_pct": 81, "on_battery": True},
                         measurements={"load_pct": 23, "battery_voltage_v": 25.1})
SILENT = Result.unknown("PRINTER_NO_RESPONSE", "no answer")
OK = Result.ok("HOST_OK", "reachable", fields={"latency_ms": 0.35}, measurements={"flag": True})

#: 'label'=value[UOM];[warn];[crit];[min];[max] (Monitoring Plugins guidelines)
PERF = re.compile(r"^('[^'=]+'|[^' =]+)=-?[\d.]+(e[+-]?\d+)?(%|ms|s|B|MB|c)?;;;$")


def test_worst_first_critical_over_unknown_with_perfdata_and_long_output() -> None:
    text, code = render([("acquirer", OK), ("ups", ON_BATTERY), ("card", SILENT), ("receipt", PAPER_END)])
    first, *long = text.splitlines()
    assert code == 2
    head, perf = first.split(" | ")
    assert head == ("POSAGENT CRITICAL - receipt: paper end / roll empty; card: no answer; ups: on battery")
    items = perf.split()
    assert all(PERF.match(p) for p in items), items
    assert "ups.battery_charge_pct=81%;;;" in items and "acquirer.latency_ms=0.35ms;;;" in items
    assert "receipt.status_ms=1.25ms;;;" in items and not any("flag" in p for p in items)
    assert long == ["acquirer: ok HOST_OK reachable", "ups: warn UPS_ON_BATTERY on battery",
                    "card: unknown PRINTER_NO_RESPONSE no answer", "receipt: fail PAPER_END paper end / roll empty"]


def test_all_ok_and_nothing_configured() -> None:
    text, code = render([("acquirer", OK)])
    assert text.startswith("POSAGENT OK - 1 devices ok | ") and code == 0
    text, code = render([])
    assert text == "POSAGENT UNKNOWN - no devices configured\n" and code == 3


def test_labels_with_odd_characters_are_quoted() -> None:
    assert perfdata("front desk", OK) == ["'front desk.latency_ms'=0.35ms;;;"]


def test_the_simulated_terminal_from_the_cli() -> None:
    for cmd in (("status", "--sim"), ("selftest", "--sim", "--level", "internal")):
        proc = run_cli(*cmd, "--format", "nagios")
        first = proc.stdout.splitlines()[0]
        assert proc.returncode == 0, proc.stderr
        assert first.startswith("POSAGENT OK - ") and " | " in first
        assert all(PERF.match(p) for p in first.split(" | ", 1)[1].split())
