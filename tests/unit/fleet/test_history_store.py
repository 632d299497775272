"""The history store (SQLite in the state dir): runs, fault timelines, counters, bounds."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from posagent.config import Config, load_config
from posagent.core.base import Level, Result
from posagent.fleet import history
from posagent.selftest.runner import CheckRecord, Report


def config(tmp_path: Path, extra: str = "") -> Config:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nterminal_id = "T-1"\nstate_dir = "{tmp_path / "state"}"\n{extra}', encoding="utf-8")
    return load_config(str(cfg))


def report(results: list[tuple[str, Result]], when: dt.datetime | None = None, who: str = "li") -> Report:
    r = Report("T-1", Level.INTERNAL, when or dt.datetime.now().astimezone(), duration_ms=5.0, technician=who)
    for device, result in results:
        r.checks.append(CheckRecord(device, "drv", "status", Level.INTERNAL, result))
    return r


def ok(device: str = "acquirer") -> tuple[str, Result]:
    return device, Result.ok("HOST_OK", "fine")


def http_error(device: str = "acquirer") -> tuple[str, Result]:
    return device, Result.fail("HOST_HTTP_ERROR", "answered HTTP 503")


def test_readers_on_a_missing_store_create_nothing(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert history.last_selftest(state) is None
    assert history.runs(state) == [] and history.faults(state) == []
    assert history.counters(state) == {"selftests_run": 0, "failures": {}, "paper_end_events": 0,
                                       "ups_on_battery_events": 0, "since": None}
    assert not (tmp_path / "state").exists()


def test_fault_appears_clears_and_reappears(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    state = cfg.agent.state_dir
    t0 = dt.datetime.now().astimezone() - dt.timedelta(hours=3)
    for i, res in enumerate([http_error(), http_error(), ok(), http_error()]):
        assert history.record_selftest(cfg, report([res, ("system", Result.ok("SYSTEM_OK", "x"))],
                                                   t0 + dt.timedelta(hours=i)))
    faults = history.faults(state)
    assert [(f["code"], f["first_run"], f["cleared_run"]) for f in faults] == [
        ("HOST_HTTP_ERROR", 1, 3), ("HOST_HTTP_ERROR", 4, None)]
    assert faults[0]["first_seen"] == t0.isoformat(timespec="seconds")
    assert faults[0]["cleared"] == (t0 + dt.timedelta(hours=2)).isoformat(timespec="seconds")
    # --since: only what was open since then
    assert [f["first_run"] for f in history.faults(state, (t0 + dt.timedelta(hours=2, minutes=30)).timestamp())] \
        == [4]
    assert len(history.runs(state, (t0 + dt.timedelta(minutes=90)).timestamp())) == 2


def test_a_device_left_out_of_a_run_keeps_its_faults_open(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    history.record_selftest(cfg, report([http_error(), ("ups", Result.warn("UPS_ON_BATTERY", "on battery"))]))
    history.record_selftest(cfg, report([("ups", Result.ok("UPS_OK", "on mains"))]))  # --only ups
    open_faults = {(f["device"], f["code"]) for f in history.faults(cfg.agent.state_dir) if f["cleared"] is None}
    assert open_faults == {("acquirer", "HOST_HTTP_ERROR")}


def test_counters_since_install(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    paper_end = ("receipt", Result.fail("PAPER_END", "paper end", fields={"paper": "end"}))
    paper_ok = ("receipt", Result.ok("PRINTER_OK", "ready", fields={"paper": "ok"}))
    silent = ("ups", Result.unknown("UPS_NO_RESPONSE", "silent"))
    battery = ("ups", Result.warn("UPS_ON_BATTERY", "on battery", fields={"on_battery": True}))
    for results in ([paper_end, silent], [paper_end, battery], [paper_ok, battery], [paper_end]):
        history.record_selftest(cfg, report(results))
    c = history.counters(cfg.agent.state_dir)
    assert c["selftests_run"] == 4
    assert c["failures"] == {"receipt": 3, "ups": 1}  # fail and unknown count; warn does not
    assert c["paper_end_events"] == 2  # end, (still end), ok, end again
    assert c["ups_on_battery_events"] == 1
    assert c["since"] is not None


def test_heartbeats_count_events_between_self_tests(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    state = cfg.agent.state_dir
    history.record_status(state, {"receipt": {"driver": "escpos", "status": "ok", "code": "PRINTER_OK",
                                              "paper": "ok"}})
    path = Path(history.db_path(state))
    for paper in ("end", "end", "near_end", "end"):
        history.record_status(state, {"receipt": {"status": "fail", "code": "X", "paper": paper},
                                      "ups": {"status": "warn", "code": "UPS_ON_BATTERY", "on_battery": True}})
    assert history.counters(state)["paper_end_events"] == 2
    assert history.counters(state)["ups_on_battery_events"] == 1
    mtime = path.stat().st_mtime_ns
    history.record_status(state, {"receipt": {"status": "fail", "code": "X", "paper": "end"},
                                  "ups": {"status": "warn", "code": "UPS_ON_BATTERY", "on_battery": True}})
    assert path.stat().st_mtime_ns == mtime  # nothing changed: nothing written


def test_the_store_keeps_the_last_n_runs(tmp_path: Path) -> None:
    cfg = config(tmp_path, "[history]\nkeep_runs = 3\n")
    state = cfg.agent.state_dir
    for i in range(6):
        history.record_selftest(cfg, report([http_error() if i % 2 else ok()]))
    runs = history.runs(state)
    assert [r["id"] for r in runs] == [4, 5, 6]
    with sqlite3.connect(history.db_path(state)) as conn:
        assert conn.execute("SELECT COUNT(*), MIN(run_id) FROM results").fetchone() == (3, 4)
        # cleared faults older than the oldest kept run are gone; the open one stays
        rows = conn.execute("SELECT first_run, cleared_run FROM faults ORDER BY id").fetchall()
    assert rows == [(4, 5), (6, None)]
    assert history.counters(state)["selftests_run"] == 6  # counters are never trimmed


def test_the_store_keeps_the_last_m_days_but_always_the_latest_run(tmp_path: Path) -> None:
    cfg = config(tmp_path, "[history]\nkeep_days = 30\n")
    state = cfg.agent.state_dir
    old = dt.datetime.now().astimezone() - dt.timedelta(days=40)
    history.record_selftest(cfg, report([http_error()], old))
    assert len(history.runs(state)) == 1  # the latest, even if old
    history.record_selftest(cfg, report([ok()], old + dt.timedelta(days=1)))
    history.record_selftest(cfg, report([ok()]))
    assert [r["id"] for r in history.runs(state)] == [3]
    assert history.faults(state) == []  # cleared 39 days ago: trimmed


def test_last_selftest_for_the_heartbeat(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    when = dt.datetime(2026, 5, 9, 3, 0, 12, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    history.record_selftest(cfg, report([http_error(), ok("system")], when, who=""))
    last = history.last_selftest(cfg.agent.state_dir)
    assert last == {"when": "2026-05-09T03:00:12+08:00", "level": "internal", "status": "fail", "technician": "",
                    "duration_ms": 5.0,
                    "checks": [{"device": "acquirer", "name": "status", "level": "internal", "status": "fail",
                                "code": "HOST_HTTP_ERROR", "message": "answered HTTP 503"},
                               {"device": "system", "name": "status", "level": "internal", "status": "ok",
                                "code": "HOST_OK", "message": "fine"}]}


def test_a_broken_store_never_stops_a_self_test(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged store is moved aside and a new one started: the self-test is recorded."""
    cfg = config(tmp_path)
    state = Path(cfg.agent.state_dir)
    state.mkdir()
    Path(history.db_path(str(state))).write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="posagent.fleet"):
        assert history.record_selftest(cfg, report([ok()])) is True
        assert history.counters(str(state))["selftests_run"] == 1
    assert any("history store was damaged" in r.getMessage() for r in caplog.records)
    assert list(state.glob("history.sqlite3.corrupt-*"))


def test_an_unusable_state_dir_is_reported_once_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = config(tmp_path)
    cfg = Config(**{**cfg.__dict__, "agent": type(cfg.agent)(**{**cfg.agent.__dict__,
                                                                "state_dir": str(blocker / "state")})})
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="posagent.fleet"):
        assert history.record_selftest(cfg, report([ok()])) is False
    assert time.monotonic() - t0 < 5
    said = [r.getMessage() for r in caplog.records if "cannot keep a record" in r.getMessage()]
    assert len(said) == 1, said


def test_a_store_from_before_the_driver_column_is_read_and_migrated(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    state = Path(cfg.agent.state_dir)
    state.mkdir()
    with sqlite3.connect(history.db_path(str(state))) as conn:
        conn.execute("CREATE TABLE faults (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL,"
                     " code TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL, first_at TEXT NOT NULL,"
                     " first_ts REAL NOT NULL, first_run INTEGER NOT NULL, last_ts REAL NOT NULL, cleared_at TEXT,"
                     " cleared_ts REAL, cleared_run INTEGER)")
        conn.execute("INSERT INTO faults (device, code, status, message, first_at, first_ts, first_run, last_ts)"
                     " VALUES ('acquirer', 'HOST_HTTP_ERROR', 'fail', 'm', '2026-05-01T09:00:00+08:00', 1, 1, 1)")
    assert history.faults(str(state))[0]["driver"] == ""
    assert history.record_selftest(cfg, report([ok()]))
    (fault,) = history.faults(str(state))
    assert fault["cleared_run"] == 1 and fault["driver"] == ""
    history.record_selftest(cfg, report([http_error()]))
    assert history.faults(str(state))[-1]["driver"] == "drv"
