"""A damaged outbox is survived: checked at open, moved aside, what is readable salvaged.

A power cut on cheap flash can leave ``outbox.db`` with pages of garbage; SQLite then
answers "database disk image is malformed" to every write, and every report after it
would be lost. At open the outbox is checked (``PRAGMA quick_check``); a file that fails,
or that SQLite cannot open as a database, is moved aside as ``outbox.db.corrupt-<time>``
(with its ``-wal``/``-shm``), every message that can still be read from it is copied into
a fresh outbox, and the open goes on. What happened is kept in ``Recovery`` for the
daemon to report (an event, STATE_STORE_RECOVERED).

``seq`` must never go back, or the receiver would take new messages for old ones: its
high-water mark is also written, atomically, to ``outbox.seq`` beside the database after
every commit, and a fresh outbox starts above it. A gap is a counted loss; a reused
number never happens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from posagent.core.statefile import write_atomic

log = logging.getLogger(__name__)

SEQ_FILE = "outbox.seq"
_COLUMNS = "seq, kind, message_id, created, bytes, body, attempts, last_error"


@dataclass(frozen=True)
class Recovery:
    """A damaged outbox that was replaced: where the damaged file is kept, why, how many
    messages were saved from it, and the seq the new outbox goes on from."""

    aside: str
    reason: str
    salvaged: int
    seq_mark: int


def seq_mark(state_dir: str) -> int:
    """The highest seq ever handed out, as written beside the database (0 when unknown)."""
    try:
        with open(os.path.join(state_dir, SEQ_FILE), encoding="ascii") as fh:
            text = fh.read(32).strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def write_seq_mark(state_dir: str, seq: int) -> None:
    """Keep the high-water mark outside the database. Never raises (the database has it too)."""
    try:
        write_atomic(os.path.join(state_dir, SEQ_FILE), f"{seq}\n", make_dir=False)
    except OSError as e:
        log.debug("seq mark not written: %s", e)


def damage(path: str) -> str | None:
    """Why the database at ``path`` cannot be trusted, or None when quick_check passes."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    verdict = "; ".join(str(r[0]) for r in rows[:3])
    return None if verdict == "ok" else verdict


#: The rebuilt outbox before it takes the damaged one's place (``finish_swap``).
NEW_SUFFIX = ".new"


def finish_swap(path: str) -> None:
    """Complete a replacement a kill cut short. The rebuilt outbox is written in full as
    ``<path>.new`` before the damaged file is moved aside, and takes its place after: a
    ``.new`` with no outbox beside it is put in place; a ``.new`` beside the outbox is a
    rebuild that did not finish (the damaged file is still there, salvaged again)."""
    new = path + NEW_SUFFIX
    if not os.path.exists(new):
        return
    if os.path.exists(path):
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(new + suffix)
    else:
        os.replace(new, path)
        log.warning("the rebuilt outbox is put in place (the last start was cut short while replacing it)")


def move_aside(path: str, now: dt.datetime | None = None) -> str:
    """Rename the damaged database (and its -wal/-shm) out of the way; the new name."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%dT%H%M%S")
    aside = f"{path}.corrupt-{stamp}"
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(path + suffix, aside + suffix)
    return aside


def salvage(aside: str) -> list[tuple[Any, ...]]:
    """The outbox rows that can still be read from the damaged file (in place, with its
    -wal, or moved aside), oldest first; rows
    past the first unreadable page are lost (SQLite stops a scan at the damage)."""
    rows: list[tuple[Any, ...]] = []
    try:
        db = sqlite3.connect(f"file:{aside}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return rows
    try:
        cursor = db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq")
        for _ in range(10_000_000):  # bounded by the table; stops at the first damaged page
            row = cursor.fetchone()
            if row is None:
                break
            rows.append(row)
    except sqlite3.Error as e:
        log.warning("outbox salvage stopped after %d messages: %s", len(rows), e)
    finally:
        db.close()
    return rows


def restore(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Put salvaged rows into the fresh outbox ``db`` (duplicates of a message id are skipped)."""
    placeholders = ", ".join("?" * len(_COLUMNS.split(",")))
    db.executemany(f"INSERT OR IGNORE INTO outbox ({_COLUMNS}) VALUES ({placeholders})", rows)


#: The state stores whose damaged files are kept aside (``move_aside``), by file name.
STORES = {"outbox.db": "outbox", "history.sqlite3": "history"}


def recovered_stores(state_dir: str, since: float) -> list[dict[str, str]]:
    """The damaged state files kept aside in ``state_dir`` since ``since`` (epoch seconds),
    newest first: which store, when it was replaced, and the name it is kept under (what
    ``posagent status`` tells a technician)."""
    out: list[tuple[float, dict[str, str]]] = []
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    for name in names:
        base, sep, _stamp = name.partition(".corrupt-")
        if not sep or base not in STORES or name.endswith(("-wal", "-shm")):
            continue
        try:
            at = os.stat(os.path.join(state_dir, name)).st_mtime
        except OSError:
            continue
        if at >= since:
            stamp = dt.datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")
            out.append((at, {"store": STORES[base], "at": stamp, "kept_as": name}))
    return [d for _at, d in sorted(out, key=lambda x: x[0], reverse=True)][:10]
