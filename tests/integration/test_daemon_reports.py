"""The daemon's other reports, from a real subprocess: a missed self-test caught up at start
(at the internal level on a blackout date, saying why) and recorded in the history, and an
event as soon as a device's status changes."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import signal
import socket
from pathlib import Path

from jsonschema import Draft202012Validator

from posagent.fleet.messages import load_schema
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config, door_device


def kind(r: Received, name: str) -> bool:
    return bool(r.json) and r.status == 200 and r.json["schema"] == f"posagent.{name}/1"


def test_catch_up_selftest_and_status_change_event(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # The box was off when the last self-test was due: the record says the last run was long ago.
    (state / "schedule.json").write_text(json.dumps({"first_seen": "2024-01-01T00:00:00+00:00",
                                                     "last_selftest_run": "2024-01-02T03:10:00+00:00"}))
    today = dt.date.today()
    blackout = ", ".join(f'"{today + dt.timedelta(days=d)}"' for d in (-1, 0, 1))
    door = socket.socket()
    door.bind(("127.0.0.1", 0))
    door.listen(16)
    port = door.getsockname()[1]
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "SIM-REPORTS", c.url, system=False,
                            schedule=['event_dedupe = "1s"', 'event_spread = "0s"', 'jitter = "1s"',
                                      f"blackout_dates = [{blackout}]"],
                            sections=f'[export]\nprometheus_textfile = "{tmp_path / "posagent.fleet.prom"}"\n',
                            devices=door_device(port))
        with door, DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: any(kind(r, "selftest") for r in rs), 60.0), d.stderr()
            assert c.wait_for(lambda rs: sum(kind(r, "heartbeat") for r in rs) >= 2, 30.0), d.stderr()
            door.close()  # the device goes away: ok -> fail
            assert c.wait_for(lambda rs: any(kind(r, "event") for r in rs), 30.0), d.stderr()
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
    # announced maintenance: before the catch-up the heartbeat names it (internal: a blackout
    # date); after it, the next daily slot
    beats = [r.json for r in c.received if kind(r, "heartbeat")]
    assert all(dt.datetime.fromisoformat(h["next_selftest_at"]) > dt.datetime.now().astimezone()
               - dt.timedelta(minutes=1) for h in beats)
    assert {h["next_selftest_level"] for h in beats} == {"internal"}
    selftest = next(r.json for r in c.received if kind(r, "selftest"))
    assert Draft202012Validator(load_schema("selftest")).is_valid(selftest)
    assert selftest["trigger"] == "catch-up" and selftest["level"] == "internal"
    assert "blackout date" in selftest["reason"]
    assert {ch["device"] for ch in selftest["checks"]} == {"acquirer", "door"}
    event = next(r.json for r in c.received if kind(r, "event"))
    assert Draft202012Validator(load_schema("event")).is_valid(event)
    assert event["device"] == "door" and event["previous"]["status"] == "ok"
    assert event["current"]["status"] == "fail" and event["current"]["code"] == "HOST_UNREACHABLE"
    err = d.stderr()
    assert "self-test (catch-up) at level internal: blackout date" in err
    if importlib.util.find_spec("posagent.fleet.history") is not None:
        later = [r.json for r in c.received if kind(r, "heartbeat") and r.json["last_selftest"]]
        assert later and later[-1]["last_selftest"]["status"] == selftest["status"]
    if importlib.util.find_spec("posagent.fleet.prom") is not None:  # written after every heartbeat
        from prometheus_client.parser import text_string_to_metric_families

        families = list(text_string_to_metric_families((tmp_path / "posagent.fleet.prom").read_text()))
        assert families and all(f.name.startswith("posagent_") for f in families)
    # the run is recorded: a restart now would not catch up again
    record = json.loads((state / "schedule.json").read_text())
    assert record["last_selftest_run"] > "2025"


def test_the_textfile_describes_the_send_not_the_moment_before(tmp_path: Path) -> None:
    """The heartbeat is written to the textfile when it is committed (outbox: 1 waiting);
    once the delivery has sent it, the textfile says so (outbox: 0, a last success),
    without waiting for the next heartbeat."""
    import time

    prom = tmp_path / "posagent.fleet.prom"

    def figures() -> dict[str, float]:
        try:
            text = prom.read_text()
        except OSError:
            return {}
        return {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(("posagent_outbox_messages", "posagent_upstream_last_success"))}

    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "SIM-PROM", c.url, heartbeat_interval="30s", system=False,
                            sections=f'[export]\nprometheus_textfile = "{prom}"\n')
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: any(kind(r, "heartbeat") for r in rs), 60.0), d.stderr()
            delivered_at = time.monotonic()
            seen: dict[str, float] = {}
            while time.monotonic() < delivered_at + 10.0:  # well before the next heartbeat (30 s)
                seen = figures()
                if seen.get("posagent_outbox_messages") == 0 and \
                        "posagent_upstream_last_success_timestamp_seconds" in seen:
                    break
                c.wait_for(lambda rs: False, 0.05)  # a short pause on the collector's condition
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
    assert seen.get("posagent_outbox_messages") == 0, seen
    assert seen.get("posagent_upstream_last_success_timestamp_seconds", 0) > 0, seen
