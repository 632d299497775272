"""The ESC/POS simulator's byte parser, the slip composer and the consumables counters.

The simulator is fed bytes directly here (``on_bytes``); the pty and TCP paths are in
tests/integration/test_escpos_pty.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from posagent.core.base import Result
from posagent.drivers.escpos.counters import CounterStore, counter_path, ribbon_grade
from posagent.drivers.escpos.sim import EscposSim, command_length
from posagent.drivers.escpos.slip import SlipInfo, compose_lines, compose_slip, hard_wrap


def test_command_lengths() -> None:
    assert command_length(b"\x1b@") == 2
    assert command_length(b"\x1b") is None
    assert command_length(b"\x1bd\x04") == 3
    assert command_length(b"\x1dV\x01") == 3
    assert command_length(b"\x1dVB\x00") == 4
    assert command_length(b"\x1d(k\x03\x001Q0") == 8
    assert command_length(b"\x1d(k\x03") is None
    assert command_length(b"\x1b*\x21\x02\x00") == 5 + 6  # 2 columns x 3 bytes
    assert command_length(b"\x1dv0\x00\x02\x00\x03\x00") == 8 + 6
    assert command_length(b"\x1dkA\x03") == 4 + 3
    assert command_length(b"\x1dk\x04ABC") is None
    assert command_length(b"\x1dk\x04ABC\x00") == 7
    assert command_length(b"\x10\x04\x01") == 3
    assert command_length(b"\x0a") == 1


def test_print_data_is_swallowed_not_parsed() -> None:
    sim = EscposSim()
    image = b"\x1b*\x00\x04\x00" + b"\x0a\x1dV\x00"  # 4 bytes of bit-image data that look like LF + cut
    reply = sim.on_bytes(b"\x1b@hello\n" + image + b"world\n\x1dVB\x00")
    assert reply == b""
    assert sim.printed_lines == ["hello", "world"]
    assert sim.cuts == 1
    assert sim.unknown == []


def test_realtime_anywhere_and_split_across_chunks() -> None:
    sim = EscposSim(paper="near_end")
    assert sim.on_bytes(b"abc\x10") == b""
    assert sim.on_bytes(b"\x04") == b""
    assert sim.on_bytes(b"\x04") == b"\x1e"  # DLE EOT 4 split over three chunks
    image = b"\x1b*\x00\x03\x00\x10\x04\x01"  # inside bit-image data: answered at receive time too
    assert sim.on_bytes(image) == b"\x12"


def test_offline_holds_the_buffer_but_answers_realtime() -> None:
    sim = EscposSim(cover="open")
    assert sim.on_bytes(b"\x1b@held\n\x1dI\x01\x10\x04\x02") == b"\x16"
    assert sim.printed_lines == []
    with sim.lock:
        sim.k["cover"] = "closed"
    assert sim.on_bytes(b"\x10\x04\x02") == b"\x12" + b"\x20"  # real-time first, then the held GS I 1
    assert sim.printed_lines == ["held"]


def test_identity_and_gs_r() -> None:
    sim = EscposSim(paper="end", model="TM-U220", model_id=0x0D)
    assert sim.on_bytes(b"\x1dr\x01") == b""  # offline: GS r waits in the buffer
    sim = EscposSim(paper="near_end", model="TM-U220", model_id=0x0D)
    assert sim.on_bytes(b"\x1dr\x01") == b"\x03"
    assert sim.on_bytes(b"\x1dI\x01\x1dIC") == b"\x0d_TM-U220\x00"
    assert sim.on_bytes(b"\x1dI\x45") == b""  # n = 69 not supported: silence
    assert EscposSim(identity=False).on_bytes(b"\x1dI\x01") == b""


def test_jam_on_cut_and_recovery() -> None:
    sim = EscposSim(jam_on_cut=True)
    sim.on_bytes(b"x\n\x1dVB\x00after\n")
    assert sim.cuts == 0 and sim.jammed and sim.printed_lines == ["x"]
    assert sim.on_bytes(b"\x10\x04\x03") == b"\x1a"
    sim.on_bytes(b"\x10\x05\x01")  # DLE ENQ 1: recover, print the rest
    assert not sim.jammed and sim.printed_lines == ["x", "after"]


def test_paper_runs_out() -> None:
    sim = EscposSim(paper_left_mm=10)
    sim.on_bytes(b"1\n2\n3\n4\n5\n")
    assert sim.paper_out and len(sim.printed_lines) == 3
    assert sim.on_bytes(b"\x10\x04\x04") == b"\x7e"


def test_slip_bytes_parse_cleanly() -> None:
    results = {"receipt.status": Result.ok("PRINTER_OK", "ready"), "ups.status": Result.warn("UPS_ON_BATTERY", "b"),
               "ups.battery": Result.fail("BATTERY_LOW", "low")}
    info = SlipInfo("SH-0042", "2026-01-01T03:00:00+08:00", "0.1.0", "EPSON TM-T88V", "30.03", results, "receipt")
    job = compose_slip(info, columns=42, qr=True, feed_lines=4, cut="partial")
    sim = EscposSim()
    assert sim.on_bytes(job.data) == b""
    assert sim.unknown == [] and sim.cuts == 1 and sim.qr_printed == ["SH-0042"]
    text = sim.printed
    assert "POSAGENT TEST SLIP" in text and "SH-0042" in text and "EPSON TM-T88V" in text
    assert any(line.startswith("ups") and "FAIL" in line and "BATTERY_LOW" in line for line in sim.printed_lines)
    assert all(len(line) <= 42 for line in sim.printed_lines)
    assert job.lines == len(job.text) + 1 + 4


def test_plain_lines_wrap_and_encode() -> None:
    job = compose_lines(["a" * 50, "巡检 报告"], columns=32, encoding="gb18030", feed_lines=2, cut="full")
    sim = EscposSim()
    sim.on_bytes(job.data)
    assert sim.printed_lines == ["a" * 32, "a" * 18, "巡检 报告"]
    assert sim.cuts == 1 and job.lines == 3 + 2
    ascii_job = compose_lines(["déjà\x10\x04\x01"], columns=32, encoding="ascii", feed_lines=0, cut="none")
    assert b"\x10" not in ascii_job.data and ascii_job.cuts == 0
    assert hard_wrap("巡检巡检", 4) == ["巡检", "巡检"]


def test_counters_persist_and_lock(tmp_path: Path) -> None:
    path = counter_path(str(tmp_path / "state"), "rec eipt/1")
    assert path.endswith("printer-rec_eipt_1.json")
    store = CounterStore(path)
    threads = [threading.Thread(target=store.add_printed, args=(1, 4.0, 0)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    c = store.read()
    assert c.ribbon_lines == 20 and c.lines_total == 20 and c.paper_mm == 80.0
    assert store.paper_state(True).paper_mm == 0.0
    first = store.read().paper_end_at
    assert first is not None and store.paper_state(True).paper_end_at == first  # one event, not every poll
    store.paper_state(False)
    assert not store.read().paper_end_active
    after, old = store.ribbon_changed()
    assert old == 20 and after.ribbon_lines == 0 and after.ribbon_changed_at
    assert json.loads(Path(path).read_text())["schema"] == 1


def test_corrupt_counters_start_over(tmp_path: Path) -> None:
    path = tmp_path / "printer-x.json"
    path.write_text('{"ribbon_lines": "many", "paper_mm": -5, "lines_total": 7', encoding="utf-8")
    assert CounterStore(str(path)).read().ribbon_lines == 0
    path.write_text('{"ribbon_lines": "many", "paper_mm": -5, "lines_total": 7}', encoding="utf-8")
    c = CounterStore(str(path)).read()
    assert (c.ribbon_lines, c.paper_mm, c.lines_total) == (0, 0.0, 7)


@pytest.mark.parametrize("lines, life, warn, expected", [
    (0, 0, 80, ("unknown", None)), (10, 100, 80, ("ok", 10.0)), (80, 100, 80, ("near_end", 80.0)),
    (150, 100, 80, ("end", 150.0)),
])
def test_ribbon_grade(lines: int, life: int, warn: float, expected: tuple[str, float | None]) -> None:
    assert ribbon_grade(lines, life, warn) == expected
