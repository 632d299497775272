"""Fleet-safe timing from real processes: the heartbeat phase is a function of the terminal
id (kept across restarts and reloads), and events of a fleet-wide fault are spread."""

from __future__ import annotations

import random
import signal
import socket
import threading
import time
from pathlib import Path

from posagent.config.loader import load_config
from posagent.daemon.loop import Daemon
from posagent.fleet.phase import heartbeat_offset
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config, door_device
from tests.integration.test_daemon_timing import drive, kind

INTERVAL = 2.0


def phase_error(r: Received, wall_minus_mono: float, offset: float) -> float:
    """How far after its phase instant the heartbeat arrived, in seconds (0 <= x < INTERVAL)."""
    return (r.at + wall_minus_mono - offset) % INTERVAL


def test_restarts_and_reloads_keep_the_heartbeat_phase(tmp_path: Path) -> None:
    terminal = "SIM-PHASE-7"
    offset = heartbeat_offset(terminal, INTERVAL)
    wall_minus_mono = time.time() - time.monotonic()
    errors: list[float] = []
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", terminal, c.url, heartbeat_interval=f"{INTERVAL:g}s",
                            system=False)
        for run in range(5):  # five starts of the agent
            with DaemonProc(["--config", str(cfg)], tmp_path) as d:
                seen = len(c.received)
                assert c.wait_for(lambda rs, s=seen: sum(kind(r, "heartbeat") for r in rs[s:]) >= 1, 30.0), d.stderr()
                if run == 0:  # and three reloads in the first run, once it handles signals
                    for _ in range(3):
                        n = len(c.received)
                        d.signal(signal.SIGHUP)
                        assert c.wait_for(lambda rs, n=n: sum(kind(r, "heartbeat") for r in rs[n:]) >= 2, 30.0), \
                            d.stderr()
                assert c.wait_for(lambda rs, s=seen: sum(kind(r, "heartbeat") for r in rs[s:]) >= 2, 30.0), d.stderr()
                d.signal(signal.SIGTERM)
                assert d.wait(90.0) == 0  # (how fast it stops is test_daemon_signals' business)
        errors = [phase_error(r, wall_minus_mono, offset) for r in c.received if kind(r, "heartbeat")]
    late = sorted(errors)
    print(f"\n{len(late)} heartbeats over 5 starts and 3 reloads: arrival after the phase instant "
          f"median {late[len(late) // 2] * 1000:.0f} ms, max {late[-1] * 1000:.0f} ms")
    assert len(late) >= 10
    assert late[-1] < 0.5, late  # every heartbeat within 0.5 s of its terminal's instant


def test_a_fleet_wide_fault_is_reported_after_a_random_part_of_event_spread(
        tmp_path: Path) -> None:
    seed, spread = 0, 3.0
    delay = random.Random(seed).uniform(0.0, spread)  # the daemon's first draw: the spread of this event
    assert delay >= 1.5  # picked so that "at once" and "spread" differ clearly
    door = socket.socket()
    door.bind(("127.0.0.1", 0))
    door.listen(16)
    port = door.getsockname()[1]
    closed_at: list[float] = []
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "SIM-SPREAD", c.url, heartbeat_interval="1h", system=False,
                            schedule=['status_poll = "1s"', 'event_dedupe = "1s"', f'event_spread = "{spread:g}s"'],
                            devices=door_device(port))
        d = Daemon(load_config(str(cfg)), reload=lambda: load_config(str(cfg)), rng=random.Random(seed),
                   booted=lambda state_dir: False)

        def script() -> None:
            tick = threading.Event()
            for _ in range(600):  # the first status round (the baseline) is in: at most 30 s
                if "door" in d.changes.latest():
                    break
                tick.wait(0.05)
            assert "door" in d.changes.latest()
            door.close()  # the "acquirer" goes down for everyone
            closed_at.append(time.monotonic())
            assert c.wait_for(lambda rs: any(kind(r, "event") for r in rs), 30.0)

        drive(d, script)
    event = next(r for r in c.received if kind(r, "event"))
    assert event.json["device"] == "door" and event.json["current"]["code"] == "HOST_UNREACHABLE"
    waited = event.at - closed_at[0]
    print(f"\nthe event went {waited:.2f} s after the fault (spread draw {delay:.2f} s, polls every 1 s)")
    assert waited >= delay - 0.1
