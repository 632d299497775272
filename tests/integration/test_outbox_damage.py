"""#18's bar with real processes: 4 KB of random bytes into outbox.db, a restart, and the
collector receives heartbeats again within 10 s, with seq above any seen before, and an
event saying the outbox was damaged and replaced."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config
from tests.integration.test_json_schemas import validator


def of(r: Received, kind: str) -> bool:
    return bool(r.json) and r.json.get("schema") == f"posagent.{kind}/1"


@pytest.mark.parametrize("offset", [0, 4096])
def test_a_damaged_outbox_is_replaced_and_seq_goes_on(tmp_path: Path, offset: int) -> None:
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "SIM-DAMAGE", c.url, system=False)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: sum(of(r, "heartbeat") for r in rs) >= 3, 30.0), d.stderr()
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
        highest = max(r.json["seq"] for r in c.received if r.json)
        db = tmp_path / "state" / "outbox.db"
        with open(db, "r+b") as fh:
            fh.seek(offset)
            fh.write(os.urandom(4096))  # what a power cut on cheap flash can do
        n = len(c.received)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            t0 = time.monotonic()
            assert c.wait_for(lambda rs: any(of(r, "heartbeat") and r.json["seq"] > highest for r in rs[n:]), 10.0), \
                d.stderr()
            took = time.monotonic() - t0
            recovered = c.wait_for(lambda rs: any(of(r, "event") and r.json["current"]["code"] ==
                                                  "STATE_STORE_RECOVERED" for r in rs[n:]), 10.0)
            err = d.stderr()
    after = [r.json for r in c.received[n:] if r.json]
    assert all(m["seq"] > highest for m in after), [m["seq"] for m in after]
    first = min(m["seq"] for m in after)
    print(f"\noffset {offset}: heartbeats again {took:.1f} s after the restart, seq from {first} "
          f"(before: up to {highest}); recovery event: {recovered}")
    if "the outbox was damaged" in err:  # quick_check saw it (garbage over free space is harmless)
        assert recovered and list((tmp_path / "state").glob("outbox.db.corrupt-*"))
        # ... and `posagent status` tells the technician, in JSON and in the table
        out = run_cli("status", "--json", "--config", str(cfg))
        doc = json.loads(out.stdout)
        assert not list(validator("status").iter_errors(doc))
        assert [r["store"] for r in doc["state_recovered"]] == ["outbox"]
        assert doc["state_recovered"][0]["kept_as"].startswith("outbox.db.corrupt-")
        table = run_cli("status", "--config", str(cfg)).stdout
        assert "outbox store was damaged and replaced" in table
    else:
        assert offset != 0  # a damaged header is always seen
