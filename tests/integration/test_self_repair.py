"""Safe self-repair first (issue 16, docs/self-repair.md), through the real ``posagent run``
daemon delivering to the real HTTP collector and through the real ``posagent status``
and ``selftest`` commands. The printer is the ESC/POS simulator on a real pty the test
starts itself, so every byte the daemon sent it can be counted:

- a printer that goes offline and recovers on ESC @: the heartbeats say ok with
  ``repair: {tried: ["init"], cleared: true}``, no fault event is sent, ESC @ arrived once,
  and the history counts one repair that cleared;
- one that stays offline: the fault event carries ``repair: {..., cleared: false}``, and
  over several more rounds ESC @ arrived exactly once (once per fault episode);
- as a guest (``share = "guest"``) ESC @ never reaches the printer;
- every message and ``--json`` output with a ``repair`` validates against its schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from posagent.drivers.escpos.sim import EscposSim
from posagent.drivers.simulator import SimHandle
from posagent.fleet import history
from posagent.fleet.messages import SCHEMA_FILES, load_schema
from tests.conftest import run_cli
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config

ESC_INIT = b"\x1b\x40"
POLL = "200ms"


def validator(kind: str) -> Draft202012Validator:
    schemas = {name: load_schema(name) for name in SCHEMA_FILES}
    registry: Registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(schemas[kind], registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def valid(kind: str, message: dict[str, Any]) -> None:
    errors = sorted(validator(kind).iter_errors(message), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def heartbeats(rs: list[Received]) -> list[dict[str, Any]]:
    return [r.json for r in rs if r.json and r.status == 200 and r.json["schema"] == "posagent.heartbeat/1"]


def events(rs: list[Received]) -> list[dict[str, Any]]:
    return [r.json for r in rs if r.json and r.json["schema"] == "posagent.event/1"]


def printer(url: str, share: str) -> str:
    return f"""
[[device]]
name = "receipt"
driver = "escpos"
url = "{url}"
share = "{share}"
[device.options]
reply_timeout = "300ms"
identity_timeout = "100ms"
"""


@pytest.fixture
def pty_printer() -> Iterator[SimHandle]:
    handle = EscposSim().start()
    yield handle
    handle.stop()


def sim_of(handle: SimHandle) -> EscposSim:
    assert isinstance(handle.sim, EscposSim)
    return handle.sim


def inits(handle: SimHandle) -> int:
    sim = sim_of(handle)
    with sim.lock:
        return bytes(sim.received).count(ESC_INIT)


def run_daemon(tmp_path: Path, c: Collector, url: str, share: str) -> DaemonProc:
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-REPAIR", c.url, system=False,
                        schedule=[f'status_poll = "{POLL}"', 'event_dedupe = "1s"'], devices=printer(url, share))
    return DaemonProc(["--config", str(cfg)], tmp_path)


def receipt(hb: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = hb["devices"]["receipt"]
    return obj


Wait = Callable[[Callable[[list[Received]], bool], float], bool]


def test_an_offline_cleared_by_esc_at_is_ok_with_no_fault_event(tmp_path: Path, pty_printer: SimHandle) -> None:
    with Collector() as c, run_daemon(tmp_path, c, pty_printer.url, "owner") as d:
        assert c.wait_for(lambda rs: any(receipt(h)["code"] == "PRINTER_OK" for h in heartbeats(rs)), 30.0), \
            d.stderr()
        with sim_of(pty_printer).lock:
            sim_of(pty_printer).k["offline_until_init"] = True  # the printer drops offline
        assert c.wait_for(lambda rs: any("repair" in receipt(h) for h in heartbeats(rs)), 30.0), d.stderr()
        n = len(heartbeats(c.received))
        assert c.wait_for(lambda rs: len(heartbeats(rs)) >= n + 3, 30.0), d.stderr()  # and a few rounds on
        got = list(c.received)
        err = d.stderr()
    beats = heartbeats(got)
    repaired = [receipt(h) for h in beats if "repair" in receipt(h)]
    first = repaired[0]
    print(f"\nrepair: {first['repair']}; heartbeats carrying it: {len(repaired)} of {len(beats)}")
    assert all(receipt(h)["status"] == "ok" for h in beats), [receipt(h)["code"] for h in beats]
    assert first["code"] == "PRINTER_OK" and first["repair"]["tried"] == ["init"]
    assert first["repair"]["cleared"] is True and 0 < first["repair"]["duration_ms"] < 3000
    assert {r["repair"]["at"] for r in repaired} == {first["repair"]["at"]}  # one attempt
    assert not [e for e in events(got) if e["device"] == "receipt"], "a repaired fault made an event"
    assert inits(pty_printer) == 1 and sim_of(pty_printer).resets == 1
    for h in beats:
        valid("heartbeat", h)
    assert "Traceback" not in err
    assert history.repairs(str(tmp_path / "state")) == {"receipt": {"tried": 1, "cleared": 1}}


def test_a_printer_that_stays_offline_is_reported_and_tried_once(tmp_path: Path, pty_printer: SimHandle) -> None:
    with Collector() as c, run_daemon(tmp_path, c, pty_printer.url, "owner") as d:
        assert c.wait_for(lambda rs: any(receipt(h)["code"] == "PRINTER_OK" for h in heartbeats(rs)), 30.0), \
            d.stderr()
        with sim_of(pty_printer).lock:
            sim_of(pty_printer).k["offline"] = True  # offline whatever it is sent
        assert c.wait_for(lambda rs: any(e["device"] == "receipt" for e in events(rs)), 30.0), d.stderr()
        n = len(heartbeats(c.received))
        assert c.wait_for(lambda rs: len(heartbeats(rs)) >= n + 4, 30.0), d.stderr()  # >= 20 status rounds on
        got = list(c.received)
        sent = inits(pty_printer)
        queries = sim_of(pty_printer).realtime_queries
    event = next(e for e in events(got) if e["device"] == "receipt")
    current = event["current"]
    print(f"\nfault event: {current['code']} repair {current['repair']}; ESC @ sent {sent} times "
          f"over {queries} real-time queries")
    assert (current["status"], current["code"]) == ("fail", "PRINTER_OFFLINE")
    assert current["repair"]["tried"] == ["init"] and current["repair"]["cleared"] is False
    late = [receipt(h) for h in heartbeats(got)[n:]]
    assert late and all(r["code"] == "PRINTER_OFFLINE" and r["repair"]["cleared"] is False for r in late)
    assert sent == 1, f"ESC @ sent {sent} times in one fault episode"
    valid("event", event)
    for h in heartbeats(got):
        valid("heartbeat", h)
    assert history.repairs(str(tmp_path / "state")) == {"receipt": {"tried": 1, "cleared": 0}}


def test_a_guest_never_sends_esc_at(tmp_path: Path, pty_printer: SimHandle) -> None:
    with Collector() as c, run_daemon(tmp_path, c, pty_printer.url, "guest") as d:
        assert c.wait_for(lambda rs: any(receipt(h)["code"] == "PRINTER_OK" for h in heartbeats(rs)), 30.0), \
            d.stderr()
        with sim_of(pty_printer).lock:
            sim_of(pty_printer).k["offline_until_init"] = True
        assert c.wait_for(lambda rs: any(e["device"] == "receipt" for e in events(rs)), 30.0), d.stderr()
        n = len(heartbeats(c.received))
        assert c.wait_for(lambda rs: len(heartbeats(rs)) >= n + 3, 30.0), d.stderr()
        got = list(c.received)
    event = next(e for e in events(got) if e["device"] == "receipt")
    assert event["current"]["code"] == "PRINTER_OFFLINE" and "repair" not in event["current"]
    assert not any("repair" in receipt(h) for h in heartbeats(got))
    assert inits(pty_printer) == 0 and sim_of(pty_printer).resets == 0
    assert sim_of(pty_printer).realtime_queries > 0


def test_status_and_selftest_commands_show_the_repair(write_config: Callable[..., Path]) -> None:
    cfg = write_config(printer("sim://escpos?offline_until_init=1", "owner"))
    proc = run_cli("status", "--json", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    valid("status", out)
    dev = out["devices"]["receipt"]
    assert dev["status"] == "ok" and dev["repair"]["tried"] == ["init"] and dev["repair"]["cleared"] is True
    table = run_cli("status", "--config", str(cfg), env={"COLUMNS": "300"})
    assert table.returncode == 0 and "self-repair cleared the fault" in table.stdout, table.stdout
    stuck = write_config(printer("sim://escpos?offline=1", "owner"), name="stuck.toml")
    proc = run_cli("selftest", "--level", "internal", "--json", "--config", str(stuck))
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    valid("selftest", report)
    check = next(ch for ch in report["checks"] if ch["name"] == "status")
    assert check["code"] == "PRINTER_OFFLINE" and check["repair"] == {**check["repair"], "cleared": False}
    assert check["repair"]["tried"] == ["init"]
