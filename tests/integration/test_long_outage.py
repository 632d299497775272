"""The bar: with the collector down for a long time the outbox stays within its bound and
reports what it dropped; when it comes back, the gaps in seq at the receiver are exactly
the drops the agent counted."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from posagent.config.loader import validate
from posagent.core.base import Level
from posagent.fleet import messages
from posagent.fleet.delivery import Delivery, DeliveryPolicy
from posagent.fleet.outbox import Outbox
from posagent.fleet.service import status_round
from posagent.fleet.upstream import RetryPolicy, Upstream
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import report_json
from posagent.selftest.runner import Runner
from tests.conftest import free_port
from tests.integration.collector import Collector
from tests.integration.daemon_proc import DaemonProc, NotifyListener, daemon_config

DEVICES = [
    {"name": "receipt", "driver": "escpos", "url": "sim://escpos"},
    {"name": "acquirer", "driver": "host", "url": "sim://host"},
    {"name": "system", "driver": "system", "options": {"disk_warn_pct": 0.5, "disk_fail_pct": 0.1}},
]


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def test_three_day_outage_stays_within_the_bound_and_the_gaps_are_the_counted_drops(tmp_path: Path) -> None:
    """Three days of 60 s heartbeats (simulated clock) plus a daily self-test, no delivery."""
    bound = 512 * 1024
    config = validate({"agent": {"terminal_id": "SH-0042", "state_dir": str(tmp_path), "check_timeout": "3s"},
                       "device": DEVICES}, str(tmp_path / "posagent.toml"))
    with DeviceSet(config) as devices:
        runner = Runner(devices)
        results, system = status_round(runner, config)
        report = report_json(runner.selftest(Level.INTERNAL))
    clock = Clock()
    box = Outbox(str(tmp_path), max_bytes=bound, max_age=2 * 86400, clock=clock,
                 boot_clock=lambda: ("boot", clock.t))  # a three-day outage, seen by both clocks
    selftests: list[int] = []
    worst_bytes = 0
    for minute in range(3 * 1440):
        clock.t += 60
        if minute % 1440 == 180:  # 03:00 each day
            selftests.append(box.commit("selftest", messages.selftest(config, report, "scheduled", ""))["seq"])
        last = box.commit("heartbeat", messages.heartbeat(config, results, system))
        worst_bytes = max(worst_bytes, box.stats().backlog_bytes)
    stats = box.stats()
    assert worst_bytes <= bound
    assert stats.dropped["heartbeat"] > 3000
    assert stats.dropped["selftest"] == 1  # day 1's, older than spool_max_age; never for space
    assert set(selftests[1:]) <= set(box.pending_seqs())  # kept while heartbeats go
    assert last["agent"]["dropped"]["heartbeat"] >= stats.dropped["heartbeat"] - 1  # reported in the message
    files = {name: os.path.getsize(tmp_path / name) for name in ("outbox.db", "outbox.db-wal")
             if (tmp_path / name).exists()}
    assert files["outbox.db"] <= 2 * bound + 256 * 1024, files
    assert files.get("outbox.db-wal", 0) <= 2 * 2**20, files

    # the collector comes back: everything left arrives, newest heartbeat first
    with Collector() as c:
        up = Upstream(config.upstream.__class__(url=c.url, allow_insecure_http=True), policy=RetryPolicy(), env={})
        d = Delivery(box, up, messages.AgentState(started_at=dt.datetime.now().astimezone()),
                     policy=DeliveryPolicy(rate=0))
        for _ in range(stats.backlog):
            d.step()
        assert box.stats().backlog == 0
        seqs = [r.json["seq"] for r in c.received]
        assert seqs[0] == last["seq"]
        missing = set(range(1, box.stats().seq + 1)) - set(seqs)
        assert len(missing) == stats.dropped_total  # a gap is a counted drop, nothing else
    box.close()


@pytest.mark.slow
def test_daemon_with_the_collector_down_keeps_its_bound_and_reports_drops(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-OUTAGE", f"http://127.0.0.1:{port}/api/v1/heartbeat",
                        upstream=["spool_max_mb = 0.01"])
    notify = NotifyListener(tmp_path / "notify.sock")
    d = DaemonProc(["--config", str(cfg)], tmp_path, notify=notify)
    collector = Collector(port=port)
    try:
        # down: the STATUS line says what was dropped
        def dropped_three(lines: list[str]) -> bool:
            return any(int(m.group(1)) >= 3 for x in lines if (m := re.search(r", (\d+) dropped", x)))

        assert notify.wait_for(dropped_three, 60.0), d.stderr()
        db = sqlite3.connect(state / "outbox.db", timeout=10.0)
        backlog_bytes = db.execute("SELECT sum(bytes) FROM outbox").fetchone()[0]
        db.close()
        assert backlog_bytes <= 0.01 * 2**20
        collector.start()

        def reported_drops(received: list[Any]) -> bool:
            return any(r.status == 200 and r.json["agent"]["dropped"]["heartbeat"] >= 3 for r in received)

        assert collector.wait_for(reported_drops, 60.0), d.stderr()
        d.signal(signal.SIGTERM)
        assert d.wait(30.0) == 0
    finally:
        d.kill()
        collector.stop()
        notify.close()
    err = d.stderr()
    assert err.count("outbox over its bound") == 1  # logged once, not for every drop
    # (whether a send gave up while it was down depends on the retry timing; logged once at most)
    assert err.count("upstream unreachable") <= 1
