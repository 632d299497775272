"""A damaged outbox is moved aside, what is readable kept, and seq never goes back."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from posagent.fleet.outbox import Outbox
from posagent.fleet.outbox_recover import damage, salvage, seq_mark


def msg(seq: int, stats: object) -> dict[str, object]:
    return {"schema": "posagent.heartbeat/1", "message_id": str(uuid.uuid4()), "seq": seq}


def fill(state: Path, n: int) -> None:
    with Outbox(str(state), max_bytes=10**7, max_age=10**9) as box:
        for _ in range(n):
            box.commit("heartbeat", msg)


def test_a_sound_outbox_is_left_alone_and_the_mark_follows_every_commit(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    assert seq_mark(str(tmp_path)) == 3
    with Outbox(str(tmp_path), max_bytes=10**7, max_age=10**9) as box:
        assert box.recovered is None and len(box.pending_seqs()) == 3


def test_garbage_over_the_header_is_replaced_and_seq_goes_on(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    db = tmp_path / "outbox.db"
    with open(db, "r+b") as fh:
        fh.write(os.urandom(4096))  # a power cut on cheap flash
    with Outbox(str(tmp_path), max_bytes=10**7, max_age=10**9) as box:
        assert box.recovered is not None and box.recovered.seq_mark == 5
        assert Path(box.recovered.aside).exists() and box.recovered.aside.startswith(str(db) + ".corrupt-")
        assert box.commit("heartbeat", msg)["seq"] == 6  # above everything handed out before


def test_a_damaged_page_keeps_what_can_be_read(tmp_path: Path) -> None:
    fill(tmp_path, 40)
    db = tmp_path / "outbox.db"
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek(max(4096, size - 4096))  # the last page: the newest messages
        fh.write(os.urandom(4096))
    with Outbox(str(tmp_path), max_bytes=10**7, max_age=10**9) as box:
        r = box.recovered
        seqs = box.pending_seqs()
        assert box.commit("heartbeat", msg)["seq"] == 41
    if r is not None:  # quick_check saw the damage
        assert r.salvaged == len(seqs) and seqs == sorted(seqs)
    else:  # the page was free space: nothing lost
        assert len(seqs) == 40


def test_a_damaged_history_store_is_moved_aside_and_started_again(tmp_path: Path) -> None:
    from posagent.fleet import history_db

    with history_db.connect(str(tmp_path), create=True) as conn:
        assert conn is not None
    (tmp_path / history_db.FILENAME).write_bytes(os.urandom(8192))
    with history_db.connect(str(tmp_path), create=True) as conn:
        assert conn is not None and conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert list(tmp_path.glob(history_db.FILENAME + ".corrupt-*"))


def damaged_with_rows(state: Path, n: int = 40) -> list[int]:
    """An outbox of ``n`` messages whose last page is garbage, and the seqs still readable."""
    fill(state, n)
    db = state / "outbox.db"
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek(max(4096, size - 4096))
        fh.write(os.urandom(4096))
    assert damage(str(db)) is not None
    return [int(r[0]) for r in salvage(str(db))]


def test_a_kill_after_the_rebuild_before_it_took_the_damaged_files_place(tmp_path: Path) -> None:
    """#18, SIGKILL during recovery: the rebuilt outbox (outbox.db.new) was complete but
    the damaged file had not been moved aside yet. The next open salvages again; nothing
    salvaged is lost, no number is reused."""
    readable = damaged_with_rows(tmp_path)
    (tmp_path / "outbox.db.new").write_bytes(b"half a rebuild")
    with Outbox(str(tmp_path), max_bytes=10**7, max_age=10**9) as box:
        assert box.recovered is not None and box.pending_seqs() == readable
        assert box.commit("heartbeat", msg)["seq"] == 41
    assert not (tmp_path / "outbox.db.new").exists()


def test_a_kill_between_moving_the_damaged_file_aside_and_putting_the_rebuilt_one_in_place(
        tmp_path: Path) -> None:
    readable = damaged_with_rows(tmp_path)
    with Outbox(str(tmp_path), max_bytes=10**7, max_age=10**9):  # a full recovery, for the rebuilt file
        pass
    rebuilt = tmp_path / "outbox.db"
    rebuilt.rename(tmp_path / "outbox.db.new")  # the state a kill between the two renames leaves
    with Outbox(str(tmp_path), max_bytes=10**7, max_age=10**9) as box:
        assert box.recovered is None  # nothing damaged any more: the rebuilt file is put in place
        assert box.pending_seqs() == readable
        assert box.commit("heartbeat", msg)["seq"] == 41


def test_a_history_store_damaged_in_its_data_is_set_aside_when_a_read_meets_it(tmp_path: Path) -> None:
    """#18: damage found by a read (not at open) moves the store aside too; the next write
    starts a new one. A full disk or a lock never does (``history_db.damaged``)."""
    import sqlite3

    from posagent.fleet import history, history_db

    with history_db.connect(str(tmp_path), create=True) as conn:
        assert conn is not None
        conn.executemany("INSERT INTO runs (started_at, ts, terminal_id, technician, level, status, duration_ms)"
                         " VALUES ('2026-12-01T03:00:00+00:00', ?, 'T', ?, 'internal', 'ok', 1.0)",
                         [(1.8e9 + i, "x" * 200) for i in range(400)])
    path = tmp_path / history_db.FILENAME
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # a page of the runs' data, not the schema on page 1
        fh.seek(size // 2 // 4096 * 4096)
        fh.write(os.urandom(4096))
    assert history.runs(str(tmp_path)) == []  # unreadable: the default, and the store set aside
    assert list(tmp_path.glob(history_db.FILENAME + ".corrupt-*"))
    with history_db.connect(str(tmp_path), create=True) as conn:
        assert conn is not None and conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert not history_db.damaged(sqlite3.OperationalError("database or disk is full"))
