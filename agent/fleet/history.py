"""The self-test history: every run, its results, fault timelines and counters (SQLite).

What is recorded and read; the file itself (``history.sqlite3`` in the state dir: schema,
connection, migration) is ``posagent.fleet.history_db``. ``record_selftest`` is called
after every self-test (CLI and daemon); it keeps the run (who, level, status, every
result), opens a fault for each non-ok code of a device that the device did not have in
its previous run and closes the device's faults whose code is gone, then trims the store
to the last ``history.keep_runs`` runs and ``history.keep_days`` days (open faults are
always kept).

Counters live "since install" (the store's creation) and are never trimmed: self-tests
run, failures per device (runs whose worst result for the device was fail or unknown),
paper-end and UPS on-battery events (an event is a change from "not" to "yes", seen in a
self-test or, through ``record_status``, in a heartbeat's device objects), and self-repairs
per device (``repairs``: each attempt once, by its ``at``, and how many cleared the fault;
docs/self-repair.md).

Readers (``last_selftest``, ``counters``, ``runs``, ``faults``) never create the file
and return empty answers when there is none. A store that cannot be written (read-only
state dir, full disk) is logged and never stops a self-test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from posagent.config.model import Config
from posagent.core.base import Status
from posagent.core.logonce import warn_once
from posagent.core.status import worst
from posagent.fleet.history_db import connect, db_path, set_aside_if_damaged
from posagent.selftest.runner import Report

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["cleared_since", "counters", "db_path", "faults", "last_selftest", "previous_visit", "record_selftest",
           "record_status", "repairs", "runs"]

PAPER_END_CODES = frozenset({"PAPER_END"})
ON_BATTERY_CODES = frozenset({"UPS_ON_BATTERY"})
_FLAG_COUNTERS = {"paper_end": "paper_end_events", "on_battery": "ups_on_battery_events"}


def _flags(code: str, fields: dict[str, Any]) -> set[str]:
    out = set()
    if code in PAPER_END_CODES or fields.get("paper") == "end":
        out.add("paper_end")
    if code in ON_BATTERY_CODES or fields.get("on_battery") is True:
        out.add("on_battery")
    return out


def _bump(conn: sqlite3.Connection, name: str, by: int = 1) -> None:
    conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
                 (name, by, by))


def _update_flags(conn: sqlite3.Connection, device: str, now_on: set[str]) -> None:
    was_on = {r["flag"] for r in conn.execute("SELECT flag FROM flags WHERE device = ?", (device,))}
    for flag in now_on - was_on:
        conn.execute("INSERT INTO flags VALUES (?, ?)", (device, flag))
        _bump(conn, _FLAG_COUNTERS[flag])
    for flag in was_on - now_on:
        conn.execute("DELETE FROM flags WHERE device = ? AND flag = ?", (device, flag))


def _new_repairs(conn: sqlite3.Connection, devices: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The self-repairs in these device objects not recorded yet (one per ``at``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, obj in devices.items():
        rep = obj.get("repair")
        if not isinstance(rep, dict) or not rep.get("at"):
            continue
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"repair:{name}",)).fetchone()
        if row is None or row["value"] != rep["at"]:
            out[name] = rep
    return out


def _record_repair(conn: sqlite3.Connection, device: str, rep: dict[str, Any]) -> None:
    _bump(conn, f"repairs:{device}")
    if rep.get("cleared") is True:
        _bump(conn, f"repairs_cleared:{device}")
    conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (f"repair:{device}", str(rep["at"])))


# -- writing -------------------------------------------------------------------
def record_selftest(config: Config, report: Report) -> bool:
    """Keep ``report`` in the store; False (and a log line) when it cannot be written."""
    state_dir = config.agent.state_dir
    for attempt in range(2):  # a store found damaged is moved aside and the record goes into a new one
        try:
            with connect(state_dir, create=True) as conn:
                assert conn is not None
                conn.execute("BEGIN IMMEDIATE")
                try:
                    _insert(conn, report)
                    _prune(conn, config.history.keep_runs, config.history.keep_days)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            return True
        except (sqlite3.Error, OSError) as e:
            if attempt == 0 and isinstance(e, sqlite3.Error) and set_aside_if_damaged(state_dir, e):
                continue
            hint = "" if os.access(state_dir, os.W_OK) else " (this user cannot write the state dir: run it with sudo)"
            log.warning("cannot keep a record of this self-test in %s: %s%s", db_path(state_dir), e, hint)
            return False
    return False


def _insert(conn: sqlite3.Connection, report: Report) -> None:
    ts = report.started_at.timestamp()
    at = report.started_at.isoformat(timespec="seconds")
    cur = conn.execute(
        "INSERT INTO runs (started_at, ts, terminal_id, technician, level, status, duration_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, ts, report.terminal_id, report.technician or "", report.level.label, report.status.label,
         report.duration_ms))
    run_id = cur.lastrowid
    per_device: dict[str, dict[str, Any]] = {}
    for seq, c in enumerate(report.checks):
        r = c.result
        conn.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (run_id, seq, c.device, c.driver, c.name, c.level.label, r.status.label, r.code,
                      r.message, json.dumps(r.measurements, ensure_ascii=False, default=str), r.duration_ms))
        dev = per_device.setdefault(c.device, {"worst": Status.OK, "codes": {}, "flags": set(), "driver": c.driver})
        dev["worst"] = worst((dev["worst"], r.status))
        if r.repair is not None and r.repair.at:
            for device, rep in _new_repairs(conn, {c.device: {"repair": r.repair.json()}}).items():
                _record_repair(conn, device, rep)
        dev["flags"] |= _flags(r.code, r.fields)
        if r.status != Status.OK:
            prev = dev["codes"].get(r.code)
            if prev is None or r.status.severity > prev[0].severity:
                dev["codes"][r.code] = (r.status, r.message)
    _bump(conn, "selftests_run")
    for device, dev in per_device.items():
        if dev["worst"] >= Status.FAIL:
            _bump(conn, f"failures:{device}")
        _update_flags(conn, device, dev["flags"])
        _update_faults(conn, run_id or 0, device, dev["driver"], dev["codes"], ts, at)


def _update_faults(conn: sqlite3.Connection, run_id: int, device: str, driver: str,
                   codes: dict[str, tuple[Status, str]], ts: float, at: str) -> None:
    open_faults = {r["code"]: r for r in conn.execute(
        "SELECT id, code, status FROM faults WHERE device = ? AND cleared_ts IS NULL", (device,))}
    for code, row in open_faults.items():
        if code not in codes:
            conn.execute("UPDATE faults SET cleared_at = ?, cleared_ts = ?, cleared_run = ? WHERE id = ?",
                         (at, ts, run_id, row["id"]))
    for code, (status, message) in codes.items():
        row = open_faults.get(code)
        if row is None:
            conn.execute("INSERT INTO faults (device, driver, code, status, message, first_at, first_ts, first_run,"
                         " last_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (device, driver, code, status.label, message, at, ts, run_id, ts))
        else:
            graded = worst((status, Status.parse(row["status"])))
            conn.execute("UPDATE faults SET status = ?, message = ?, last_ts = ? WHERE id = ?",
                         (graded.label, message, ts, row["id"]))


def _prune(conn: sqlite3.Connection, keep_runs: int, keep_days: int) -> None:
    """Keep the last ``keep_runs`` runs of the last ``keep_days`` days (0: no age limit); the latest always."""
    cutoff = time.time() - keep_days * 86400.0 if keep_days > 0 else 0.0
    conn.execute("DELETE FROM runs WHERE id != (SELECT MAX(id) FROM runs)"
                 " AND (ts < ? OR id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?))",
                 (cutoff, max(1, keep_runs)))
    conn.execute("DELETE FROM results WHERE run_id NOT IN (SELECT id FROM runs)")
    oldest = conn.execute("SELECT MIN(id) FROM runs").fetchone()[0] or 0
    conn.execute("DELETE FROM faults WHERE cleared_ts IS NOT NULL AND (cleared_ts < ? OR cleared_run < ?)",
                 (cutoff, oldest))


def record_status(state_dir: str, devices: dict[str, dict[str, Any]]) -> None:
    """Count paper-end / on-battery events seen between self-tests (a heartbeat's ``devices``).

    Writes only when a device's flags change, so calling it for every heartbeat is cheap.
    """
    try:
        with connect(state_dir, create=True) as conn:
            assert conn is not None
            current = {(r["device"], r["flag"]) for r in conn.execute("SELECT device, flag FROM flags")}
            wanted = {name: _flags(str(obj.get("code", "")), obj) for name, obj in devices.items()}
            repaired = _new_repairs(conn, devices)
            if not repaired and all({f for d, f in current if d == name} == flags for name, flags in wanted.items()):
                return
            conn.execute("BEGIN IMMEDIATE")
            for name, flags in wanted.items():
                _update_flags(conn, name, flags)
            for name, rep in repaired.items():
                _record_repair(conn, name, rep)
            conn.execute("COMMIT")
    except (sqlite3.Error, OSError) as e:
        if isinstance(e, sqlite3.Error) and set_aside_if_damaged(state_dir, e):
            return  # counted again from the next change, in a new store
        warn_once(log, "history.flags", "cannot update the event counters in %s: %s", db_path(state_dir), e)


# -- reading -------------------------------------------------------------------
def _read(state_dir: str) -> contextlib.AbstractContextManager[sqlite3.Connection | None]:
    return connect(state_dir, create=False)


def _safe(default: Callable[[], Any]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: a reader returns ``default()`` (and logs) when the store is unreadable."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kw: P.kwargs) -> R:
            try:
                return fn(*args, **kw)
            except sqlite3.Error as e:
                state_dir = args[0] if args and isinstance(args[0], str) else None
                if state_dir is None or not set_aside_if_damaged(state_dir, e):
                    warn_once(log, "history.read", "cannot read the self-test history: %s", e)
                return cast(R, default())

        return inner

    return wrap


def _get(row: sqlite3.Row, key: str, default: Any) -> Any:
    """A column a store from an earlier version may lack (migrated on its next write)."""
    return row[key] if key in row.keys() else default  # noqa: SIM118 (Row has no __contains__)


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "started_at": row["started_at"], "technician": row["technician"],
            "level": row["level"], "status": row["status"], "duration_ms": row["duration_ms"]}


def _result_dicts(conn: sqlite3.Connection, run_id: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY seq", (run_id,))
    return [{"device": r["device"], "driver": r["driver"], "name": r["check_name"], "level": r["level"],
             "status": r["status"], "code": r["code"], "message": r["message"],
             "measurements": json.loads(r["measurements"]), "duration_ms": r["duration_ms"]} for r in rows]


@_safe(lambda: None)
def last_selftest(state_dir: str) -> dict[str, Any] | None:
    """The latest run for the heartbeat: when, level, status, technician, per-check results."""
    with _read(state_dir) as conn:
        if conn is None:
            return None
        row = conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        checks = [{k: c[k] for k in ("device", "name", "level", "status", "code", "message")}
                  for c in _result_dicts(conn, row["id"])]
        return {"when": row["started_at"], "level": row["level"], "status": row["status"],
                "technician": row["technician"], "duration_ms": row["duration_ms"], "checks": checks}


def _empty_counters() -> dict[str, Any]:
    return {"selftests_run": 0, "failures": {}, "paper_end_events": 0, "ups_on_battery_events": 0,
            "since": None}


@_safe(_empty_counters)
def counters(state_dir: str) -> dict[str, Any]:
    """Counts since install: self-tests run, failures per device, paper-end and on-battery events."""
    out = _empty_counters()
    with _read(state_dir) as conn:
        if conn is None:
            return out
        for row in conn.execute("SELECT name, value FROM counters ORDER BY name"):
            name, value = row["name"], int(row["value"])
            if name.startswith("failures:"):
                out["failures"][name.removeprefix("failures:")] = value
            elif name in out:
                out[name] = value
        since = conn.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()
        out["since"] = since["value"] if since else None
    return out


@_safe(dict)
def repairs(state_dir: str) -> dict[str, dict[str, int]]:
    """Self-repairs since install, per device: ``tried`` (attempts) and ``cleared``."""
    out: dict[str, dict[str, int]] = {}
    with _read(state_dir) as conn:
        if conn is None:
            return out
        for row in conn.execute("SELECT name, value FROM counters WHERE name LIKE 'repairs%' ORDER BY name"):
            kind, _sep, device = str(row["name"]).partition(":")
            key = {"repairs": "tried", "repairs_cleared": "cleared"}.get(kind)
            if key and device:
                out.setdefault(device, {"tried": 0, "cleared": 0})[key] = int(row["value"])
    return out


@_safe(list)
def runs(state_dir: str, since_ts: float | None = None, *, with_results: bool = False) -> list[dict[str, Any]]:
    """Kept runs, oldest first; each with its non-ok results (or all results)."""
    with _read(state_dir) as conn:
        if conn is None:
            return []
        rows = conn.execute("SELECT * FROM runs WHERE ts >= ? ORDER BY id", (since_ts or 0.0,)).fetchall()
        out = []
        for row in rows:
            run = _run_dict(row)
            results = _result_dicts(conn, row["id"])
            run["checks"] = results if with_results else [r for r in results if r["status"] != "ok"]
            run["counts"] = {s.label: sum(1 for r in results if r["status"] == s.label) for s in Status}
            out.append(run)
        return out


@_safe(list)
def faults(state_dir: str, since_ts: float | None = None) -> list[dict[str, Any]]:
    """Fault timelines: per device and code, when it first appeared and when it cleared (or None).

    With ``since_ts``: the faults open at any moment since then.
    """
    with _read(state_dir) as conn:
        if conn is None:
            return []
        rows = conn.execute("SELECT * FROM faults WHERE cleared_ts IS NULL OR cleared_ts >= ? OR first_ts >= ?"
                            " ORDER BY device, first_ts, id", (since_ts or 0.0, since_ts or 0.0)).fetchall()
        return [{"device": r["device"], "driver": _get(r, "driver", ""), "code": r["code"], "status": r["status"],
                 "message": r["message"], "first_seen": r["first_at"], "first_run": r["first_run"],
                 "cleared": r["cleared_at"], "cleared_run": r["cleared_run"]} for r in rows]


@_safe(lambda: None)
def previous_visit(state_dir: str, before_run: int | None = None) -> dict[str, Any] | None:
    """The latest run a person started (technician set) before run ``before_run`` (default: the latest)."""
    with _read(state_dir) as conn:
        if conn is None:
            return None
        if before_run is None:
            latest = conn.execute("SELECT MAX(id) FROM runs").fetchone()[0]
            before_run = (latest or 0)
        row = conn.execute("SELECT * FROM runs WHERE id < ? AND technician != '' ORDER BY id DESC LIMIT 1",
                           (before_run,)).fetchone()
        return _run_dict(row) | {"ts": row["ts"]} if row else None


@_safe(list)
def cleared_since(state_dir: str, since_ts: float) -> list[dict[str, Any]]:
    """Faults that cleared after ``since_ts`` (e.g. since the last visit), oldest first."""
    with _read(state_dir) as conn:
        if conn is None:
            return []
        rows = conn.execute("SELECT * FROM faults WHERE cleared_ts > ? ORDER BY cleared_ts, device",
                            (since_ts,)).fetchall()
        return [{"device": r["device"], "driver": _get(r, "driver", ""), "code": r["code"], "status": r["status"],
                 "message": r["message"], "first_seen": r["first_at"], "cleared": r["cleared_at"]} for r in rows]
