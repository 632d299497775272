"""The daemon at steady state: five simulated devices plus the box, a 1 s heartbeat,
delivering to a real HTTP collector on 127.0.0.1; CPU % of one core and RSS, with the
printer and card reader shared as guests (the default) and as owners."""

from __future__ import annotations

import os

from tests.bench.harness import SimProcess
from tests.bench.processes import DaemonFigures, daemon_steady_state
from tests.integration.collector import Collector

CONFIG = """
[agent]
terminal_id = "BENCH-0001"
state_dir = "{state}"
heartbeat_interval = "1s"

[schedule]
selftest_at = "{selftest_at}"
jitter = "1s"
startup_jitter = "0s"

[upstream]
url = "{url}"
allow_insecure_http = true

[[device]]
name = "receipt"
driver = "escpos"
url = "{escpos}"
share = "{share}"

[[device]]
name = "ups"
driver = "megatec"
url = "{megatec}"

[[device]]
name = "card-reader"
driver = "card-reader"
url = "{card_reader}"
share = "{share}"

[[device]]
name = "keypad"
driver = "evdev-keypad"
url = "sim://keypad"

[[device]]
name = "acquirer"
driver = "host"
url = "{host}"

[[device]]
name = "system"
driver = "system"
[device.options]
disk_warn_pct = 1.0
disk_fail_pct = 0.1
"""


def run_daemon_bench(seconds: float, state_dir: str, share: str = "guest") -> DaemonFigures:
    """``share``: how the printer and the card reader are shared (guest, the default, opens
    them for every exchange; owner keeps them open, as posagent did before sharing)."""
    import datetime as dt

    state = os.path.join(state_dir, f"daemon-{share}")
    os.makedirs(state, exist_ok=True)
    # Keep the daily self-test out of the measured window: schedule it 12 hours away.
    later = (dt.datetime.now() + dt.timedelta(hours=12)).strftime("%H:%M")
    # The simulated devices run in their own process, as hardware would be outside the
    # agent; only the keypad's event pipe cannot cross processes and stays in-process.
    sims = ("sim://escpos", "sim://megatec", "sim://card-reader", "sim://host")
    with Collector() as collector, SimProcess(*sims) as sim:
        u = sim.urls
        path = os.path.join(state_dir, f"daemon-{share}.toml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(CONFIG.format(state=state, url=collector.url, selftest_at=later, escpos=u["sim://escpos"],
                                   megatec=u["sim://megatec"], card_reader=u["sim://card-reader"],
                                   host=u["sim://host"], share=share))
        figures = daemon_steady_state(path, seconds)
        figures.heartbeats = sum(1 for r in collector.delivered()
                                 if str(r.get("schema", "")).startswith("posagent.heartbeat"))
    return figures
