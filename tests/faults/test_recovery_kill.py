"""#18: SIGKILL during recovery. An outbox damaged by a power cut is rebuilt at start; the
agent is killed the moment the rebuild shows (its ``outbox.db.new`` or the damaged file
moved aside), three times over, then started for good with the collector up: every message
that could be read from the damaged file arrives, and no seq is reused."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from posagent.fleet.outbox_recover import salvage
from tests.conftest import free_port, wait_until
from tests.integration.collector import Collector
from tests.integration.daemon_proc import DaemonProc, daemon_config


def pending(state: Path) -> list[int]:
    db = sqlite3.connect(f"file:{state / 'outbox.db'}?mode=ro", uri=True, timeout=5.0)
    try:
        return [int(r[0]) for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        db.close()


def test_a_kill_during_recovery_loses_nothing_salvaged(tmp_path: Path) -> None:
    port = free_port()
    cfg = daemon_config(tmp_path / "posagent.toml", "FAULT-RECOVERY", f"http://127.0.0.1:{port}/api/v1/heartbeat",
                        system=False)
    state = tmp_path / "state"
    with DaemonProc(["--config", str(cfg)], tmp_path) as d:  # the collector is down: the outbox fills
        wait_until(lambda: d.proc.poll() is not None or ((state / "outbox.db").exists() and len(pending(state)) >= 30),
                   60.0, 0.1)
        d.signal(signal.SIGTERM)
        assert d.wait(30.0) == 0, d.stderr()
    before = pending(state)
    assert len(before) >= 30
    db = state / "outbox.db"
    with open(db, "r+b") as fh:  # the last page: the newest messages, as a power cut leaves it
        fh.seek(max(4096, db.stat().st_size - 4096))
        fh.write(os.urandom(4096))
    readable = [int(r[0]) for r in salvage(str(db))]
    assert readable, "nothing readable: the test needs a partly damaged file"
    caught = []
    for _ in range(3):
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            # a tight poll: the rebuild shows for a few milliseconds
            wait_until(lambda: d.proc.poll() is not None or (state / "outbox.db.new").exists()
                       or bool(list(state.glob("outbox.db.corrupt-*"))), 30.0, 0.001)
            d.proc.kill()
            d.wait(10.0)
            caught.append((state / "outbox.db.new").exists())
    with Collector(port=port) as c, DaemonProc(["--config", str(cfg)], tmp_path) as d:
        assert c.wait_for(lambda rs: set(readable) <= {r.json["seq"] for r in rs if r.json}, 60.0), d.stderr()
        assert c.wait_for(lambda rs: any(r.json and r.json["seq"] > max(before) for r in rs), 30.0), d.stderr()
        d.signal(signal.SIGTERM)
        assert d.wait(30.0) == 0
        err = d.stderr()
    seen = [r.json["seq"] for r in c.received if r.json]
    assert len(set(seen)) == len({(r.json["seq"], r.json["message_id"]) for r in c.received if r.json}), \
        "a seq was reused for another message"
    assert "Traceback" not in err
    print(f"\nrecovery killed 3 times (mid-rebuild {sum(caught)} of them): {len(readable)} of {len(before)} "
          f"messages readable from the damaged file, all delivered")
