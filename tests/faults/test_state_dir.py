"""#18's bars for a failing state dir, with a real daemon and a real collector:

- a full disk (the state dir on a 512 KB tmpfs, filled to ENOSPC): the collector keeps
  receiving live heartbeats (at least one every 3 s at a 1 s interval), marked as kept in
  memory, and the system device shows DISK_FULL; after space is freed the outbox file is
  used again and the seq numbers go on without a gap that is not counted as dropped;
- a read-only state dir (a remounted filesystem) from the start: the daemon stays up and
  heartbeats arrive; made writable again, the outbox file is used again.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.faults.conftest import fill, remount
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config


def heartbeats(rs: list[Received]) -> list[dict[str, Any]]:
    return [r.json for r in rs if r.json and r.json.get("schema") == "posagent.heartbeat/1"]


def in_memory(m: dict[str, Any]) -> bool:
    return m["agent"].get("outbox") == "unavailable"


def gaps_counted(c: Collector) -> None:
    """Every seq the collector never saw is counted as dropped by the agent."""
    msgs = [r.json for r in c.received if r.json]
    seqs = {m["seq"] for m in msgs}
    missing = set(range(min(seqs), max(seqs) + 1)) - seqs
    last = max(heartbeats(c.received), key=lambda m: m["seq"])
    assert len(missing) <= last["agent"]["dropped"]["total"], (sorted(missing), last["agent"]["dropped"])


def test_a_full_disk_keeps_heartbeats_flowing_and_the_outbox_comes_back(
        tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    state = tmpfs("state", "512k")
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "FAULT-FULL", c.url)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: len(heartbeats(rs)) >= 3, 30.0), d.stderr()
            ballast = fill(state)
            n = len(c.received)
            t0 = time.monotonic()
            assert c.wait_for(lambda rs: sum(in_memory(m) for m in heartbeats(rs[n:])) >= 8, 30.0), d.stderr()
            window = [m for m in heartbeats(c.received[n:]) if in_memory(m)]
            times = [r.at for r in c.received[n:] if r.json and r.json in window]
            gap = max(b - a for a, b in itertools.pairwise(times))
            assert gap <= 3.0, f"a {gap:.1f} s gap between heartbeats while the disk was full"
            assert any(m["devices"]["system"]["code"] == "DISK_FULL" for m in window), \
                [m["devices"]["system"]["code"] for m in window]
            assert {m["agent"]["outbox_reason"] for m in window} == {"disk full"}
            ballast.unlink()
            n2 = len(c.received)
            assert c.wait_for(lambda rs: any(not in_memory(m) for m in heartbeats(rs[n2:])), 30.0), d.stderr()
            back = time.monotonic() - t0
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
            err = d.stderr()
    assert "Traceback" not in err
    assert "reports kept in memory (disk full)" in err and "state dir usable again" in err
    gaps_counted(c)
    print(f"\nfull disk: {len(window)} heartbeats from memory, largest gap {gap:.1f} s; "
          f"outbox file in use again {back:.1f} s after the disk filled")


def test_a_read_only_state_dir_does_not_stop_the_daemon(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    state = tmpfs("state", "4m")
    remount(state, "ro")
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "FAULT-RO", c.url)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: len(heartbeats(rs)) >= 3, 30.0), d.stderr()
            assert d.proc.poll() is None
            first = heartbeats(c.received)
            assert all(in_memory(m) and m["agent"]["outbox_reason"] == "state dir read-only" for m in first), \
                [m["agent"].get("outbox_reason") for m in first]
            remount(state, "rw")
            n = len(c.received)
            assert c.wait_for(lambda rs: any(not in_memory(m) for m in heartbeats(rs[n:])), 30.0), d.stderr()
            assert (state / "outbox.db").exists()
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
            err = d.stderr()
    assert "Traceback" not in err
    gaps_counted(c)
