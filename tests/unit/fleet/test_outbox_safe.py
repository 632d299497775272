"""SafeOutbox: reports go to memory while the state dir cannot be used, and back into the
file (with their seq numbers) when it can; a damaged file met while running is salvaged."""

from __future__ import annotations

import itertools
import os
import sqlite3
from pathlib import Path
from typing import Any

from posagent.fleet.outbox_db import Stats
from posagent.fleet.outbox_mem import MemoryQueue
from posagent.fleet.outbox_recover import Recovery
from posagent.fleet.outbox_safe import SafeOutbox

_ids = itertools.count(1)


def make(kind: str = "heartbeat") -> Any:
    def finalize(seq: int, stats: Stats) -> dict[str, Any]:
        return {"seq": seq, "message_id": f"m-{next(_ids)}", "kind": kind, "unavailable": stats.unavailable}
    return finalize


class Ticker:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_state_dir_that_cannot_be_made_keeps_reports_in_memory_then_moves_them_in(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state dir should be")
    mono = Ticker()
    box = SafeOutbox(str(blocker), max_bytes=2**20, max_age=86400.0, monotonic=mono, retry_every=10.0)
    assert box.unavailable == "outbox unavailable"
    first = box.commit("heartbeat", make())
    second = box.commit("event", make("event"))
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["unavailable"] == "outbox unavailable"  # the message says it lives in memory
    stats = box.stats()
    assert stats.backlog == 2 and stats.unavailable == "outbox unavailable"
    assert box.next_pending().seq == 1  # type: ignore[union-attr]  # the newest heartbeat first
    blocker.unlink()
    mono.t += 5.0
    box.commit("heartbeat", make())  # not yet time to try the file again
    assert box.unavailable is not None and not blocker.exists()
    mono.t += 10.0
    fourth = box.commit("heartbeat", make())  # the file is tried again: it works
    assert box.unavailable is None and (blocker / "outbox.db").exists()
    assert fourth["seq"] == 4 and fourth["unavailable"] is None
    assert box.pending_seqs() == [1, 2, 3, 4]  # what waited in memory moved in, numbers kept
    assert box.stats().unavailable is None
    box.ack_many([1, 2, 3, 4])
    assert box.stats().backlog == 0
    box.close()
    again = SafeOutbox(str(blocker), max_bytes=2**20, max_age=86400.0)
    assert again.commit("heartbeat", make())["seq"] == 5  # seq goes on after a restart
    again.close()


def test_memory_keeps_its_bound_dropping_superseded_heartbeats_first() -> None:
    q = MemoryQueue(0, max_bytes=600)
    for _ in range(3):
        q.commit("selftest", make("selftest"))
    for _ in range(10):
        q.commit("heartbeat", make())
    kinds = [p.kind for p in q.pendings()]
    assert kinds.count("selftest") == 3 and kinds[-1] == "heartbeat"
    assert q.dropped["heartbeat"] > 0 and q.stats().dropped["selftest"] == 0
    assert sum(len(p.body) for p in q.pendings()) <= 600


def test_a_file_damaged_while_running_is_salvaged_and_reported(tmp_path: Path) -> None:
    seen: list[Recovery] = []
    box = SafeOutbox(str(tmp_path), max_bytes=2**20, max_age=86400.0, on_recovered=seen.append)
    for _ in range(5):
        box.commit("heartbeat", make())
    durable = box._durable
    assert durable is not None
    # The file is damaged under the running agent (a power cut on cheap flash while it
    # ran): its connection now reads a file that is no database.
    durable._db.close()
    with open(tmp_path / "outbox.db", "r+b") as fh:
        fh.write(os.urandom(4096))
    for name in ("outbox.db-wal", "outbox.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    durable._db = sqlite3.connect(str(tmp_path / "outbox.db"), isolation_level=None, check_same_thread=False)
    message = box.commit("heartbeat", make())
    assert message["seq"] == 6  # above the high-water mark, never a reused number
    assert seen and seen[0].reason and list(tmp_path.glob("outbox.db.corrupt-*"))
    assert box.unavailable is None and box.pending_seqs()[-1] == 6
    box.close()
