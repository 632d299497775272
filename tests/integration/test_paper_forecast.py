"""The paper forecast through the CLI, against the printer simulator on a real pty: after
test slips with ``roll_length_m`` set, ``paper_remaining_pct`` falls by the length the
printer printed; a new roll (paper end, then paper back) starts again at 100 %; with the
usage of the day, ``paper_days_left`` and PAPER_LOW_FORECAST come before near-end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from posagent.drivers.simulator import SimHandle
from tests.conftest import run_cli


def printer(url: str, roll_m: float, warn_days: float = 2.0) -> str:
    return (f'[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "{url}"\nshare = "owner"\n'
            f'[device.options]\nroll_length_m = {roll_m}\npaper_warn_days = {warn_days}\nslip_qr = false\n')


def receipt_status(cfg: Path) -> dict:
    proc = run_cli("status", "--config", str(cfg), "--json")
    return dict(json.loads(proc.stdout)["devices"]["receipt"])


def test_remaining_falls_by_what_was_printed_and_a_new_roll_resets(
        sim: SimHandle, write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n' + printer(sim.url, roll_m=2.0,
                                                                                  warn_days=0.0))
    before = receipt_status(cfg)
    assert before["paper_remaining_pct"] == 100.0 and before["paper_days_left"] is None  # nothing on record
    for _ in range(3):
        assert run_cli("selftest", "--config", str(cfg), "--only", "receipt").returncode == 0
    after = receipt_status(cfg)
    printed = sim.sim.printed_mm
    expected = 100.0 * (1 - printed / 2000.0)
    assert printed > 100 and after["paper_remaining_pct"] == pytest.approx(expected, abs=2.0)
    assert after["paper_days_left"] is not None  # today's usage is on record
    sim.sim.k["paper"] = "end"  # the roll ends ...
    assert receipt_status(cfg)["code"] == "PAPER_END"
    sim.sim.k["paper"] = "ok"  # ... and a new one goes in
    assert receipt_status(cfg)["paper_remaining_pct"] == 100.0


def test_the_forecast_warns_before_the_near_end_sensor(sim: SimHandle, write_config: Callable[..., Path],
                                                       tmp_path: Path) -> None:
    cfg = write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n' + printer(sim.url, roll_m=0.3))
    for _ in range(2):
        run_cli("selftest", "--config", str(cfg), "--only", "receipt")
    st = receipt_status(cfg)
    assert (st["status"], st["code"]) == ("warn", "PAPER_LOW_FORECAST"), st
    assert st["paper"] == "ok" and st["paper_days_left"] < 2
    sim.sim.k["paper"] = "near_end"
    st = receipt_status(cfg)
    assert st["code"] == "PAPER_NEAR_END" and st["paper_remaining_pct"] <= 10.0


def test_a_guest_has_no_forecast(sim: SimHandle, write_config: Callable[..., Path], tmp_path: Path) -> None:
    """As a guest the POS application's receipts are not counted: null, never a made-up 100 %."""
    cfg = write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
                       + printer(sim.url, roll_m=2.0).replace('share = "owner"', 'share = "guest"'))
    st = receipt_status(cfg)
    assert st["paper_remaining_pct"] is None and st["paper_days_left"] is None


def test_ribbon_days_left_from_the_lines_printed(sim: SimHandle, write_config: Callable[..., Path],
                                                 tmp_path: Path) -> None:
    """An impact printer: N lines printed today, a ribbon rated for 1000 lines -> the ribbon
    lasts (1000 - N) / N days at today's usage (the only day on record)."""
    cfg = write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
                       f'[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "{sim.url}"\nshare = "owner"\n'
                       '[device.options]\nimpact = true\nribbon_life_lines = 1000\n')
    before = receipt_status(cfg)
    assert before["ribbon"] == "ok" and before["ribbon_days_left"] is None  # no usage yet: unknown, not 0
    assert before["paper_remaining_pct"] is None  # an impact printer's paper is not forecast
    slips = 2
    for _ in range(slips):
        assert run_cli("selftest", "--config", str(cfg), "--only", "receipt").returncode == 0
    st = receipt_status(cfg)
    lines = st["counters"]["ribbon_lines"]
    assert lines == len(sim.sim.printed_lines) + slips * (1 + 4)  # the text lines, the cut line and the feed
    assert st["ribbon_days_left"] == round((1000 - lines) / lines, 1)
    assert st["measurements"]["ribbon_days_left"] == st["ribbon_days_left"]


def test_a_thermal_printer_has_no_ribbon_forecast(sim: SimHandle, write_config: Callable[..., Path],
                                                  tmp_path: Path) -> None:
    cfg = write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n' + printer(sim.url, roll_m=2.0))
    run_cli("selftest", "--config", str(cfg), "--only", "receipt")
    st = receipt_status(cfg)
    assert st["ribbon_days_left"] is None and "ribbon_days_left" not in st["measurements"]
