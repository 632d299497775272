"""The outbox's SQLite file: where it lives, its schema and settings, and the figures read from it.

One file, ``outbox.db`` in the state dir, in WAL mode with ``synchronous=FULL`` (a committed
report survives a power cut), incremental auto-vacuum, a WAL truncated after checkpoints.
``connect()`` opens (or creates) it for the writer, ``posagent.fleet.outbox.Outbox``, which
holds the queue operations; ``read_stats()`` gives the figures every message carries.

``peek()`` reads the figures without writing anything (for ``posagent heartbeat --json``).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from dataclasses import dataclass, field

KINDS = ("heartbeat", "event", "selftest")
DB_NAME = "outbox.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    message_id TEXT    NOT NULL UNIQUE,
    created    REAL    NOT NULL,
    bytes      INTEGER NOT NULL,
    body       BLOB    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS rejected (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    message_id TEXT NOT NULL,
    http_status INTEGER,
    reason     TEXT NOT NULL,
    at         REAL NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox cannot be opened or written (disk, permissions)."""


@dataclass(frozen=True)
class Stats:
    seq: int  # the last seq allocated
    backlog: int  # messages waiting for delivery
    backlog_bytes: int
    dropped: dict[str, int] = field(default_factory=dict)  # per kind, since the outbox was created
    rejected: int = 0
    last_success_at: str | None = None
    oldest_created: float | None = None
    refused: int = 0  # attempts the upstream refused as a whole (401/403/404...): reports kept
    newest_created: float | None = None  # with oldest_created: the span a backlog covers (its pace)
    unavailable: str | None = None  # why reports are kept in memory, not in the file (outbox_safe)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True)
class Pending:
    seq: int
    kind: str
    message_id: str
    body: bytes
    created: float
    attempts: int


def db_path(state_dir: str) -> str:
    return os.path.join(state_dir, DB_NAME)


def connect(state_dir: str, path: str | None = None) -> sqlite3.Connection:
    """The writer's connection to the outbox of ``state_dir`` (or the file ``path`` in it),
    created (mode 640) if needed."""
    path = path or db_path(state_dir)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        os.close(fd)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        _setup(db)
    except (OSError, sqlite3.Error) as e:
        raise OutboxError(f"cannot open the outbox {path}: {e}") from None
    return db


def _setup(db: sqlite3.Connection) -> None:
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0 and not _has_tables(db):
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only effective before the first table
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA journal_size_limit = 1048576")  # truncate the WAL to 1 MB after checkpoints
    db.execute("PRAGMA wal_autocheckpoint = 256")
    db.execute("PRAGMA busy_timeout = 10000")
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    for name, kind in (("boot", "TEXT"), ("up", "REAL")):  # added in 0.x: the boot-relative age
        if name not in columns:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")


def _has_tables(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0


def meta_int(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def set_meta(db: sqlite3.Connection, key: str, value: object) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def read_stats(db: sqlite3.Connection, seq: int) -> Stats:
    """The outbox figures, read on ``db`` (inside the caller's transaction or read-only)."""
    n, size, oldest, newest = db.execute(
        "SELECT count(*), coalesce(sum(bytes), 0), min(created), max(created) FROM outbox").fetchone()
    last = db.execute("SELECT value FROM meta WHERE key = 'last_success_at'").fetchone()
    return Stats(seq=seq, backlog=n, backlog_bytes=size,
                 dropped={k: meta_int(db, f"dropped_{k}") for k in KINDS},
                 rejected=meta_int(db, "rejected"), last_success_at=last[0] if last else None,
                 oldest_created=oldest, refused=meta_int(db, "refused"), newest_created=newest)


def empty_stats() -> Stats:
    return Stats(seq=0, backlog=0, backlog_bytes=0, dropped=dict.fromkeys(KINDS, 0))


def peek(state_dir: str) -> Stats:
    """The outbox figures, read without writing anything (no seq allocated, no file created).

    No outbox yet: empty figures. Raises OutboxError when it exists but cannot be read.
    A database nobody has open (no ``-wal``/``-shm`` next to it) is read as immutable, so
    not even those files appear (run as root, they would be root's and lock the service
    out); otherwise a read-only connection shares the writer's WAL index.
    """
    path = db_path(state_dir)
    try:
        os.stat(path)
    except FileNotFoundError:
        return empty_stats()
    except OSError as e:  # a state dir this user may not enter: not "no outbox"
        hint = " (the state dir is the service's: run it with sudo)" if isinstance(e, PermissionError) else ""
        raise OutboxError(f"cannot read the outbox {path}: {e.strerror or e}{hint}") from None
    live = any(os.path.exists(path + suffix) for suffix in ("-wal", "-shm"))
    uri = f"file:{urllib.parse.quote(path)}?{'mode=ro' if live else 'immutable=1'}"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=2.0)
        try:
            return read_stats(db, meta_int(db, "seq"))
        finally:
            db.close()
    except sqlite3.Error as e:
        raise OutboxError(f"cannot read the outbox {path}: {e}") from None


def peek_next_seq(state_dir: str) -> int:
    """The seq the next message would get, read without writing (for previews)."""
    try:
        return peek(state_dir).seq + 1
    except OutboxError:
        return 1
