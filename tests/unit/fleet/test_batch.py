"""Batches: the outbox hands out its backlog oldest first and removes a batch with the one
2xx that covered it; a batch body (the stored reports as one JSON array) validates against
the shipped ``batch.json``, each report against its own schema."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from posagent.config.loader import validate
from posagent.config.model import Config
from posagent.core.base import Level, Result
from posagent.fleet import messages
from posagent.fleet.outbox import Outbox
from posagent.fleet.service import status_round
from posagent.fleet.upstream import batch_body
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import report_json
from posagent.selftest.runner import Runner


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def config(tmp_path: Path) -> Config:
    raw = {"agent": {"terminal_id": "SH-0042", "state_dir": str(tmp_path), "check_timeout": "3s"},
           "device": [{"name": "receipt", "driver": "escpos", "url": "sim://escpos?paper=near_end"},
                      {"name": "acquirer", "driver": "host", "url": "sim://host"}]}
    return validate(raw, str(tmp_path / "posagent.toml"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    box = Outbox(str(tmp_path), max_bytes=10**7, max_age=86400 * 30, clock=clock)
    yield box
    box.close()


def batch_validator() -> Draft202012Validator:
    folder = resources.files("posagent.config").joinpath("schemas")
    schemas = [json.loads(folder.joinpath(n).read_text("utf-8"))
               for n in ("heartbeat.json", "event.json", "selftest.json", "command_result.json",
                         "diagnostics.json", "inventory.json", "batch.json")]
    registry: Registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    Draft202012Validator.check_schema(schemas[-1])
    return Draft202012Validator(schemas[-1], registry=registry, format_checker=FormatChecker())


def fill(config: Config, outbox: Outbox, clock: Clock) -> list[dict[str, Any]]:
    """A heartbeat a minute for five minutes, an event and a self-test in between."""
    state = messages.AgentState(started_at=dt.datetime.now().astimezone())
    made: list[dict[str, Any]] = []
    with DeviceSet(config) as devices:
        runner = Runner(devices)
        results, system = status_round(runner, config)
        report = report_json(runner.selftest(Level.INTERNAL))
    for minute in range(5):
        clock.t += 60
        made.append(outbox.commit("heartbeat", messages.heartbeat(config, results, system, state)))
        if minute == 1:
            made.append(outbox.commit("event", messages.event(config, "receipt", *results["receipt"],
                                                              Result.ok("PRINTER_OK", "ready"), results)))
        if minute == 3:
            made.append(outbox.commit("selftest", messages.selftest(config, report, "scheduled", "", state)))
    return made


def test_the_backlog_goes_in_batches_oldest_first_and_leaves_together(config: Config, outbox: Outbox,
                                                                        clock: Clock) -> None:
    made = fill(config, outbox, clock)
    stats = outbox.stats()
    assert stats.backlog == 7 and stats.newest_created - stats.oldest_created == 240.0
    batch = outbox.next_batch(4)
    assert [p.seq for p in batch] == [1, 2, 3, 4]
    outbox.note_failures([p.seq for p in batch], "HTTP 503", refused=False)
    outbox.note_failures([p.seq for p in batch], "HTTP 401", refused=True)
    assert outbox.stats().refused == 1  # one refused request, not one per report in it
    assert [p.attempts for p in outbox.next_batch(4)] == [2, 2, 2, 2]
    outbox.ack_many([p.seq for p in batch])
    assert outbox.pending_seqs() == [5, 6, 7] and outbox.stats().last_success_at is not None
    assert [p.message_id for p in outbox.next_batch(50)] == [m["message_id"] for m in made[4:]]


def test_a_batch_body_validates_against_batch_json(config: Config, outbox: Outbox, clock: Clock) -> None:
    fill(config, outbox, clock)
    body = json.loads(batch_body([p.body for p in outbox.next_batch(50)]))
    v = batch_validator()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(body)]
    assert not errors, errors
    assert [m["schema"].split(".")[1].split("/")[0] for m in body] == ["heartbeat", "heartbeat", "event", "heartbeat",
                                                          "heartbeat", "selftest", "heartbeat"]
    broken = [dict(body[0]), body[1]]
    del broken[0]["devices"]
    assert not v.is_valid(broken)  # each report against its own schema
    assert not v.is_valid([body[0]])  # one report goes as itself, never as an array of one
    assert not v.is_valid([{"schema": "posagent.unknown/1"}, body[0]])
