"""Every message the agent builds validates against the JSON Schemas shipped in the package
(draft 2020-12), built from real status rounds and self-tests of simulated devices."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from posagent.config.loader import validate
from posagent.config.model import Config
from posagent.core.base import Level, Result, Status
from posagent.fleet import messages
from posagent.fleet.outbox import Outbox
from posagent.fleet.outbox_mem import MemoryQueue
from posagent.fleet.service import status_round
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import report_json
from posagent.selftest.runner import Runner

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def validator(kind: str) -> Draft202012Validator:
    schema = messages.load_schema(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def check(kind: str, message: dict[str, Any]) -> None:
    errors = sorted(validator(kind).iter_errors(message), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    json.dumps(message, ensure_ascii=False)  # serialisable as it stands


@pytest.fixture
def config(tmp_path: Path) -> Config:
    raw = {
        "agent": {"terminal_id": "SH-0042", "state_dir": str(tmp_path), "check_timeout": "3s"},
        "device": [
            {"name": "receipt", "driver": "escpos", "url": "sim://escpos?paper=near_end"},
            {"name": "ups", "driver": "megatec", "url": "sim://megatec"},
            {"name": "acquirer", "driver": "host", "url": "sim://host"},
            {"name": "dead", "driver": "host", "url": "tcp://127.0.0.1:1", "options": {"tries": 1}},
            {"name": "system", "driver": "system", "options": {"disk_warn_pct": 0.5, "disk_fail_pct": 0.1}},
        ],
    }
    return validate(raw, str(tmp_path / "posagent.toml"))


@pytest.fixture
def outbox(tmp_path: Path) -> Any:
    box = Outbox(str(tmp_path), max_bytes=10**7, max_age=86400)
    yield box
    box.close()


def test_heartbeat_event_selftest_validate(config: Config, outbox: Outbox) -> None:
    state = messages.AgentState(started_at=dt.datetime.now().astimezone().replace(microsecond=0))
    with DeviceSet(config) as devices:
        runner = Runner(devices)
        results, system = status_round(runner, config)
        report = runner.selftest(Level.INTERNAL)
    assert results["dead"][1].status in (Status.FAIL, Status.UNKNOWN)
    hb = outbox.commit("heartbeat", messages.heartbeat(config, results, system, state))
    check("heartbeat", hb)
    assert hb["seq"] == 1 and UUID4.match(hb["message_id"])
    assert set(hb["devices"]) == {"receipt", "ups", "acquirer", "dead", "system"}
    assert hb["status"] == max(r.status for _d, r in results.values()).label
    assert hb["devices"]["receipt"]["paper"] == "near_end"
    assert hb["agent"]["dropped"]["total"] == 0 and hb["agent"]["outbox_backlog"] == 0
    # offset in sent_at (RFC 3339), never a naive time
    assert re.search(r"([+-]\d{2}:\d{2}|Z)$", hb["sent_at"])

    drv, current = results["receipt"]
    ev = outbox.commit("event", messages.event(config, "receipt", drv, current,
                                               Result.ok("PRINTER_OK", "ready"), results, suppressed=2,
                                               state=state))
    check("event", ev)
    assert ev["seq"] == 2 and ev["previous"]["code"] == "PRINTER_OK" and ev["suppressed"] == 2
    first = outbox.commit("event", messages.event(config, "ups", *results["ups"], None, results))
    check("event", first)

    st = outbox.commit("selftest", messages.selftest(config, report_json(report), "catch-up",
                                                     "inside business hours 08:00-22:00: internal checks only",
                                                     state))
    check("selftest", st)
    assert st["seq"] == 4 and st["level"] == "internal" and st["checks"]
    assert st["agent"]["outbox_backlog"] == 3


def test_heartbeat_carries_the_history_when_it_exists(config: Config, outbox: Outbox) -> None:
    history = pytest.importorskip("posagent.fleet.history")
    with DeviceSet(config) as devices:
        runner = Runner(devices)
        report = runner.selftest(Level.INTERNAL)
        history.record_selftest(config, report)
        results, system = status_round(runner, config)
    hb = outbox.commit("heartbeat", messages.heartbeat(config, results, system))
    check("heartbeat", hb)
    assert hb["last_selftest"] is not None and hb["last_selftest"]["status"] == report.status.label
    assert isinstance(hb["counters"], dict)


def test_a_message_made_with_a_wrong_clock_says_so(config: Config, outbox: Outbox) -> None:
    """#18: made while the clock is before the build year (a dead RTC battery, before NTP),
    a report carries clock_suspect: true; made with a sane clock it has no such field. Both
    valid, and the memory fallback's marks validate too."""
    with DeviceSet(config) as devices:
        results, system = status_round(Runner(devices), config)
    y2000 = dt.datetime(2000, 1, 1, 10, 0, tzinfo=dt.UTC)
    wrong = outbox.commit("heartbeat", messages.heartbeat(config, results, system, now=y2000))
    check("heartbeat", wrong)
    assert wrong["clock_suspect"] is True and wrong["sent_at"].startswith("2000-01-01")
    right = outbox.commit("heartbeat", messages.heartbeat(config, results, system))
    check("heartbeat", right)
    assert "clock_suspect" not in right
    memory = MemoryQueue(right["seq"])
    memory.reason = "disk full"
    kept = memory.commit("heartbeat", messages.heartbeat(config, results, system))
    check("heartbeat", kept)
    assert kept["agent"]["outbox"] == "unavailable" and kept["agent"]["outbox_reason"] == "disk full"


def test_preview_validates_and_commits_nothing(config: Config, tmp_path: Path) -> None:
    with DeviceSet(config) as devices:
        results, system = status_round(Runner(devices), config)
    message = messages.preview(messages.heartbeat(config, results, system), 1)
    check("heartbeat", message)
    assert not (tmp_path / "outbox.db").exists()


def test_schemas_catch_broken_messages(config: Config, outbox: Outbox) -> None:
    results = {"a": ("host", Result.ok("HOST_OK", "fine", fields={"latency_ms": 1.5}))}
    good = outbox.commit("heartbeat", messages.heartbeat(config, results, {"cpu_count": 2}))
    check("heartbeat", good)
    v = validator("heartbeat")
    for mutate in (
        lambda m: m.pop("seq"),
        lambda m: m.update(seq=0),
        lambda m: m.update(sent_at="2027-03-01T10:00:00"),  # no offset
        lambda m: m.update(message_id="not-a-uuid"),
        lambda m: m.update(status="fine"),
        lambda m: m["devices"]["a"].pop("code"),
        lambda m: m["devices"]["a"].update(paper="empty"),
        lambda m: m.update(schema="posagent.event/1"),
        lambda m: m.update(unexpected=1),
        lambda m: m["agent"].pop("dropped"),
    ):
        bad = json.loads(json.dumps(good))
        mutate(bad)
        assert not v.is_valid(bad), bad
