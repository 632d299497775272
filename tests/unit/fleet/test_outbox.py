"""The durable outbox: seq allocated in the commit's transaction, survives reopen, bounded
spool drops in the right order (superseded heartbeats first, self-tests last) and counts it."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from posagent.fleet.outbox import Outbox, Stats
from posagent.fleet.outbox_db import peek_next_seq


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def msg(kind: str, pad: int = 0) -> Any:
    def finalize(seq: int, stats: Stats) -> dict[str, Any]:
        return {"message_id": str(uuid.uuid4()), "kind": kind, "seq": seq, "backlog": stats.backlog,
                "dropped": stats.dropped_total, "pad": "x" * pad}

    return finalize


def test_seq_is_allocated_with_the_commit_and_survives_reopen(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    seqs = [box.commit(k, msg(k))["seq"] for k in ("heartbeat", "event", "selftest", "heartbeat")]
    assert seqs == [1, 2, 3, 4]
    box.close()
    assert peek_next_seq(str(tmp_path)) == 5
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    assert box.pending_seqs() == [1, 2, 3, 4]
    assert box.commit("event", msg("event"))["seq"] == 5
    box.ack(5)
    box.ack(4)
    assert box.commit("heartbeat", msg("heartbeat"))["seq"] == 6  # never reused after delivery
    assert box.stats().last_success_at is not None
    box.close()


def test_a_failed_build_allocates_nothing(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    box.commit("heartbeat", msg("heartbeat"))

    def broken(seq: int, stats: Stats) -> dict[str, Any]:
        raise RuntimeError("builder failed")

    with pytest.raises(RuntimeError):
        box.commit("heartbeat", broken)
    # the seq of the failed commit was rolled back with it: no gap at the receiver
    assert box.commit("heartbeat", msg("heartbeat"))["seq"] == 2
    box.close()


def test_the_stored_body_carries_the_seq_of_its_row(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    for _ in range(5):
        box.commit("heartbeat", msg("heartbeat"))
    box.close()
    db = sqlite3.connect(tmp_path / "outbox.db")
    import json

    for seq, body in db.execute("SELECT seq, body FROM outbox"):
        assert json.loads(body)["seq"] == seq
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_pragmas_wal_and_full_sync(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()


def test_delivery_order_newest_heartbeat_once_then_oldest_first(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    kinds = ["heartbeat", "selftest", "heartbeat", "event", "heartbeat", "event"]
    for k in kinds:
        box.commit(k, msg(k))
    first = box.next_pending()  # what the delivery loop asks first: the present
    assert first is not None and first.seq == 5
    box.ack(first.seq)
    order = []
    for _ in range(len(kinds) - 1):
        p = box.next_pending(after_newest=True)  # then the backlog in seq order, heartbeats included
        assert p is not None
        order.append(p.seq)
        box.ack(p.seq)
    assert order == [1, 2, 3, 4, 6]
    assert box.next_pending() is None and box.next_pending(after_newest=True) is None
    box.close()


def files_of(path: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()}


def test_peek_reads_the_figures_and_writes_nothing(tmp_path: Path) -> None:
    from posagent.fleet.outbox_db import peek

    assert peek(str(tmp_path / "none")).backlog == 0 and not (tmp_path / "none").exists()
    box = Outbox(str(tmp_path), max_bytes=3000, max_age=10**9)
    for _ in range(4):
        box.commit("heartbeat", msg("heartbeat", 1000))  # the bound drops the oldest
    box.commit("event", msg("event"))
    box.reject(5, 422, "HTTP 422")
    box.note_failure(4, "HTTP 401", refused=True)
    expected = box.stats()
    # while the daemon has it open (WAL and its index exist): the same figures, no file touched
    before = files_of(tmp_path)
    assert peek(str(tmp_path)) == expected
    assert files_of(tmp_path) == before
    box.close()
    # closed (no -wal, no -shm): still read, and neither file appears (as root they would be root's)
    before = files_of(tmp_path)
    stats = peek(str(tmp_path))
    assert files_of(tmp_path) == before and set(before) == {"outbox.db", "outbox.seq"}  # and the seq mark
    assert (stats.seq, stats.backlog, stats.dropped["heartbeat"], stats.rejected, stats.refused) == (5, 2, 2, 1, 1)
    assert peek_next_seq(str(tmp_path)) == 6
    (tmp_path / "outbox.db").write_bytes(b"not a database at all" * 100)
    from posagent.fleet.outbox import OutboxError

    with pytest.raises(OutboxError, match="cannot read the outbox"):
        peek(str(tmp_path))


def test_size_bound_drops_superseded_heartbeats_first_selftests_last(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path), max_bytes=6000, max_age=10**9)
    box.commit("selftest", msg("selftest", 1000))  # seq 1
    box.commit("event", msg("event", 1000))  # seq 2
    for _ in range(3):
        box.commit("heartbeat", msg("heartbeat", 1000))  # seq 3..5
    assert box.stats().dropped_total == 0
    box.commit("heartbeat", msg("heartbeat", 1000))  # seq 6: over 6000 bytes -> drop seq 3
    assert box.pending_seqs() == [1, 2, 4, 5, 6]
    assert box.stats().dropped == {"heartbeat": 1, "event": 0, "selftest": 0}
    # a big self-test: the superseded heartbeats go, then the event; the newest heartbeat stays
    box.commit("selftest", msg("selftest", 3500))  # seq 7
    stats = box.stats()
    assert box.pending_seqs() == [1, 6, 7]
    assert stats.dropped == {"heartbeat": 3, "event": 1, "selftest": 0}
    assert stats.backlog_bytes <= 6000
    # another: nothing superseded or event left, so the newest heartbeat, then the oldest self-tests
    box.commit("selftest", msg("selftest", 3500))  # seq 8
    assert box.pending_seqs() == [8]
    assert box.stats().dropped == {"heartbeat": 4, "event": 1, "selftest": 2}
    box.close()
    # the counts survive a restart and are carried in the next message
    box = Outbox(str(tmp_path), max_bytes=6000, max_age=10**9)
    m = box.commit("heartbeat", msg("heartbeat", 10))
    assert m["dropped"] == box.stats().dropped_total >= 6
    box.close()


class BootClock:
    """The boot id and CLOCK_BOOTTIME a test chooses (the clock that does not step)."""

    def __init__(self, boot: str = "boot-1", up: float = 100.0) -> None:
        self.boot, self.up = boot, up

    def __call__(self) -> tuple[str | None, float]:
        return self.boot, self.up


def test_age_bound(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=3600, clock=clock, boot_clock=lambda: ("b", clock.t))
    box.commit("selftest", msg("selftest"))
    box.commit("heartbeat", msg("heartbeat"))
    clock.t += 1800
    box.commit("heartbeat", msg("heartbeat"))
    clock.t += 1801  # the first two are now older than an hour
    box.commit("event", msg("event"))
    assert box.pending_seqs() == [3, 4]
    assert box.stats().dropped == {"heartbeat": 1, "event": 0, "selftest": 1}
    box.close()


def test_reject_records_and_removes(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    box.commit("event", msg("event"))
    box.commit("heartbeat", msg("heartbeat"))
    box.note_failure(1, "HTTP 503")
    pending = box.get(1)
    assert pending is not None and pending.attempts == 1
    box.reject(1, 422, "HTTP 422 Unprocessable Entity")
    assert box.pending_seqs() == [2]
    assert box.stats().rejected == 1
    assert box.rejected_rows() == [(1, "event", 422, "HTTP 422 Unprocessable Entity")]
    box.close()


def test_two_writers_share_one_counter(tmp_path: Path) -> None:
    """The daemon and `posagent heartbeat --send` may commit at the same time: no seq twice."""
    a = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    b = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400)
    seqs = []
    for i in range(20):
        box = a if i % 3 else b
        seqs.append(box.commit("heartbeat", msg("heartbeat"))["seq"])
    assert seqs == list(range(1, 21))
    a.close()
    b.close()


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    from posagent.fleet.outbox import OutboxError

    target = tmp_path / "file"
    target.write_text("not a directory")
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        Outbox(str(target), max_bytes=10**6, max_age=86400)


def test_a_clock_step_does_not_age_out_reports(tmp_path: Path) -> None:
    """#18: a terminal that booted with a dead RTC (the year 2000) and was stepped to the
    right time by NTP an hour later keeps what it made meanwhile; a step back by an hour
    does not keep reports past their age either: the age of a report of this boot is read
    on the boot-time clock."""
    y2000 = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
    clock, boot = Clock(y2000), BootClock()
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400, clock=clock, boot_clock=boot)
    for _ in range(3):
        box.commit("heartbeat", msg("heartbeat"))
        clock.t += 600
        boot.up += 600
    clock.t = 1_800_000_000.0  # NTP steps the clock 26 years forward
    box.commit("heartbeat", msg("heartbeat"))
    assert box.pending_seqs() == [1, 2, 3, 4]
    assert box.stats().dropped_total == 0
    clock.t -= 3600  # and back by an hour: nothing changes either
    box.commit("heartbeat", msg("heartbeat"))
    assert box.pending_seqs() == [1, 2, 3, 4, 5]
    boot.up += 86400 + 1  # a day later on the clock that does not step: all are too old
    box.commit("heartbeat", msg("heartbeat"))
    assert box.pending_seqs() == [6]
    box.close()


def test_reports_of_an_earlier_boot_stamped_by_a_wrong_clock_are_kept(tmp_path: Path) -> None:
    y2000 = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
    clock = Clock(y2000)
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400, clock=clock, boot_clock=BootClock("boot-1"))
    box.commit("heartbeat", msg("heartbeat"))
    box.close()
    clock.t = 1_800_000_000.0
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400, clock=clock, boot_clock=BootClock("boot-2"))
    box.commit("heartbeat", msg("heartbeat"))
    assert box.pending_seqs() == [1, 2]  # its stamp cannot be trusted: kept (the size bound still holds)
    clock.t += 2 * 86400
    box.close()
    box = Outbox(str(tmp_path), max_bytes=10**6, max_age=86400, clock=clock, boot_clock=BootClock("boot-3"))
    box.commit("heartbeat", msg("heartbeat"))
    assert box.pending_seqs() == [1, 3]  # seq 2's stamp was sane: two days is too old
    box.close()
