"""When the daemon does things: after a boot nothing reaches the upstream before the
startup jitter (backlog, heartbeat, catch-up self-test); a status change becomes an event
at the next status poll, not the next heartbeat; a wedged job stops the watchdog pings; a
reload whose device close hangs does not stop the main loop.

The subprocess test runs the real ``posagent run``. The others run ``Daemon.run()`` in the
test's main thread (so its signal handlers install), driven from a second thread, with a
real sd_notify socket, a real collector and the simulated devices; what they need that a
subprocess cannot give is a boot (injected: the test box booted long ago) and a wedge
(a status round or device close that does not return, released at the end).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.config.loader import load_config
from posagent.daemon import loop as daemon_mod
from posagent.daemon.loop import Daemon
from posagent.daemon.sdnotify import Notifier
from posagent.fleet.outbox import Outbox, Stats
from posagent.selftest.devices import DeviceSet
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, NotifyListener, daemon_config, door_device


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    n = NotifyListener(tmp_path / "notify.sock")
    yield n
    n.close()


def kind(r: Received, name: str) -> bool:
    return bool(r.json) and r.status == 200 and r.json.get("schema") == f"posagent.{name}/1"


def drive(d: Daemon, script: Callable[[], None]) -> None:
    """Run the daemon here (main thread) while ``script`` runs in a thread; then stop it."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            script()
        except BaseException as e:
            errors.append(e)
        finally:
            d.request_stop()

    th = threading.Thread(target=target, name="test-script", daemon=True)
    th.start()
    assert d.run() == 0
    th.join(30.0)
    assert not th.is_alive()
    if errors:
        raise errors[0]


def notifier(n: NotifyListener, watchdog_usec: int) -> Notifier:
    return Notifier({"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": str(watchdog_usec)})


def test_after_a_boot_the_backlog_heartbeat_and_catch_up_wait_the_startup_jitter(
        tmp_path: Path, collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    seed, jitter = 2, 3.0
    delay = random.Random(seed).uniform(0.0, jitter)  # the draw the daemon will make
    assert delay >= 2.0  # the seed is picked so that "at once" and "after the delay" differ clearly
    state = tmp_path / "state"
    backlog = Outbox(str(state), max_bytes=10**7, max_age=10**9)  # left over from before the power cut

    def old(kind: str) -> Callable[[int, Stats], dict[str, Any]]:
        return lambda seq, stats: {"schema": f"posagent.{kind}/1", "message_id": str(uuid.uuid4()), "seq": seq}

    for k in ("heartbeat", "event", "heartbeat"):
        backlog.commit(k, old(k))
    backlog.close()
    # the box was off at its self-test time: a catch-up is due at start
    (state / "schedule.json").write_text(json.dumps({"first_seen": "2024-01-01T00:00:00+00:00",
                                                     "last_selftest_run": "2024-01-02T03:10:00+00:00"}))
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-BOOT", collector.url, heartbeat_interval="3s",
                        startup_jitter=f"{jitter:g}s", schedule=['jitter = "1s"'])
    d = Daemon(load_config(str(cfg)), reload=lambda: load_config(str(cfg)), rng=random.Random(seed),
               booted=lambda state_dir: True)
    t0, wall0 = time.monotonic(), dt.datetime.now().astimezone()

    def script() -> None:
        assert collector.wait_for(lambda rs: sum(kind(r, "heartbeat") for r in rs) >= 3
                                  and any(kind(r, "selftest") for r in rs), 60.0)

    with caplog.at_level(logging.INFO, logger="posagent"):
        drive(d, script)
    first = min(r.at for r in collector.received)
    assert first >= t0 + delay, f"the first report went out {first - t0:.2f} s after start, before {delay:.2f} s"
    assert {r.json["seq"] for r in collector.received} >= {1, 2, 3}  # the backlog, after the delay
    selftest = next(r.json for r in collector.received if kind(r, "selftest"))
    assert selftest["trigger"] == "catch-up"
    started = dt.datetime.fromisoformat(selftest["started_at"])
    assert started >= wall0 + dt.timedelta(seconds=delay - 1.0)  # run after the same delay, not at start
    assert any("system just booted" in r.getMessage() for r in caplog.records)


def test_a_status_change_is_an_event_at_the_next_poll_not_the_next_heartbeat(tmp_path: Path,
                                                                           collector: Collector) -> None:
    door = socket.socket()
    door.bind(("127.0.0.1", 0))
    door.listen(16)
    port = door.getsockname()[1]
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-POLL", collector.url, heartbeat_interval="10s",
                        system=False, schedule=['event_dedupe = "1s"', 'status_poll = "1s"', 'event_spread = "0s"'],
                        devices=door_device(port))
    with door, DaemonProc(["--config", str(cfg)], tmp_path) as d:
        assert collector.wait_for(lambda rs: any(kind(r, "heartbeat") for r in rs), 30.0), d.stderr()
        first = next(r.at for r in collector.received if kind(r, "heartbeat"))
        door.close()  # ok -> fail, seconds before the next heartbeat
        closed = time.monotonic()
        assert collector.wait_for(lambda rs: any(kind(r, "event") for r in rs), 30.0), d.stderr()
        seen = next(r.at for r in collector.received if kind(r, "event"))
        d.signal(__import__("signal").SIGTERM)
        assert d.wait(30.0) == 0
    event = next(r.json for r in collector.received if kind(r, "event"))
    assert event["device"] == "door" and event["previous"]["status"] == "ok"
    assert event["current"]["status"] == "fail"
    assert seen - closed < 3.0  # the next poll (1 s), not the next heartbeat
    beats = sorted(r.at for r in collector.received if kind(r, "heartbeat"))
    assert all(b - a > 9.0 for a, b in itertools.pairwise(beats))  # heartbeats keep their interval
    assert first <= seen
    assert "status every 1 s" in d.stderr()


def test_a_wedged_job_stops_the_watchdog_pings(tmp_path: Path, collector: Collector, notify: NotifyListener,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    wedge, release = threading.Event(), threading.Event()
    real = daemon_mod.status_round

    def status_round(runner: Any, config: Any) -> Any:
        if wedge.is_set():
            release.wait(60.0)  # a call outside the Runner's cut that does not return
        return real(runner, config)

    monkeypatch.setattr(daemon_mod, "status_round", status_round)
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-WEDGE", collector.url, check_timeout="0.5s")
    d = Daemon(load_config(str(cfg)), reload=lambda: load_config(str(cfg)), notifier=notifier(notify, 400_000),
               booted=lambda state_dir: False)

    def pings() -> int:
        return notify.count("WATCHDOG=1")

    def script() -> None:
        assert collector.wait_for(lambda rs: sum(kind(r, "heartbeat") for r in rs) >= 2, 30.0)
        assert notify.wait_for(lambda lines: lines.count("WATCHDOG=1") >= 3, 10.0)
        wedge.set()
        t_wedge = time.monotonic()
        assert notify.wait_for(lambda lines: any(x.startswith("STATUS=wedged") for x in lines), 30.0)
        # the job was merely slow up to twice its bound (2 x (0.5 s + 2 s)): pinged meanwhile
        wedged_at = notify.times_of(next(x for x in notify.lines() if x.startswith("STATUS=wedged")))[0]
        assert wedged_at - t_wedge >= 4.5
        assert sum(1 for t in notify.times_of("WATCHDOG=1") if t_wedge < t < wedged_at) >= 3
        n = pings()
        # ten ping intervals: not one ping while the job is wedged
        assert not notify.wait_for(lambda lines: lines.count("WATCHDOG=1") > n, 2.0)
        wedge.clear()
        release.set()  # the call returns: alive again, pinging again
        assert notify.wait_for(lambda lines: lines.count("WATCHDOG=1") > n, 10.0)

    with caplog.at_level(logging.INFO, logger="posagent"):
        try:
            drive(d, script)
        finally:
            release.set()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("more than twice its bound" in e and "no more watchdog pings" in e for e in errors), errors


def test_a_reload_whose_device_close_hangs_keeps_the_loop_alive(tmp_path: Path, collector: Collector,
                                                                notify: NotifyListener,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    real_close = DeviceSet.close
    closes: list[DeviceSet] = []

    def close(self: DeviceSet) -> None:
        closes.append(self)
        if len(closes) == 1:
            release.wait(60.0)  # the reload's close hangs (a port that does not let go)
        real_close(self)

    monkeypatch.setattr(DeviceSet, "close", close)
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-OLD", collector.url)
    d = Daemon(load_config(str(cfg)), reload=lambda: load_config(str(cfg)), notifier=notifier(notify, 400_000),
               booted=lambda state_dir: False)

    def from_terminal(name: str) -> Callable[[list[Received]], bool]:
        return lambda rs: any(kind(r, "heartbeat") and r.json["terminal_id"] == name for r in rs)

    def script() -> None:
        assert collector.wait_for(from_terminal("SIM-OLD"), 30.0)
        daemon_config(cfg, "SIM-NEW", collector.url)
        d.request_reload()
        assert notify.wait_for(lambda lines: "RELOADING=1" in lines, 10.0)
        assert notify.wait_for(lambda lines: lines.count("READY=1") >= 2, 30.0)
        assert collector.wait_for(from_terminal("SIM-NEW"), 30.0)
        reloading, ready = notify.times_of("RELOADING=1")[0], notify.times_of("READY=1")[1]
        assert ready - reloading >= 4.5  # it did wait for the close, up to its limit
        assert sum(1 for t in notify.times_of("WATCHDOG=1") if reloading < t < ready) >= 5  # and kept pinging

    with caplog.at_level(logging.INFO, logger="posagent"):
        try:
            drive(d, script)
        finally:
            release.set()
    assert any("did not close within" in r.getMessage() for r in caplog.records)
    assert len(closes) >= 2  # the old set (hung, left behind), then the new one at the stop
