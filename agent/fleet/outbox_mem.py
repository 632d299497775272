"""Reports kept in memory while the outbox file cannot be used (``outbox_safe``).

The same operations as the durable outbox, on a dict in seq order: the same seq counter
(going on from the high-water mark), the same delivery order (the newest heartbeat
first, then oldest first), the same drop order under its bound (superseded heartbeats,
events, the newest heartbeat, self-tests last), every drop counted. Nothing here
survives the process: each report says so (``Stats.unavailable``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from posagent.fleet.outbox_db import KINDS, Pending, Stats

#: The most bytes of reports held in memory (about 2,000 gzip-sized heartbeats, 700 raw).
MEMORY_BYTES = 2 * 2**20
#: Rejected messages remembered (metadata only).
REJECTED_KEEP = 100


class MemoryQueue:
    def __init__(self, seq: int, *, clock: Callable[[], float] = time.time, max_bytes: int = MEMORY_BYTES) -> None:
        self.seq = seq
        self.clock = clock
        self.max_bytes = max_bytes
        self.reason = "outbox unavailable"
        self.rows: dict[int, Pending] = {}
        self.dropped: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.rejected: list[tuple[int, str, int | None, str]] = []
        self.rejected_count = 0
        self.refused = 0
        self.last_success_at: str | None = None

    def commit(self, kind: str, finalize: Callable[[int, Stats], dict[str, Any]]) -> dict[str, Any]:
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        seq = self.seq + 1
        message = finalize(seq, self._stats(seq))
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.seq = seq
        self.rows[seq] = Pending(seq, kind, message["message_id"], body, self.clock(), 0)
        self._bound()
        return message

    def _bound(self) -> None:
        total = sum(len(p.body) for p in self.rows.values())
        if total <= self.max_bytes:
            return
        newest_hb = max((s for s, p in self.rows.items() if p.kind == "heartbeat"), default=0)

        def rank(p: Pending) -> tuple[int, int]:
            if p.kind == "heartbeat":
                return (0 if p.seq < newest_hb else 2, p.seq)
            return (1 if p.kind == "event" else 3, p.seq)

        for p in sorted(self.rows.values(), key=rank):
            if total <= self.max_bytes:
                break
            del self.rows[p.seq]
            total -= len(p.body)
            self.dropped[p.kind] = self.dropped.get(p.kind, 0) + 1

    def _stats(self, seq: int) -> Stats:
        created = [p.created for p in self.rows.values()]
        return Stats(seq=seq, backlog=len(self.rows), backlog_bytes=sum(len(p.body) for p in self.rows.values()),
                     dropped=dict(self.dropped), rejected=self.rejected_count, last_success_at=self.last_success_at,
                     oldest_created=min(created, default=None), refused=self.refused,
                     newest_created=max(created, default=None), unavailable=self.reason)

    def pendings(self) -> list[Pending]:
        return [self.rows[s] for s in sorted(self.rows)]

    # -- the outbox's interface ---------------------------------------------------------
    def next_pending(self, after_newest: bool = False) -> Pending | None:
        if not after_newest:
            hb = [s for s, p in self.rows.items() if p.kind == "heartbeat"]
            if hb:
                return self.rows[max(hb)]
        return self.rows[min(self.rows)] if self.rows else None

    def next_batch(self, limit: int) -> list[Pending]:
        return self.pendings()[: max(1, int(limit))]

    def get(self, seq: int) -> Pending | None:
        return self.rows.get(seq)

    def ack(self, seq: int) -> None:
        self.ack_many([seq])

    def ack_many(self, seqs: list[int]) -> None:
        for s in seqs:
            self.rows.pop(s, None)
        self.last_success_at = dt.datetime.fromtimestamp(self.clock()).astimezone().isoformat(timespec="seconds")

    def note_failures(self, seqs: list[int], error: str, *, refused: bool = False) -> None:
        for s in seqs:
            p = self.rows.get(s)
            if p is not None:
                self.rows[s] = dataclasses.replace(p, attempts=p.attempts + 1)
        if refused:
            self.refused += 1

    def reject(self, seq: int, http_status: int | None, reason: str, *, kind: str | None = None,
               message_id: str | None = None) -> None:
        p = self.rows.pop(seq, None)
        what = p.kind if p is not None else kind
        if what is not None:
            self.rejected_count += 1
            self.rejected = [*self.rejected, (seq, what, http_status, reason[:500])][-REJECTED_KEEP:]

    def stats(self) -> Stats:
        return self._stats(self.seq)

    def pending_seqs(self) -> list[int]:
        return sorted(self.rows)

    def rejected_rows(self) -> list[tuple[int, str, int | None, str]]:
        return list(self.rejected)
