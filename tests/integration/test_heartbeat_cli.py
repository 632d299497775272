"""``posagent heartbeat [--json] [--send]`` and ``posagent run --once`` through the real CLI,
against a real collector: preview writes nothing, --send commits and delivers, a failure
keeps the report for later, bad upstream settings are one clear line and exit 78."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from posagent.fleet.messages import load_schema
from tests.conftest import free_port, run_cli
from tests.integration.collector import Collector
from tests.integration.daemon_proc import daemon_config


def config(tmp_path: Path, url: str, extra: str = "", sections: str = "") -> Path:
    """No heartbeat_interval, no [schedule]; ``extra`` is one more [upstream] line."""
    return daemon_config(tmp_path / "posagent.toml", "SIM-CLI", url, heartbeat_interval=None, schedule=None,
                         upstream=[extra], sections=sections)


def snapshot(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in state.iterdir()}


def test_preview_prints_a_valid_heartbeat_and_writes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9/unused")
    r = run_cli("heartbeat", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    message = json.loads(r.stdout)
    assert Draft202012Validator(load_schema("heartbeat")).is_valid(message)
    assert message["seq"] == 1 and message["terminal_id"] == "SIM-CLI"
    assert not (tmp_path / "state" / "outbox.db").exists()
    r = run_cli("heartbeat", "--config", str(cfg))
    assert r.returncode == 0 and "preview, not sent" in r.stdout and "acquirer" in r.stdout


def test_preview_shows_the_real_backlog_and_drops_read_only(tmp_path: Path) -> None:
    from posagent.fleet.outbox import Outbox, Stats

    state = tmp_path / "state"
    box = Outbox(str(state), max_bytes=2500, max_age=10**9)

    def fat(seq: int, stats: Stats) -> dict[str, object]:
        return {"message_id": f"m-{seq}", "seq": seq, "pad": "x" * 1000}

    for _ in range(4):
        box.commit("heartbeat", fat)  # the bound keeps two: two dropped
    box.commit("event", fat)  # and this one pushes out a third heartbeat
    box.reject(5, 422, "HTTP 422")
    expected = box.stats()
    box.close()
    before = snapshot(state)
    cfg = config(tmp_path, "http://127.0.0.1:9/unused")
    r = run_cli("heartbeat", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    message = json.loads(r.stdout)
    assert Draft202012Validator(load_schema("heartbeat")).is_valid(message)
    agent = message["agent"]
    assert message["seq"] == expected.seq + 1 == 6
    assert agent["outbox_backlog"] == expected.backlog >= 1
    assert agent["dropped"]["heartbeat"] == expected.dropped["heartbeat"] >= 2
    assert agent["dropped"]["total"] == expected.dropped_total and agent["rejected"] == 1
    assert snapshot(state) == before  # not a byte written, no file created, no seq allocated
    r = run_cli("heartbeat", "--config", str(cfg))
    assert r.returncode == 0 and f"outbox: {expected.backlog} waiting, {expected.dropped_total} dropped" in r.stdout
    assert snapshot(state) == before


def test_send_and_run_once_write_the_prometheus_textfile(tmp_path: Path, collector: Collector) -> None:
    prom = tmp_path / "textfile" / "posagent.fleet.prom"
    prom.parent.mkdir()
    cfg = config(tmp_path, collector.url, sections=f'[export]\nprometheus_textfile = "{prom}"\n')
    from prometheus_client.parser import text_string_to_metric_families

    def families() -> dict[str, list[object]]:
        text = prom.read_text(encoding="utf-8")
        return {f.name: [s.labels.get("terminal_id") for s in f.samples]
                for f in text_string_to_metric_families(text)}

    r = run_cli("heartbeat", "--send", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert families()["posagent_status"] == ["SIM-CLI"]
    prom.unlink()
    r = run_cli("run", "--once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert families()["posagent_status"] == ["SIM-CLI"]
    before = (prom.read_bytes(), prom.stat().st_mtime_ns)
    r = run_cli("heartbeat", "--json", "--config", str(cfg))  # a preview writes nothing, not even this
    assert r.returncode == 0 and (prom.read_bytes(), prom.stat().st_mtime_ns) == before
    assert [p.name for p in prom.parent.iterdir()] == ["posagent.fleet.prom"]


def test_send_commits_and_delivers_now(tmp_path: Path, collector: Collector) -> None:
    token = tmp_path / "token"
    token.write_text("cli-token\n")
    token.chmod(0o600)
    cfg = config(tmp_path, collector.url, f'token_file = "{token}"')
    r = run_cli("heartbeat", "--send", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)
    (got,) = collector.received
    assert got.json == sent and got.headers["idempotency-key"] == sent["message_id"]
    assert got.headers["authorization"] == "Bearer cli-token"
    assert "delivered 1 report" in r.stderr


def test_send_while_down_keeps_it_and_run_once_delivers_the_backlog(tmp_path: Path) -> None:
    port = free_port()
    c = Collector(port=port)
    cfg = config(tmp_path, c.url)
    r = run_cli("heartbeat", "--send", "--config", str(cfg))
    assert r.returncode == 75, r.stderr
    assert "kept in the outbox" in r.stderr and "Traceback" not in r.stderr
    with c:
        r = run_cli("run", "--once", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        assert sorted(m["seq"] for m in c.delivered()) == [1, 2]
        assert c.received[0].json["seq"] == 2  # the newest heartbeat first


def test_bad_upstream_settings_are_one_clear_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("do-not-print-me\n")
    token.chmod(0o644)
    cfg = config(tmp_path, "http://127.0.0.1:9/x", f'token_file = "{token}"')
    r = run_cli("heartbeat", "--send", "--config", str(cfg))
    assert r.returncode == 78
    assert "readable by everyone" in r.stderr and "chmod 600" in r.stderr
    assert "do-not-print-me" not in r.stderr + r.stdout and "Traceback" not in r.stderr
    plain = tmp_path / "plain.toml"
    plain.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    r = run_cli("run", "--once", "--config", str(plain), "--upstream", "http://127.0.0.1:9/")
    assert r.returncode == 64 and "--allow-insecure-http" in r.stderr
