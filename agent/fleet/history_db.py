"""The self-test history's SQLite file: where it lives, its schema, and how it is opened.

One file, ``history.sqlite3`` in the state dir, in WAL mode. ``connect(create=True)``
creates it and brings a store written by an earlier version up to this schema (additive
migrations only); run as root in the service's state dir, it leaves the files to the dir's
owner. ``connect(create=False)`` never creates it: it yields None when there is no store.
What is recorded and read is ``posagent.fleet.history``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
import time
from collections.abc import Iterator

from posagent.core.statefile import give_to_dir_owner
from posagent.fleet.outbox_recover import move_aside

log = logging.getLogger(__name__)

FILENAME = "history.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, ts REAL NOT NULL,
    terminal_id TEXT NOT NULL, technician TEXT NOT NULL, level TEXT NOT NULL,
    status TEXT NOT NULL, duration_ms REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL, seq INTEGER NOT NULL, device TEXT NOT NULL, driver TEXT NOT NULL,
    check_name TEXT NOT NULL, level TEXT NOT NULL, status TEXT NOT NULL, code TEXT NOT NULL,
    message TEXT NOT NULL, measurements TEXT NOT NULL, duration_ms REAL NOT NULL);
CREATE INDEX IF NOT EXISTS results_by_run ON results (run_id);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, code TEXT NOT NULL,
    status TEXT NOT NULL, message TEXT NOT NULL, driver TEXT NOT NULL DEFAULT '',
    first_at TEXT NOT NULL, first_ts REAL NOT NULL, first_run INTEGER NOT NULL,
    last_ts REAL NOT NULL, cleared_at TEXT, cleared_ts REAL, cleared_run INTEGER);
CREATE INDEX IF NOT EXISTS faults_open ON faults (device, cleared_ts);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS flags (device TEXT NOT NULL, flag TEXT NOT NULL, PRIMARY KEY (device, flag));
"""


def db_path(state_dir: str) -> str:
    return os.path.join(state_dir, FILENAME)


@contextlib.contextmanager
def connect(state_dir: str, *, create: bool) -> Iterator[sqlite3.Connection | None]:
    path = db_path(state_dir)
    if not create and not os.path.exists(path):
        yield None
        return
    if create:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        if create:
            try:
                _prepare(conn, state_dir)
            except sqlite3.DatabaseError as e:  # a damaged store (not a busy one): start a new one
                if not damaged(e):  # busy, full, read-only: not the file's fault; nothing is moved
                    raise
                conn.close()
                aside = move_aside(path)
                log.error("the history store was damaged (%s): moved aside as %s; a new one is started", e, aside)
                conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
                conn.row_factory = sqlite3.Row
                _prepare(conn, state_dir)
        yield conn
    finally:
        conn.close()


#: SQLite's result codes for a file that is not a sound database (SQLITE_CORRUPT, SQLITE_NOTADB).
_DAMAGE_CODES = (11, 26)


def damaged(e: sqlite3.Error) -> bool:
    """Whether ``e`` says the file itself is damaged, as opposed to a full disk, a read-only
    filesystem, a lock or a permission problem (those must never move a store aside)."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGE_CODES
    text = str(e).lower()
    return "malformed" in text or "not a database" in text


def set_aside_if_damaged(state_dir: str, e: sqlite3.Error) -> bool:
    """When ``e`` says the store's file is damaged (met while reading or writing, not only
    at open), move it aside so the next write starts a new one; True if it was moved."""
    if not damaged(e):
        return False
    path = db_path(state_dir)
    try:
        aside = move_aside(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        log.error("the history store is damaged (%s) and cannot be moved aside: %s", e, err)
        return False
    log.error("the history store was damaged (%s): moved aside as %s; a new one is started", e, aside)
    return True


def _prepare(conn: sqlite3.Connection, state_dir: str) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    _migrate(conn)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (_iso(time.time()),))
    _match_owner(state_dir)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store written by an earlier version up to this schema (additive only)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(faults)")}
    if "driver" not in columns:
        conn.execute("ALTER TABLE faults ADD COLUMN driver TEXT NOT NULL DEFAULT ''")


def _match_owner(state_dir: str) -> None:
    """Run as root (sudo posagent selftest) in the service's state dir: leave the files to its owner."""
    give_to_dir_owner((db_path(state_dir) + suffix for suffix in ("", "-wal", "-shm")), state_dir)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
