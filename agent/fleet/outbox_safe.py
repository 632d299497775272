"""The daemon's outbox when the box itself is failing: a full disk, a read-only or missing
state dir, a database damaged while the agent runs.

``SafeOutbox`` has the outbox's interface and sits in front of the durable ``Outbox``:

- **Damage at run time** (``database disk image is malformed``, ``file is not a
  database``): the file is reopened, which moves it aside and salvages every readable
  message (``outbox_recover``); ``on_recovered`` is told, so the fleet gets its
  ``STATE_STORE_RECOVERED`` event. The seq goes on above the high-water mark.
- **A full disk** (``SQLITE_FULL``/ENOSPC): superseded heartbeats are evicted (counted as
  dropped) and the commit is tried once more.
- **When the file cannot be used at all** (a read-only remount, a state dir that cannot
  be created, a disk still full): reports are kept in memory instead (``MemoryQueue``:
  bounded, superseded heartbeats dropped first, every drop counted) and delivered from
  there, each marked ``agent.outbox = "unavailable"`` with the reason, so the fleet still
  hears the terminal (and its DISK_FULL) and knows these reports would not survive a
  power cut. The file is tried again every ``retry_every`` seconds; when it works, what
  waits in memory moves into it with its seq numbers, and everything is as before.

The budget of the file respects free space: the spool bound is the smaller of
``spool_max_mb`` and half of what the filesystem has left (plus what the outbox holds);
free space never squeezes it below ``MIN_BUDGET``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from posagent.fleet.outbox import Outbox, OutboxError, Pending, Stats
from posagent.fleet.outbox_db import KINDS
from posagent.fleet.outbox_mem import MemoryQueue
from posagent.fleet.outbox_recover import Recovery, seq_mark

log = logging.getLogger(__name__)

#: Seconds between tries to use the outbox file again while reports are kept in memory.
RETRY_EVERY = 10.0
#: The smallest spool bound free space can squeeze the outbox to (bytes).
MIN_BUDGET = 64 * 1024

_DAMAGED = ("malformed", "not a database", "database corrupt")
_FULL = ("disk is full", "no space left")


def _why(e: Exception) -> str:
    """The reason a store failed, as the heartbeat and the status say it."""
    text = str(e).lower()
    if any(s in text for s in _FULL):
        return "disk full"
    if "readonly" in text or "read-only" in text:
        return "state dir read-only"
    if any(s in text for s in _DAMAGED):
        return "outbox damaged"
    if "permission denied" in text:
        return "state dir not writable"
    return "outbox unavailable"


class SafeOutbox:
    """The outbox, or reports kept in memory while it cannot be used (see the module doc)."""

    def __init__(self, state_dir: str, *, max_bytes: int, max_age: float, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, retry_every: float = RETRY_EVERY,
                 on_recovered: Callable[[Recovery], None] | None = None) -> None:
        self.state_dir = state_dir
        self.max_bytes, self.max_age = max_bytes, max_age
        self.clock, self.monotonic = clock, monotonic
        self.retry_every = retry_every
        self.on_recovered = on_recovered
        self._lock = threading.RLock()
        self._durable: Outbox | None = None
        self._memory: MemoryQueue | None = None
        self._retry_at = 0.0
        self.recovered: Recovery | None = None  # what opening found (reported once at start)
        self.unavailable: str | None = None  # why reports are in memory (None: in the file)
        self._open(first=True)

    @property
    def path(self) -> str:
        return os.path.join(self.state_dir, "outbox.db")

    # -- switching stores -------------------------------------------------------------
    def _open(self, *, first: bool = False) -> bool:
        """Try the file; True when it is in use (what waits in memory moved into it)."""
        try:
            durable = Outbox(self.state_dir, max_bytes=self._budget(), max_age=self.max_age, clock=self.clock)
        except OutboxError as e:
            self._to_memory(e, first=first)
            return False
        if durable.recovered is not None:
            if first:
                self.recovered = durable.recovered
            elif self.on_recovered is not None:
                self.on_recovered(durable.recovered)
        memory, self._memory = self._memory, None
        if memory is not None and memory.rows:
            try:
                durable.adopt(memory.pendings(), memory.seq, memory.dropped)
            except OutboxError as e:
                durable.close()
                self._memory = memory
                self._to_memory(e)
                return False
            log.warning("state dir usable again: %d report(s) kept in memory moved into the outbox", len(memory.rows))
        elif memory is not None:
            durable.adopt([], memory.seq, memory.dropped)
            log.warning("state dir usable again: reports are kept in the outbox again")
        self._durable, self.unavailable = durable, None
        return True

    def _to_memory(self, e: Exception, *, first: bool = False) -> None:
        why = _why(e)
        if self._memory is None:
            start = max(seq_mark(self.state_dir), self._durable_seq())
            self._memory = MemoryQueue(start, clock=self.clock)
            log.error("reports kept in memory (%s): %s; trying the state dir again every %g s",
                      why, e, self.retry_every)
        if self._durable is not None:
            self._durable.close()
            self._durable = None
        self.unavailable = why
        self._memory.reason = why
        self._retry_at = self.monotonic() + self.retry_every

    def _durable_seq(self) -> int:
        if self._durable is None:
            return 0
        try:
            return self._durable.stats().seq
        except Exception:
            return 0

    def _store(self) -> Outbox | MemoryQueue:
        if self._durable is None and self.monotonic() >= self._retry_at:
            self._open()
        if self._durable is not None:
            return self._durable
        assert self._memory is not None
        return self._memory

    def _failed(self, e: Exception) -> None:
        """The file failed under an operation: open it again (a damaged one is moved aside
        and salvaged), or keep reports in memory when that fails too."""
        log.error("outbox failed (%s): %s", _why(e), e)
        if self._durable is not None:
            self._durable.close()
            self._durable = None
        self._open()

    def _budget(self) -> int:
        """The spool bound: ``max_bytes``, or half the filesystem's free space plus what the
        outbox file holds, whichever is smaller (free space squeezes it to MIN_BUDGET at most)."""
        try:
            st = os.statvfs(self.state_dir)
            free = st.f_bavail * st.f_frsize
            held = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        except OSError:
            return self.max_bytes
        return min(self.max_bytes, max(MIN_BUDGET, (free + held) // 2))

    def _call(self, name: str, *args: Any, **kw: Any) -> Any:
        """``name`` on the store in use; when the file fails, on the file opened again, and
        when that fails too, on memory (what waits in the file waits for the file)."""
        with self._lock:
            for attempt in range(2):
                store = self._store()
                if not isinstance(store, Outbox):
                    break
                try:
                    return getattr(store, name)(*args, **kw)
                except (OutboxError, OSError, sqlite3.Error) as e:
                    if attempt == 0:
                        self._failed(e)
                    else:
                        self._to_memory(e)
            return getattr(self._store(), name)(*args, **kw)

    # -- the outbox's interface ---------------------------------------------------------
    def commit(self, kind: str, finalize: Callable[[int, Stats], dict[str, Any]]) -> dict[str, Any]:
        """Commit to the file; when it fails, reopen it once (a damaged one is salvaged) and
        try again, and when that fails too, keep the report in memory."""
        with self._lock:
            for attempt in range(2):
                store = self._store()
                if not isinstance(store, Outbox):
                    break
                store.set_limits(self._budget(), self.max_age)
                try:
                    return store.commit(kind, finalize)
                except OutboxError as e:
                    error = e
                if _why(error) == "disk full" and store.evict_superseded():
                    try:
                        return store.commit(kind, finalize)
                    except OutboxError as again:
                        error = again
                if attempt == 0:
                    self._failed(error)
                else:
                    self._to_memory(error)
            memory = self._store()
            return memory.commit(kind, finalize)

    def set_limits(self, max_bytes: int, max_age: float) -> None:
        with self._lock:
            self.max_bytes, self.max_age = max_bytes, max_age
            if self._durable is not None:
                self._durable.set_limits(self._budget(), max_age)

    def next_pending(self, after_newest: bool = False) -> Pending | None:
        return self._call("next_pending", after_newest)  # type: ignore[no-any-return]

    def next_batch(self, limit: int) -> list[Pending]:
        return self._call("next_batch", limit)  # type: ignore[no-any-return]

    def get(self, seq: int) -> Pending | None:
        return self._call("get", seq)  # type: ignore[no-any-return]

    def ack(self, seq: int) -> None:
        self._call("ack", seq)

    def ack_many(self, seqs: list[int]) -> None:
        self._call("ack_many", seqs)

    def note_failure(self, seq: int, error: str, *, refused: bool = False) -> None:
        self._call("note_failures", [seq], error, refused=refused)

    def note_failures(self, seqs: list[int], error: str, *, refused: bool = False) -> None:
        self._call("note_failures", seqs, error, refused=refused)

    def reject(self, seq: int, http_status: int | None, reason: str, *, kind: str | None = None,
               message_id: str | None = None) -> None:
        self._call("reject", seq, http_status, reason, kind=kind, message_id=message_id)

    def stats(self) -> Stats:
        stats: Stats = self._call("stats")
        if self.unavailable is not None and stats.unavailable is None:
            stats = dataclasses.replace(stats, unavailable=self.unavailable)
        return stats

    def pending_seqs(self) -> list[int]:
        return self._call("pending_seqs")  # type: ignore[no-any-return]

    def rejected_rows(self) -> list[tuple[int, str, int | None, str]]:
        return self._call("rejected_rows")  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            if self._durable is not None:
                self._durable.close()
            if self._memory is not None and self._memory.rows:
                log.error("stopping with %d report(s) in memory that could not be saved (%s): they are lost",
                          len(self._memory.rows), self.unavailable)

    def __enter__(self) -> SafeOutbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["KINDS", "MIN_BUDGET", "RETRY_EVERY", "SafeOutbox"]
