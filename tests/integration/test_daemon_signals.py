"""A real ``posagent run --sim`` subprocess with NOTIFY_SOCKET: READY, heartbeats at the
collector, watchdog pings, SIGHUP reload with a good and a bad config, SIGTERM exit 0, and
a hung device that never blocks the main loop."""

from __future__ import annotations

import itertools
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from posagent.fleet.messages import SCHEMA_FILES, load_schema
from tests.integration.collector import Collector
from tests.integration.daemon_proc import DaemonProc, NotifyListener, daemon_config


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    n = NotifyListener(tmp_path / "notify.sock")
    yield n
    n.close()


def write(path: Path, terminal: str, url: str, extra: str = "") -> Path:
    # state_dir is state/ next to the config; --sim puts its state under $TMPDIR instead
    return daemon_config(path, terminal, url, schedule=['event_dedupe = "1s"'], devices=extra)


def from_terminal(terminal: str, n: int) -> object:
    return lambda received: sum(1 for r in received if r.json and r.json.get("terminal_id") == terminal
                                and r.json["schema"] == "posagent.heartbeat/1") >= n


def test_ready_heartbeats_reload_and_graceful_stop(tmp_path: Path, collector: Collector,
                                                   notify: NotifyListener) -> None:
    cfg = write(tmp_path / "posagent.toml", "SIM-SIG", collector.url)
    with DaemonProc(["--sim", "--config", str(cfg)], tmp_path, notify=notify, env={"WATCHDOG_USEC": "2000000"}) as d:
        assert notify.wait_for(lambda lines: "READY=1" in lines, 30.0), d.stderr()
        assert collector.wait_for(from_terminal("SIM-SIG", 2), 30.0), d.stderr()
        assert notify.wait_for(lambda lines: "WATCHDOG=1" in lines, 10.0)
        assert notify.wait_for(lambda lines: any(x.startswith("STATUS=ok") or x.startswith("STATUS=warn")
                                                 for x in lines), 10.0)

        # a good new config: the next heartbeats carry the new terminal id
        write(cfg, "SIM-RELOADED", collector.url)
        d.signal(signal.SIGHUP)
        assert notify.wait_for(lambda lines: "RELOADING=1" in lines and lines.count("READY=1") >= 2, 30.0)
        assert collector.wait_for(from_terminal("SIM-RELOADED", 1), 30.0), d.stderr()

        # a broken config: logged, the old one kept, heartbeats go on
        cfg.write_text('[agent]\nheartbeat_interval = "soon"\n', encoding="utf-8")
        d.signal(signal.SIGHUP)
        assert notify.wait_for(lambda lines: any("reload failed" in x for x in lines), 30.0), d.stderr()
        before = sum(1 for r in collector.received if r.json.get("terminal_id") == "SIM-RELOADED")
        assert collector.wait_for(from_terminal("SIM-RELOADED", before + 2), 30.0)

        d.signal(signal.SIGTERM)
        assert d.wait(30.0) == 0
    err = d.stderr()
    assert "STOPPING=1" in notify.lines()
    assert "reload failed, keeping the old config" in err and "agent.heartbeat_interval" in err
    assert "config reloaded" in err
    assert "Traceback" not in err
    # one counter across the run, every message valid
    seqs = [r.json["seq"] for r in collector.received if r.status == 200]
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1))
    validators = {k: Draft202012Validator(load_schema(k)) for k in SCHEMA_FILES}  # every kind it may send
    for r in collector.received:
        kind = r.json["schema"].split(".")[1].split("/")[0]
        assert validators[kind].is_valid(r.json), r.json


def test_a_hung_device_never_blocks_the_main_loop(tmp_path: Path, collector: Collector,
                                                  notify: NotifyListener) -> None:
    # A listening socket nobody accepts on: TCP connects, the HTTP request never gets an answer.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    extra = f"""
[[device]]
name = "hung"
driver = "host"
url = "http://127.0.0.1:{port}/health"
timeout = "1s"
[device.options]
tries = 1
connect_timeout = "60s"
"""
    cfg = write(tmp_path / "posagent.toml", "SIM-HUNG", collector.url, extra)
    with silent, DaemonProc(["--config", str(cfg)], tmp_path, notify=notify, env={"WATCHDOG_USEC": "1000000"}) as d:
        assert collector.wait_for(from_terminal("SIM-HUNG", 3), 60.0), d.stderr()
        hb = next(r.json for r in reversed(collector.received) if r.json.get("terminal_id") == "SIM-HUNG")
        # no answer in time: the host check gives up inside its budget (HOST_TIMEOUT), or the
        # runner cuts it (CHECK_TIMEOUT); never ok, never waiting for the 60 s connect timeout
        hung = hb["devices"]["hung"]
        assert (hung["status"], hung["code"]) in {("fail", "HOST_TIMEOUT"), ("unknown", "CHECK_TIMEOUT")}, hung
        assert hb["devices"]["acquirer"]["status"] == "ok"  # the others are not held up
        pings = notify.times_of("WATCHDOG=1")
        assert len(pings) >= 4
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 10.0, gaps  # each device call hangs 60 s; the loop pings every 0.5 s
        d.signal(signal.SIGTERM)
        assert d.wait(30.0) == 0
