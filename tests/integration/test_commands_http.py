"""Remote commands over HTTP, end to end: a real ``posagent run`` process delivering to the
real collector (tests/integration/collector.py), whose 2xx answers carry ``{"commands":
[...]}`` signed in the test with a fleet key of its own, and a simulated ESC/POS printer
on a pty (the project's simulator, in this process, so the test reads what it received).

- a valid ``selftest`` command yields a ``done`` command_result and a self-test (trigger
  manual) that is recorded in the history;
- 10 bad commands (forged, expired, replayed, wrong audience, not allowed, malformed, an
  unknown key, too long a lifetime, a printing self-test outside the quiet window, bad
  arguments) run nothing: the printer receives nothing but the status polls (no slip, no
  cut, no identity query), no self-test is recorded, and exactly 10 ``refused`` results
  are delivered, one per command, each with its reason;
- ``heartbeat`` and ``diagnostics`` commands yield their messages, a bundle with no secret;
- a replay after an agent restart is refused (the replay cache is in the state dir).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from posagent.drivers.escpos.sim import EscposSim
from posagent.fleet import history
from posagent.fleet.messages import load_schema
from tests.conftest import hours_window
from tests.integration.collector import Collector, Received, Reply
from tests.integration.daemon_proc import DaemonProc, daemon_config
from tests.integration.fleet_keys import FleetKey, tamper

TERMINAL = "SIM-CMD"
STATUS_QUERY = (b"\x10\x04\x01", b"\x10\x04\x02", b"\x10\x04\x03", b"\x10\x04\x04")  # DLE EOT n


def of_kind(r: Received, kind: str) -> bool:
    return isinstance(r.json, dict) and r.status == 200 and r.json.get("schema") == f"posagent.{kind}/1"


def results(c: Collector) -> list[dict[str, Any]]:
    """The command_result messages delivered, deduplicated on message_id."""
    return [m for m in c.unique().values() if m.get("schema") == "posagent.command_result/1"]


def valid(kind: str, message: dict[str, Any]) -> list[str]:
    v = Draft202012Validator(load_schema(kind), format_checker=FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(message)]


def answer(*tokens: str) -> Reply:
    return Reply(body=json.dumps({"commands": list(tokens)}).encode())


@pytest.fixture
def printer() -> Iterator[tuple[EscposSim, str]]:
    sim = EscposSim()
    handle = sim.start()
    yield sim, handle.url
    handle.stop()


def config_for(tmp_path: Path, url: str, printer_url: str, key: Path, *, allow: str,
               business_hours: bool = False, token_file: Path | None = None) -> Path:
    later = (dt.datetime.now() + dt.timedelta(hours=12)).strftime("%H:%M")  # no daily self-test in the test
    sched = [f'selftest_at = "{later}"', 'jitter = "0s"', 'event_spread = "0s"']
    if business_hours:
        sched.append(f'business_hours = "{hours_window(inside=True)}"')
    upstream = [f'token_file = "{token_file}"'] if token_file else []
    printer_dev = f"""
[[device]]
name = "receipt"
driver = "escpos"
url = "{printer_url}"
[device.options]
reply_timeout = "500ms"
identity_timeout = "300ms"
"""
    return daemon_config(tmp_path / "posagent.toml", TERMINAL, url, schedule=sched, system=False,
                         upstream=upstream, devices=printer_dev,
                         sections=f'[commands]\npublic_keys = ["{key}"]\nallow = [{allow}]\n')


def received_since(sim: EscposSim, mark: int) -> bytes:
    with sim.lock:
        return bytes(sim.received[mark:])


def mark_of(sim: EscposSim) -> int:
    with sim.lock:
        return len(sim.received)


def test_a_valid_selftest_runs_and_ten_bad_commands_run_nothing(tmp_path: Path,
                                                                printer: tuple[EscposSim, str]) -> None:
    sim, printer_url = printer
    fleet = FleetKey("fleet-1")
    key = fleet.write_public(tmp_path / "keys")
    state = tmp_path / "state"
    with Collector() as c:
        cfg = config_for(tmp_path, c.url, printer_url, key, allow='"heartbeat", "selftest"', business_hours=True)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: any(of_kind(r, "heartbeat") for r in rs), 60.0), d.stderr()

            # 1. a valid self-test command (internal: it may run in business hours)
            good = fleet.sign("selftest", TERMINAL, args={"level": "internal"}, jti="good-1")
            c.script(answer(good))
            assert c.wait_for(lambda rs: any(of_kind(r, "command_result") for r in rs), 60.0), d.stderr()
            assert c.wait_for(lambda rs: any(of_kind(r, "selftest") for r in rs), 30.0), d.stderr()
            done = results(c)
            assert [(m["jti"], m["outcome"], m["reason"], m["source"]) for m in done] == \
                [("good-1", "done", None, "http")]
            assert not valid("command_result", done[0])
            assert done[0]["result"]["level"] == "internal" and done[0]["result"]["checks"] >= 2
            selftests = [r.json for r in c.received if of_kind(r, "selftest")]
            assert len(selftests) == 1 and selftests[0]["trigger"] == "manual"
            assert selftests[0]["seq"] < done[0]["seq"]  # the report, then the command's result
            assert len(history.runs(str(state))) == 1

            # 2. ten bad commands in one answer
            stranger = FleetKey("fleet-9")
            now = time.time()
            bad = {
                "bad_signature": tamper(fleet.sign("selftest", TERMINAL, args={"level": "external"}, jti="b-forged")),
                "expired": fleet.sign("selftest", TERMINAL, jti="b-expired", iat=now - 1200, lifetime=600),
                "replayed": good,
                "wrong_audience": fleet.sign("selftest", "SIM-OTHER", jti="b-aud"),
                "not_allowed": fleet.sign("slip", TERMINAL, jti="b-slip"),
                "malformed": "this.is.not-a-jwt",
                "unknown_key": stranger.sign("selftest", TERMINAL, jti="b-key"),
                "lifetime_too_long": fleet.sign("selftest", TERMINAL, jti="b-long", lifetime=3600),
                "outside_quiet_window": fleet.sign("selftest", TERMINAL, args={"level": "external"}, jti="b-quiet"),
                "bad_args": fleet.sign("selftest", TERMINAL, args={"level": "interactive"}, jti="b-args"),
            }
            mark = mark_of(sim)
            c.script(answer(*bad.values()))
            assert c.wait_for(lambda rs: sum(of_kind(r, "command_result") for r in rs) >= 11, 60.0), d.stderr()
            # a few more status rounds and heartbeats after the last refusal: nothing runs late
            beats = sum(of_kind(r, "heartbeat") for r in c.received)
            assert c.wait_for(lambda rs: sum(of_kind(r, "heartbeat") for r in rs) >= beats + 3, 30.0), d.stderr()
            during = received_since(sim, mark)
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
    refused = [m for m in results(c) if m["outcome"] == "refused"]
    assert len(refused) == 10 and len(results(c)) == 11
    assert sorted(m["reason"] for m in refused) == sorted(bad)
    for m in refused:
        assert not valid("command_result", m), m
        assert m["result"] is None and m["source"] == "http"
    by_reason = {m["reason"]: m for m in refused}
    assert by_reason["replayed"]["jti"] == "good-1"
    assert by_reason["wrong_audience"]["jti"] == "b-aud" and by_reason["bad_signature"]["jti"] is None
    assert "business hours" in by_reason["outside_quiet_window"]["detail"]
    # nothing ran: the printer got status polls only, no self-test beyond the first
    assert during, "the printer was polled meanwhile"
    rest = during
    for q in STATUS_QUERY:
        rest = rest.replace(q, b"")
    assert rest == b"", rest[:64]
    assert sim.printed_lines == [] and sim.cuts == 0
    assert len([r for r in c.received if of_kind(r, "selftest")]) == 1
    assert len(history.runs(str(state))) == 1
    # each refusal logged once with its reason, never the token
    err = d.stderr()
    for reason in bad:
        assert err.count(f"refused: {reason} (") == 1, (reason, err[-3000:])
    for token in bad.values():
        assert token.split(".")[2] not in err


def test_heartbeat_and_diagnostics_then_a_replay_after_restart_is_refused(tmp_path: Path,
                                                                         printer: tuple[EscposSim, str]) -> None:
    _sim, printer_url = printer
    fleet = FleetKey("fleet-1")
    key = fleet.write_public(tmp_path / "keys")
    token_file = tmp_path / "token"
    token_file.write_text("tok-3a7f-not-for-the-fleet\n")
    token_file.chmod(0o600)
    with Collector() as c:
        cfg = config_for(tmp_path, c.url, printer_url, key, allow='"heartbeat", "diagnostics"',
                         token_file=token_file)
        hb = fleet.sign("heartbeat", TERMINAL, jti="hb-1")
        diag = fleet.sign("diagnostics", TERMINAL, jti="diag-1")
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: any(of_kind(r, "heartbeat") for r in rs), 60.0), d.stderr()
            c.script(answer(hb, diag))
            assert c.wait_for(lambda rs: sum(of_kind(r, "command_result") for r in rs) >= 2, 60.0), d.stderr()
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
        first = {m["jti"]: m for m in results(c)}
        assert {j: (m["outcome"], m["reason"]) for j, m in first.items()} == \
            {"hb-1": ("done", None), "diag-1": ("done", None)}
        assert first["hb-1"]["result"]["status"] in ("ok", "warn", "fail", "unknown")
        bundles = [r.json for r in c.received if of_kind(r, "diagnostics")]
        assert len(bundles) == 1 and not valid("diagnostics", bundles[0]), valid("diagnostics", bundles[0])
        bundle = bundles[0]
        assert bundle["jti"] == "diag-1" and bundle["seq"] < first["diag-1"]["seq"]
        assert bundle["log"]["source"] == "memory" and bundle["log"]["lines"]
        assert any("posagent running as SIM-CMD" in line for line in bundle["log"]["lines"])
        assert bundle["devices"]["receipt"]["driver"] == "escpos" and bundle["devices"]["receipt"]["status"] == "ok"
        assert bundle["config"]["upstream"]["token_file"] == str(token_file)
        assert "tok-3a7f" not in json.dumps(bundle)
        assert first["diag-1"]["result"] == {"log_source": "memory", "log_lines": len(bundle["log"]["lines"])}

        # the agent restarts; the same tokens come again
        seen = len(results(c))
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: sum(of_kind(r, "heartbeat") for r in rs) >= 1, 60.0), d.stderr()
            c.script(answer(hb, diag))
            assert c.wait_for(lambda rs: sum(of_kind(r, "command_result") for r in rs) >= seen + 2, 60.0), \
                d.stderr()
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
    again = [m for m in results(c) if m["jti"] in ("hb-1", "diag-1") and m["outcome"] == "refused"]
    assert sorted((m["jti"], m["reason"]) for m in again) == [("diag-1", "replayed"), ("hb-1", "replayed")]
    assert len([r for r in c.received if of_kind(r, "diagnostics")]) == 1
