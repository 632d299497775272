"""#18: a self-test killed midway is recorded as interrupted and reported at the next start,
and is not run again that day (a test that crashes the agent must not crash it at every
restart). A real daemon, SIGKILL while a slow simulated printer is being tested."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.conftest import wait_until
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config

SLOW_PRINTER = """
[[device]]
name = "receipt"
driver = "escpos"
url = "sim://escpos?latency_ms=1500"
"""


def of(r: Received, kind: str) -> bool:
    return bool(r.json) and r.json.get("schema") == f"posagent.{kind}/1"


def test_a_selftest_killed_midway_is_reported_once_and_not_run_again(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "schedule.json").write_text(json.dumps({"first_seen": "2024-01-01T00:00:00+00:00",
                                                     "last_selftest_run": "2024-01-02T03:10:00+00:00"}))
    marker = state / "selftest.running"
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "FAULT-KILLED", c.url, system=False,
                            schedule=['jitter = "1s"'], devices=SLOW_PRINTER)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            wait_until(lambda: marker.exists() or d.proc.poll() is not None, 60.0)
            assert marker.exists(), d.stderr()
            d.proc.kill()  # a crash or a power cut in the middle of the self-test
            d.wait(10.0)
        assert not any(of(r, "selftest") for r in c.received)
        n = len(c.received)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: any(of(r, "event") and r.json["current"]["code"] == "SELFTEST_INTERRUPTED"
                                             for r in rs[n:]), 30.0), d.stderr()
            # several heartbeats later still no self-test: it is not run again today
            assert c.wait_for(lambda rs: sum(of(r, "heartbeat") for r in rs[n:]) >= 6, 30.0), d.stderr()
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
            err = d.stderr()
    after = c.received[n:]
    assert not any(of(r, "selftest") for r in after)
    events = [r.json for r in after if of(r, "event") and r.json["current"]["code"] == "SELFTEST_INTERRUPTED"]
    assert len(events) == 1 and events[0]["current"]["status"] == "warn"
    assert not marker.exists() and "Traceback" not in err
