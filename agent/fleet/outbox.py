"""The durable outbox: every report is committed to SQLite before it is sent.

The queue operations on the outbox file (``posagent.fleet.outbox_db``: schema, settings,
figures): once ``commit()`` returns, the report survives a power cut. A report leaves the
outbox only after a 2xx (``ack``) or a definite refusal of that one message (``reject``,
recorded).

``seq`` is one counter per terminal across all kinds and restarts; it is allocated in the
same transaction that inserts the message, so a gap at the receiver means a loss, or a
drop counted here. The spool is bounded by size and age; under pressure, superseded
heartbeats go first, then events, then the newest heartbeat, self-test reports last.
Every drop is counted per kind, persisted, and reported in the next messages.

Delivery order (``next_pending``, ``next_batch``): the newest heartbeat once (the dashboard
wants the present), then everything else oldest first, heartbeats included; a backlog in
batches, removed together by ``ack_many`` after the one 2xx that covered them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from posagent.core.version import BUILD_YEAR
from posagent.fleet.outbox_db import (
    KINDS,
    OutboxError,
    Pending,
    Stats,
    connect,
    db_path,
    meta_int,
    read_stats,
    set_meta,
)
from posagent.fleet.outbox_recover import (
    NEW_SUFFIX,
    Recovery,
    damage,
    finish_swap,
    move_aside,
    restore,
    salvage,
    seq_mark,
    write_seq_mark,
)
from posagent.fleet.schedule import read_boot_id

log = logging.getLogger(__name__)
#: The types of the outbox's methods come with it (``from posagent.fleet.outbox import Outbox, Stats``).
__all__ = ["DROP_LOG_INTERVAL", "REJECTED_KEEP", "Outbox", "OutboxError", "Pending", "Stats", "Store"]

#: Drops are logged at once, then summed up at most this often (seconds).
DROP_LOG_INTERVAL = 3600.0
#: Rejected messages kept for diagnosis (metadata only).
REJECTED_KEEP = 100

# Drop order under size pressure: superseded heartbeats, events, the newest heartbeat, self-tests.
_DROP_ORDER = """
SELECT seq, kind, bytes FROM outbox
ORDER BY CASE WHEN kind = 'heartbeat' AND seq < :newest THEN 0
              WHEN kind = 'event' THEN 1
              WHEN kind = 'heartbeat' THEN 2
              ELSE 3 END, seq
"""


#: A wall-clock time before this (1 January of the build year) is a clock that is wrong
#: (a dead RTC battery, the year 2000 until NTP steps it).
CLOCK_FLOOR = dt.datetime(BUILD_YEAR, 1, 1, tzinfo=dt.UTC).timestamp()

# The age rule reads the clock that cannot step: a report of this boot is as old as the
# boot-time clock (CLOCK_BOOTTIME, counting suspend) says. One of an earlier boot is judged
# by the wall clock, and only when both its stamp and now are past CLOCK_FLOOR: a terminal
# that booted in the year 2000 and was put right by NTP does not drop what it made meanwhile.
_TOO_OLD = ("(CASE WHEN boot IS NOT NULL AND boot = :boot AND up IS NOT NULL THEN up < :up_cut "
            "ELSE :sane AND created >= :floor AND created < :cut END)")


def boot_clock() -> tuple[str | None, float]:
    """(this boot's id, seconds since it on CLOCK_BOOTTIME)."""
    return read_boot_id(), time.clock_gettime(time.CLOCK_BOOTTIME)


class Store(Protocol):
    """What the daemon's parts need of an outbox: ``Outbox`` (the file) and
    ``outbox_safe.SafeOutbox`` (the file, or memory while the file cannot be used)."""

    recovered: Recovery | None

    def commit(self, kind: str, finalize: Callable[[int, Stats], dict[str, Any]]) -> dict[str, Any]: ...
    def set_limits(self, max_bytes: int, max_age: float) -> None: ...
    def next_pending(self, after_newest: bool = False) -> Pending | None: ...
    def next_batch(self, limit: int) -> list[Pending]: ...
    def get(self, seq: int) -> Pending | None: ...
    def ack(self, seq: int) -> None: ...
    def ack_many(self, seqs: list[int]) -> None: ...
    def note_failure(self, seq: int, error: str, *, refused: bool = False) -> None: ...
    def note_failures(self, seqs: list[int], error: str, *, refused: bool = False) -> None: ...
    def reject(self, seq: int, http_status: int | None, reason: str, *, kind: str | None = None,
               message_id: str | None = None) -> None: ...
    def stats(self) -> Stats: ...
    def pending_seqs(self) -> list[int]: ...
    def close(self) -> None: ...


class Outbox:
    def __init__(self, state_dir: str, *, max_bytes: int, max_age: float,
                 clock: Callable[[], float] = time.time,
                 boot_clock: Callable[[], tuple[str | None, float]] = boot_clock) -> None:
        self.path = db_path(state_dir)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self.boot_clock = boot_clock
        self._lock = threading.Lock()
        self._unlogged: dict[str, int] = {}
        self._drop_logged_at: float | None = None
        self.state_dir = state_dir
        #: What was done at open about a damaged database (None: it was sound).
        self.recovered: Recovery | None = None
        self._db = self._open_checked(state_dir)  # OutboxError when it cannot be opened

    def _open_checked(self, state_dir: str) -> sqlite3.Connection:
        """Open the outbox; a damaged one is replaced by a rebuilt one holding every message
        that can still be read from it (``outbox_recover``). The rebuilt file is complete
        and durable before the damaged one is moved aside, so a kill at any point loses
        nothing that was salvaged (``finish_swap``). The seq goes on above the high-water
        mark kept beside it."""
        finish_swap(self.path)
        if os.path.exists(self.path):
            why = damage(self.path)
            if why is not None:
                rows = salvage(self.path)
                mark = max([seq_mark(state_dir), *(int(r[0]) for r in rows)])
                self._rebuild(state_dir, self.path + NEW_SUFFIX, rows, mark)
                aside = move_aside(self.path)
                os.replace(self.path + NEW_SUFFIX, self.path)
                log.error("the outbox was damaged (%s): moved aside as %s; %d messages saved from it",
                          why, aside, len(rows))
                self.recovered = Recovery(aside, why, len(rows), seq_mark(state_dir))
        db = connect(state_dir)
        try:
            mark = seq_mark(state_dir)
            if mark > meta_int(db, "seq"):
                db.execute("BEGIN IMMEDIATE")
                set_meta(db, "seq", mark)  # never hand out a seq twice, whatever happened to the file
                db.execute("COMMIT")
        except sqlite3.Error as e:
            db.close()
            raise OutboxError(f"cannot open the outbox {self.path}: {e}") from None
        return db

    @staticmethod
    def _rebuild(state_dir: str, path: str, rows: list[tuple[Any, ...]], mark: int) -> None:
        """A fresh outbox at ``path`` holding ``rows`` and the seq ``mark``, committed and
        closed (its WAL folded in) before it replaces the damaged one."""
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
        db = connect(state_dir, path)
        try:
            db.execute("BEGIN IMMEDIATE")
            if rows:
                restore(db, rows)
            set_meta(db, "seq", mark)
            db.execute("COMMIT")
        except sqlite3.Error as e:
            raise OutboxError(f"cannot rebuild the outbox {path}: {e}") from None
        finally:
            db.close()

    def set_limits(self, max_bytes: int, max_age: float) -> None:
        with self._lock:
            self.max_bytes, self.max_age = max_bytes, max_age

    # -- writing ----------------------------------------------------------------------
    def commit(self, kind: str, finalize: Callable[[int, Stats], dict[str, Any]]) -> dict[str, Any]:
        """Allocate the next seq, build the message with ``finalize(seq, stats)``, store it.

        All in one transaction: either the message is durable with its seq, or neither is.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        with self._tx() as db:
            seq = self._meta_int("seq") + 1
            self._set_meta("seq", seq)
            message = finalize(seq, self._stats_locked(seq))
            body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            now = self.clock()
            boot, up = self.boot_clock()
            db.execute("INSERT INTO outbox (seq, kind, message_id, created, bytes, body, boot, up) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (seq, kind, message["message_id"], now, len(body), body,
                                                          boot, up))
            dropped = self._enforce_bounds(now)
        write_seq_mark(self.state_dir, seq)  # the high-water mark, outside the database too
        if dropped:
            self._log_drops(dropped)
            with self._lock:
                self._vacuum_quietly()
        return message

    def _log_drops(self, dropped: dict[str, int]) -> None:
        """The first drop at once, then at most one summary line per DROP_LOG_INTERVAL (a long outage)."""
        for kind, n in dropped.items():
            self._unlogged[kind] = self._unlogged.get(kind, 0) + n
        now = time.monotonic()
        if self._drop_logged_at is not None and now - self._drop_logged_at < DROP_LOG_INTERVAL:
            return
        text = ", ".join(f"{n} {k}" for k, n in sorted(self._unlogged.items()))
        log.warning("outbox over its bound (%.3g MB, %.3g days): dropped %s%s", self.max_bytes / 2**20,
                    self.max_age / 86400, text, "" if self._drop_logged_at is None else " since the last report")
        self._unlogged, self._drop_logged_at = {}, now

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; any SQLite error becomes OutboxError."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise OutboxError(f"cannot write the outbox {self.path}: {e}") from None

    def _enforce_bounds(self, now: float) -> dict[str, int]:
        db = self._db
        dropped: dict[str, int] = {}
        if self.max_age > 0:
            boot, up = self.boot_clock()
            args = {"boot": boot, "up_cut": up - self.max_age, "cut": now - self.max_age, "floor": CLOCK_FLOOR,
                    "sane": int(now >= CLOCK_FLOOR)}
            for kind, n in db.execute(f"SELECT kind, count(*) FROM outbox WHERE {_TOO_OLD} GROUP BY kind", args):
                dropped[kind] = dropped.get(kind, 0) + n
            db.execute(f"DELETE FROM outbox WHERE {_TOO_OLD}", args)
        total = db.execute("SELECT coalesce(sum(bytes), 0) FROM outbox").fetchone()[0]
        if total > self.max_bytes:
            newest = db.execute("SELECT coalesce(max(seq), 0) FROM outbox WHERE kind = 'heartbeat'").fetchone()[0]
            victims: list[int] = []
            for seq, kind, size in db.execute(_DROP_ORDER, {"newest": newest}):
                if total <= self.max_bytes:
                    break
                victims.append(seq)
                total -= size
                dropped[kind] = dropped.get(kind, 0) + 1
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in victims])
        for kind, n in dropped.items():
            self._set_meta(f"dropped_{kind}", self._meta_int(f"dropped_{kind}") + n)
        return dropped

    def _vacuum_quietly(self) -> None:
        try:
            self._db.execute("PRAGMA incremental_vacuum")
        except sqlite3.Error as e:
            log.debug("incremental vacuum failed: %s", e)

    def evict_superseded(self) -> int:
        """Make room on a full disk: drop every heartbeat but the newest (counted as dropped).
        The number dropped; 0 when there was none to drop or the file cannot be written."""
        try:
            with self._tx() as db:
                newest = db.execute("SELECT coalesce(max(seq), 0) FROM outbox WHERE kind = 'heartbeat'").fetchone()[0]
                n = db.execute("DELETE FROM outbox WHERE kind = 'heartbeat' AND seq < ?", (newest,)).rowcount
                if n:
                    self._set_meta("dropped_heartbeat", self._meta_int("dropped_heartbeat") + n)
        except OutboxError as e:
            log.debug("evicting superseded heartbeats: %s", e)
            return 0
        if n:
            log.warning("disk full: dropped %d superseded heartbeat(s) from the outbox to make room", n)
            self._vacuum_quietly()
        return int(n)

    def adopt(self, pendings: list[Pending], seq: int, dropped: dict[str, int]) -> None:
        """Take over what was kept in memory while this file could not be used: its reports
        (with their seq numbers), its drop counts, and its seq counter."""
        rows = [(p.seq, p.kind, p.message_id, p.created, len(p.body), p.body, p.attempts, None) for p in pendings]
        with self._tx() as db:
            if rows:
                restore(db, rows)
            for kind, n in dropped.items():
                if n:
                    self._set_meta(f"dropped_{kind}", self._meta_int(f"dropped_{kind}") + n)
            if seq > self._meta_int("seq"):
                self._set_meta("seq", seq)
        write_seq_mark(self.state_dir, max(seq, self.stats().seq))

    # -- delivery bookkeeping -----------------------------------------------------------
    def next_pending(self, after_newest: bool = False) -> Pending | None:
        """The newest heartbeat if one waits (unless ``after_newest``), else the oldest message.

        The delivery loop asks once without ``after_newest`` (the present first), then with
        it: the backlog goes out in seq order, heartbeats included.
        """
        with self._lock:
            row = None
            if not after_newest:
                row = self._db.execute(
                    "SELECT seq, kind, message_id, body, created, attempts FROM outbox "
                    "WHERE kind = 'heartbeat' ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None:
                row = self._db.execute("SELECT seq, kind, message_id, body, created, attempts FROM outbox "
                                       "ORDER BY seq LIMIT 1").fetchone()
        return Pending(*row) if row else None

    def next_batch(self, limit: int) -> list[Pending]:
        """Up to ``limit`` messages, oldest first: the backlog as the delivery loop batches it
        (the newest heartbeat went first, alone, by ``next_pending``)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, kind, message_id, body, created, attempts FROM outbox "
                                    "ORDER BY seq LIMIT ?", (max(1, int(limit)),)).fetchall()
        return [Pending(*row) for row in rows]

    def get(self, seq: int) -> Pending | None:
        with self._lock:
            row = self._db.execute("SELECT seq, kind, message_id, body, created, attempts FROM outbox "
                                   "WHERE seq = ?", (seq,)).fetchone()
        return Pending(*row) if row else None

    def ack(self, seq: int) -> None:
        """Delivered (2xx): remove it and stamp the success time."""
        stamp = dt.datetime.fromtimestamp(self.clock()).astimezone().isoformat(timespec="seconds")
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._set_meta("last_success_at", stamp)

    def ack_many(self, seqs: list[int]) -> None:
        """A batch was delivered (one 2xx covered every message in it): remove them all at once."""
        stamp = dt.datetime.fromtimestamp(self.clock()).astimezone().isoformat(timespec="seconds")
        with self._tx() as db:
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._set_meta("last_success_at", stamp)

    def note_failure(self, seq: int, error: str, *, refused: bool = False) -> None:
        """A failed attempt; ``refused``: the upstream refused the agent itself (counted, kept)."""
        self.note_failures([seq], error, refused=refused)

    def note_failures(self, seqs: list[int], error: str, *, refused: bool = False) -> None:
        """One failed attempt that carried ``seqs`` (a batch); a refusal is counted once, per request."""
        with self._tx() as db:
            db.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                           [(error[:500], s) for s in seqs])
            if refused:
                self._set_meta("refused", self._meta_int("refused") + 1)

    def reject(self, seq: int, http_status: int | None, reason: str, *, kind: str | None = None,
               message_id: str | None = None) -> None:
        """The upstream refused this message for good (a 4xx about the message): record, remove.

        Counted even when the row is already gone (acked by another writer, dropped by the
        bound meanwhile), as long as ``kind`` and ``message_id`` say what it was.
        """
        with self._tx() as db:
            row = db.execute("SELECT kind, message_id FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is None and kind is not None and message_id is not None:
                row = (kind, message_id)
            if row is not None:
                db.execute("INSERT OR REPLACE INTO rejected (seq, kind, message_id, http_status, reason, at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (seq, row[0], row[1], http_status, reason[:500], self.clock()))
                db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                db.execute("DELETE FROM rejected WHERE seq NOT IN "
                           "(SELECT seq FROM rejected ORDER BY seq DESC LIMIT ?)", (REJECTED_KEEP,))
                self._set_meta("rejected", self._meta_int("rejected") + 1)

    # -- reading ------------------------------------------------------------------------
    def stats(self) -> Stats:
        with self._lock:
            return self._stats_locked(self._meta_int("seq"))

    def _stats_locked(self, seq: int) -> Stats:
        return read_stats(self._db, seq)

    def pending_seqs(self) -> list[int]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT seq FROM outbox ORDER BY seq")]

    def rejected_rows(self) -> list[tuple[int, str, int | None, str]]:
        with self._lock:
            return list(self._db.execute("SELECT seq, kind, http_status, reason FROM rejected ORDER BY seq"))

    def _meta_int(self, key: str) -> int:
        return meta_int(self._db, key)

    def _set_meta(self, key: str, value: object) -> None:
        set_meta(self._db, key, value)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error as e:
                log.debug("closing the outbox: %s", e)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
