"""Power-cycle hygiene from a real daemon: earlier boots are faked by writing power.json
into the state dir (the kernel's boot id of this machine is the current boot)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
from jsonschema import Draft202012Validator

from posagent.fleet.messages import load_schema
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config


def heartbeat(r: Received) -> bool:
    return bool(r.json) and r.status == 200 and r.json.get("schema") == "posagent.heartbeat/1"


def test_boots_unclean_stops_and_a_fast_power_on_are_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    booted = psutil.boot_time()  # this boot's start, as the daemon computes it
    earlier = [  # four earlier boots today; the last went off 20 s before this one started
        {"boot_id": f"fake-{i}", "booted_at": booted - (4 - i) * 3600, "last_alive": booted - (4 - i) * 3600 + 600,
         "clean": i != 2} for i in range(4)]
    earlier[-1]["last_alive"] = booted - 20
    (state / "power.json").write_text(json.dumps({"schema": 1, "boots": earlier}))
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "SIM-POWER", c.url)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: any(heartbeat(r) for r in rs), 30.0), d.stderr()
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
    hb = next(r.json for r in c.received if heartbeat(r))
    assert Draft202012Validator(load_schema("heartbeat")).is_valid(hb)
    system = hb["system"]
    recent = sum(1 for b in earlier if b["booted_at"] >= time.time() - 86400) + 1
    assert (system["boots_24h"], system["unclean_shutdowns_24h"]) == (recent, 1 + (earlier[3]["clean"] is False))
    assert 0 <= system["last_off_s"] <= 21
    box = hb["devices"]["system"]
    assert box["status"] == "warn" and box["code"] in ("POWER_CYCLED_OFTEN", "POWER_RESTORED_TOO_FAST")
    assert "switched on again" in box["message"] and (recent <= 3 or "boots in 24 h" in box["message"])
    boots = json.loads((state / "power.json").read_text())["boots"]
    assert boots[-1]["clean"] is True and boots[-1]["boot_id"] not in {b["boot_id"] for b in earlier}
