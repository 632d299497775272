"""``posagent sim``: simulators in their own process, reachable by the URLs it prints."""

from __future__ import annotations

import json
import signal

from tests.bench.harness import SimProcess
from tests.conftest import run_cli


def test_sim_serves_printed_urls_and_stops_on_sigterm(write_config) -> None:
    sim = SimProcess("sim://escpos?paper=near_end", "sim://megatec?on_battery=true")
    try:
        printer, ups = sim.urls["sim://escpos?paper=near_end"], sim.urls["sim://megatec?on_battery=true"]
        assert printer.startswith("serial:///dev/") and ups.startswith("serial:///dev/")
        cfg = write_config(f'[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "{printer}"\n'
                           f'[[device]]\nname = "ups"\ndriver = "megatec"\nurl = "{ups}"\n')
        proc = run_cli("status", "--json", "--config", str(cfg))
        devices = json.loads(proc.stdout)["devices"]
        assert (devices["receipt"]["code"], devices["receipt"]["paper"]) == ("PAPER_NEAR_END", "near_end")
        assert devices["ups"]["code"] == "UPS_ON_BATTERY" and devices["ups"]["on_battery"] is True
        assert proc.returncode == 1  # both warn
    finally:
        sim.proc.send_signal(signal.SIGTERM)
        assert sim.proc.wait(10) == 0
        sim.close()


def test_sim_default_starts_every_family() -> None:
    from posagent.drivers.simulator import simulator_families

    sim = SimProcess(*(f"sim://{f}" for f in simulator_families() if f != "keypad"))
    try:
        assert len(sim.urls) == len(simulator_families()) - 1
    finally:
        sim.close()


def test_sim_bad_url_is_usage_error() -> None:
    for url in ("sim://toaster", "serial:///dev/ttyS0", "sim://escpos?paper=soggy"):
        proc = run_cli("sim", url)
        assert proc.returncode == 64, (url, proc.stderr)
        assert "Traceback" not in proc.stderr
