"""The bar: SIGKILL the daemon at random moments (collector down, then up), bring both
back, and every committed report arrives at least once, dedupable by message_id."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.collector import Collector
from tests.integration.daemon_proc import DaemonProc, NotifyListener, daemon_config

KILLS_DOWN = 6  # SIGKILLs while the collector is down
KILLS_UP = 4  # and while it is up (a report may be delivered but not yet acked: a duplicate)


def committed(state: Path) -> tuple[int, int]:
    """(last seq allocated, reports dropped) as the outbox on disk says."""
    db = sqlite3.connect(state / "outbox.db", timeout=10.0)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    dropped = sum(int(v) for k, v in meta.items() if k.startswith("dropped_"))
    return int(meta.get("seq", 0)), dropped


def run_and_kill(args: list[str], workdir: Path, rng: random.Random) -> None:
    with DaemonProc(args, workdir) as d:
        moment = rng.uniform(0.3, 3.0)
        # The daemon must still be running at the chosen moment: a wait with that deadline.
        with pytest.raises(subprocess.TimeoutExpired):
            d.proc.wait(moment)
        d.signal(signal.SIGKILL)
        assert d.wait(10.0) == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_committed_report(tmp_path: Path) -> None:
    seed = int(os.environ.get("POSAGENT_TEST_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    collector = Collector(port=free_port())  # down: nothing listens on the port yet
    state = tmp_path / "state"
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-KILL", collector.url, upstream=["spool_max_mb = 64"])
    args = ["--config", str(cfg)]

    for _ in range(KILLS_DOWN):
        run_and_kill(args, tmp_path, rng)
    seq_down, _ = committed(state)
    assert seq_down >= KILLS_DOWN, f"seed {seed}: too few reports committed to test anything"
    collector.start()
    try:
        for _ in range(KILLS_UP):
            run_and_kill(args, tmp_path, rng)
        # both back for good: the daemon delivers the backlog, then stops cleanly
        with NotifyListener(tmp_path / "notify.sock") as notify, DaemonProc(args, tmp_path, notify=notify) as d:
            assert notify.wait_for(lambda lines: "READY=1" in lines, 30.0), d.stderr()
            target = committed(state)[0]
            assert collector.wait_for(lambda rs: {r.json["seq"] for r in rs if r.status == 200}
                                      >= set(range(1, target + 1)), 120.0), f"seed {seed}\n{d.stderr()}"
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0, d.stderr()
    finally:
        collector.stop()

    last_seq, dropped = committed(state)
    assert dropped == 0
    delivered = collector.delivered()
    by_seq: dict[int, set[str]] = {}
    for m in delivered:
        by_seq.setdefault(m["seq"], set()).add(m["message_id"])
    # every committed report arrived (the last run's final heartbeats may still be in the outbox)
    missing = set(range(1, seq_down + 1)) - set(by_seq)
    assert not missing, f"seed {seed}: lost {sorted(missing)}"
    assert set(range(1, target + 1)) <= set(by_seq), f"seed {seed}"
    # a duplicate is the same report again: same seq, same message_id (the receiver dedupes)
    assert all(len(ids) == 1 for ids in by_seq.values()), f"seed {seed}"
    assert len({i for ids in by_seq.values() for i in ids}) == len(by_seq)
    assert last_seq >= target
    duplicates = len(delivered) - len(by_seq)
    print(f"seed {seed}: {last_seq} reports committed over {KILLS_DOWN + KILLS_UP} SIGKILLs, "
          f"all delivered, {duplicates} duplicate deliveries (same message_id)")
