"""#18: clock steps under a running daemon. The agent's wall clock is stepped at the
process boundary (``tests/faults/clock/sitecustomize.py``; the monotonic and boot-time
clocks run on, as on a terminal):

- it boots with a dead RTC (the year 2000) while the collector is down, then NTP steps
  the clock to the right time: every report made meanwhile arrives (none dropped by the
  30-day age rule reading the wrong clock), those made before the step say
  ``clock_suspect: true``, at most one catch-up self-test runs, heartbeats go on without a
  stall;
- the clock then steps back by an hour: heartbeats go on without a stall, no self-test runs.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port, wait_until
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config

CLOCK = Path(__file__).resolve().parent / "clock"


def of(r: Received, kind: str) -> bool:
    return bool(r.json) and r.json.get("schema") == f"posagent.{kind}/1"


def committed(state: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{state / 'outbox.db'}?mode=ro", uri=True, timeout=5.0)
        try:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def largest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_a_dead_rtc_stepped_by_ntp_then_back_loses_nothing(tmp_path: Path) -> None:
    offset = tmp_path / "clock-offset"
    y2000 = dt.datetime(2000, 1, 1, 12, 0).timestamp()
    offset.write_text(f"{y2000 - time.time():.3f}\n")
    env = {"PYTHONPATH": os.pathsep.join([str(CLOCK), os.environ.get("PYTHONPATH", "")]),
           "POSAGENT_TEST_CLOCK_FILE": str(offset)}
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/heartbeat"
    cfg = daemon_config(tmp_path / "posagent.toml", "FAULT-CLOCK", url, system=False)
    state = tmp_path / "state"
    collector = Collector(port=port)
    with DaemonProc(["--config", str(cfg)], tmp_path, env=env) as d:
        wait_until(lambda: committed(state) >= 5 or d.proc.poll() is not None, 60.0, 0.1)
        assert committed(state) >= 5, d.stderr()
        offset.write_text("0\n")  # NTP steps the clock 26 years forward
        stepped = time.monotonic()
        collector.start()
        try:
            assert collector.wait_for(lambda rs: sum(of(r, "heartbeat") and "clock_suspect" not in r.json
                                                     for r in rs) >= 5, 60.0), d.stderr()
            offset.write_text("-3600\n")  # and back by an hour
            back = time.monotonic()
            assert collector.wait_for(lambda rs: sum(of(r, "heartbeat") and r.at > back for r in rs) >= 5,
                                      30.0), d.stderr()
            err = d.stderr()
        finally:
            collector.stop()
    msgs: dict[int, dict[str, Any]] = {r.json["seq"]: r.json for r in collector.received if r.json}
    seqs = sorted(msgs)
    assert seqs == list(range(1, seqs[-1] + 1)), "a report was lost"  # nothing dropped by the age rule
    assert all(m["agent"]["dropped"]["total"] == 0 for m in msgs.values())
    suspect = [m for m in msgs.values() if m.get("clock_suspect")]
    assert len(suspect) >= 5 and all(m["sent_at"].startswith("2000-") for m in suspect)
    assert sum(1 for m in msgs.values() if m["schema"] == "posagent.selftest/1") <= 1  # no self-test storm
    after = sorted(r.at for r in collector.received if of(r, "heartbeat") and r.at > stepped + 5.0)
    assert largest_gap(after) < 4.0, f"the heartbeat stalled {largest_gap(after):.1f} s after a clock step"
    assert "Traceback" not in err
    print(f"\nclock steps: {len(suspect)} reports made in 'the year 2000' delivered and marked, "
          f"{len(seqs)} in all, largest heartbeat gap after the steps {largest_gap(after):.1f} s")
