"""Building the message kinds the agent sends (design.md, "Heartbeat").

``posagent.heartbeat/1`` (periodic), ``posagent.event/1`` (a device's status changed),
``posagent.selftest/1`` (a finished self-test), ``posagent.command_result/1`` (what became
of a remote command), ``posagent.diagnostics/1`` (the bundle a ``diagnostics`` command
asks for, built by ``fleet/diagnostics.py``) and ``posagent.inventory/1`` (what the
terminal is made of, ``fleet/inventory.py``). Each builder returns a *finalizer*: the
outbox calls it inside the transaction that allocates ``seq``, so the message carries its
seq and the outbox figures of that moment. The JSON Schemas are shipped in
``posagent.config/schemas`` and every built message is validated against them in the tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from posagent.config.model import Config
from posagent.core.base import Result, Status
from posagent.core.status import worst as worst_of
from posagent.core.version import BUILD_YEAR, __version__
from posagent.fleet import history, schedule
from posagent.fleet.outbox_db import Stats, empty_stats
from posagent.fleet.schedule import read_boot_id
from posagent.selftest.render import device_json

log = logging.getLogger(__name__)

HEARTBEAT = "posagent.heartbeat/1"
EVENT = "posagent.event/1"
SELFTEST = "posagent.selftest/1"
COMMAND_RESULT = "posagent.command_result/1"
DIAGNOSTICS = "posagent.diagnostics/1"
INVENTORY = "posagent.inventory/1"
KIND_OF = {HEARTBEAT: "heartbeat", EVENT: "event", SELFTEST: "selftest", COMMAND_RESULT: "command_result",
           DIAGNOSTICS: "diagnostics", INVENTORY: "inventory"}
SCHEMA_FILES = {"heartbeat": "heartbeat.json", "event": "event.json", "selftest": "selftest.json",
                "status": "status.json", "command_result": "command_result.json",
                "diagnostics": "diagnostics.json", "inventory": "inventory.json"}
#: The outbox's drop class of the kinds it does not know by name: a command's result and a
#: diagnostics bundle are dropped, when the outbox is full, like events (before self-tests);
#: so is an inventory (the next change or the daily one sends it again).
OUTBOX_KIND = {"command_result": "event", "diagnostics": "event", "inventory": "event"}

Finalizer = Callable[[int, Stats], dict[str, Any]]
DeviceResults = Mapping[str, tuple[str, Result]]  # name -> (driver name, result), as Runner.status gives


@dataclass
class AgentState:
    """What the daemon knows about itself beyond the outbox."""

    started_at: dt.datetime
    last_error: str | None = None
    #: The self-test the daemon has planned (a catch-up may be earlier than the daily slot).
    next_selftest: dt.datetime | None = None


def now_rfc3339(now: dt.datetime | None = None) -> str:
    t = now if now is not None else dt.datetime.now()
    if t.tzinfo is None:
        t = t.astimezone()
    return t.isoformat(timespec="milliseconds")


def boot_id() -> str | None:
    return read_boot_id()


def envelope(schema: str, config: Config, now: dt.datetime | None = None) -> dict[str, Any]:
    """The fields every kind carries (seq is added by the outbox). Made while the clock is
    before the build year (a dead RTC battery, before NTP steps it), ``clock_suspect: true``
    says that ``sent_at`` and every time in the message cannot be trusted."""
    out = {
        "schema": schema,
        "message_id": str(uuid.uuid4()),
        "terminal_id": config.agent.terminal_id,
        "agent_version": __version__,
        "boot_id": boot_id(),
        "seq": 0,
        "sent_at": now_rfc3339(now),
    }
    if (now or dt.datetime.now()).year < BUILD_YEAR:
        out["clock_suspect"] = True
    return out


def devices_json(results: DeviceResults) -> dict[str, dict[str, Any]]:
    return {name: device_json(driver, r) for name, (driver, r) in results.items()}


def worst(results: DeviceResults) -> Status:
    return worst_of(r.status for _d, r in results.values())


def agent_figures(stats: Stats, state: AgentState | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The agent's own figures: outbox backlog, drops, last delivery."""
    t = now or dt.datetime.now().astimezone()
    out: dict[str, Any] = {
        "outbox_backlog": stats.backlog,
        "outbox_bytes": stats.backlog_bytes,
        "dropped": {**stats.dropped, "total": stats.dropped_total},
        "rejected": stats.rejected,
        "refused": stats.refused,
        "last_success_at": stats.last_success_at,
        "last_error": state.last_error if state else None,
    }
    if stats.unavailable:  # kept in memory: the fleet knows it would not survive a power cut
        out["outbox"] = "unavailable"
        out["outbox_reason"] = stats.unavailable
    if state is not None:
        out["started_at"] = state.started_at.isoformat(timespec="seconds")
        out["uptime_s"] = max(0, int((t - state.started_at).total_seconds()))
    return out


def history_figures(state_dir: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(last_selftest, counters) from the history store; a part it cannot read is logged and left empty."""
    last: dict[str, Any] | None = None
    counters: dict[str, Any] = {}
    try:
        value = history.last_selftest(state_dir)
        last = value if isinstance(value, dict) else None
    except Exception as e:
        log.warning("history: last self-test unreadable: %s", e)
    try:
        value = history.counters(state_dir)
        counters = value if isinstance(value, dict) else {}
    except Exception as e:
        log.warning("history: counters unreadable: %s", e)
    return last, counters


def heartbeat(config: Config, results: DeviceResults, system: dict[str, Any], state: AgentState | None = None,
              now: dt.datetime | None = None) -> Finalizer:
    last, counters = history_figures(config.agent.state_dir)
    body = envelope(HEARTBEAT, config, now)
    planned = state.next_selftest if state is not None else None
    at = planned or schedule.next_slot(now or dt.datetime.now().astimezone(), config.schedule,
                                       config.agent.terminal_id)
    level, _why = schedule.level_for(at, config.schedule)
    body.update({
        "interval_s": float(config.agent.heartbeat_interval),
        "next_selftest_at": at.isoformat(timespec="seconds"),  # announced maintenance
        "next_selftest_level": level.label,
        "status": worst(results).label,
        "devices": devices_json(results),
        "last_selftest": last,
        "counters": counters,
        "system": system,
    })
    return _finalizer(body, state, now)


def event(config: Config, device: str, driver: str, current: Result, previous: Result | None,
          results: DeviceResults, suppressed: int = 0, state: AgentState | None = None,
          now: dt.datetime | None = None, kind: str = "device_status_changed") -> Finalizer:
    """A device's status changed (``kind`` device_status_changed; ``suppressed``: changes
    folded into this one by the dedupe window), or a device reported something that is not
    a status (``kind`` device_notice, e.g. PRINT_JOB_LOST from the print proxy)."""
    body = envelope(EVENT, config, now)
    body.update({
        "event": kind,
        "device": device,
        "current": device_json(driver, current),
        "previous": ({"status": previous.status.label, "code": previous.code, "message": previous.message}
                     if previous is not None else None),
        "suppressed": suppressed,
        "status": worst(results).label,
    })
    return _finalizer(body, state, now)


def selftest(config: Config, report_json: dict[str, Any], trigger: str, reason: str,
             state: AgentState | None = None, now: dt.datetime | None = None) -> Finalizer:
    """A finished self-test; ``report_json`` is ``selftest.render.report_json(report)``.

    ``trigger`` is scheduled | catch-up | manual; ``reason`` says why the level was lowered.
    """
    body = envelope(SELFTEST, config, now)
    body.update({
        "trigger": trigger,
        "reason": reason or None,
        "started_at": report_json["started_at"],
        "duration_ms": report_json["duration_ms"],
        "level": report_json["level"],
        "status": report_json["status"],
        "checks": report_json["checks"],
    })
    if report_json.get("technician"):
        body["technician"] = report_json["technician"]
    return _finalizer(body, state, now)


def command_result(config: Config, *, jti: str | None, act: str | None, outcome: str, reason: str | None,
                   detail: str, result: dict[str, Any] | None, source: str, received_at: str,
                   state: AgentState | None = None, now: dt.datetime | None = None) -> Finalizer:
    """What became of one remote command: ``outcome`` done | refused | failed, ``reason``
    a stable token (fleet/commands.py REASONS, or why it failed), ``result`` a summary."""
    body = envelope(COMMAND_RESULT, config, now)
    body.update({"jti": jti, "act": act, "outcome": outcome, "reason": reason, "detail": detail or None,
                 "source": source, "received_at": received_at, "result": result})
    return _finalizer(body, state, now)


def diagnostics(config: Config, jti: str | None, bundle: dict[str, Any], state: AgentState | None = None,
                now: dt.datetime | None = None) -> Finalizer:
    """The diagnostics bundle (``fleet/diagnostics.py``) asked for by command ``jti``."""
    body = envelope(DIAGNOSTICS, config, now)
    body.update({"jti": jti, **bundle})
    return _finalizer(body, state, now)


def inventory(config: Config, content: dict[str, Any], trigger: str, state: AgentState | None = None,
              now: dt.datetime | None = None) -> Finalizer:
    """What the terminal is made of (``fleet/inventory.py`` ``collect``); ``trigger`` is
    start | daily | change | cli."""
    body = envelope(INVENTORY, config, now)
    body.update({"trigger": trigger, **content})
    return _finalizer(body, state, now)


def _finalizer(body: dict[str, Any], state: AgentState | None, now: dt.datetime | None) -> Finalizer:
    def finalize(seq: int, stats: Stats) -> dict[str, Any]:
        body["seq"] = seq
        body["agent"] = agent_figures(stats, state, now)
        return body

    return finalize


def preview(finalize: Finalizer, next_seq: int, stats: Stats | None = None) -> dict[str, Any]:
    """The message as it would be sent, without committing it (``posagent heartbeat --json``).

    ``stats``: the outbox figures read with ``outbox_db.peek()``; None means there is no outbox.
    """
    return finalize(next_seq, stats if stats is not None else dataclasses.replace(empty_stats(), seq=next_seq - 1))


def load_schema(kind: str) -> dict[str, Any]:
    """The shipped JSON Schema of ``kind`` (a key of ``SCHEMA_FILES``)."""
    text = resources.files("posagent.config").joinpath("schemas", SCHEMA_FILES[kind]).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
