"""The bar: a swiped test PAN appears nowhere in any output, file or log of the agent; the
masked form appears where the result is shown.

A known test card goes through the reader simulator over a real pty (and through a
simulated keyboard-wedge reader's event pipe), via the real command line
(``posagent --debug selftest --level interactive --only card-reader``, then the
heartbeat that spools the results, then the history) and via the driver and runner in
this process with logging at DEBUG. Every output, log record and every file under the
state dir (history store, outbox spool) is searched for the PAN and the track text.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posagent.core.base import CheckContext, Level, Result, Status
from posagent.drivers.cardreader import CardReaderDriver
from posagent.drivers.cardreader.sim import TEST_PAN
from posagent.selftest.devices import DeviceSet
from posagent.selftest.render import report_json
from posagent.selftest.runner import Runner, call_with_timeout
from tests.conftest import DriverBuilder, device_entry, free_port, run_cli

MASKED = "476173******0010"
#: What must never appear: the PAN (also with the spaces a printed card shows), the
#: cardholder name, the expiry + service code, and whole track fragments.
SECRETS = [TEST_PAN, b"4761 7390 0101 0010", b"TEST/CARD", b"3012201", b"=30122010", b"^30122010",
           TEST_PAN[6:12] + TEST_PAN[12:]]


def leaks(data: bytes | str) -> list[bytes]:
    """The secrets found in ``data``, as UTF-8 (JSON, logs) or UTF-16 (SQLite may store text so)."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return [s for s in SECRETS for form in (s, s.decode().encode("utf-16-le"), s.decode().encode("utf-16-be"))
            if form in raw]


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# -- through the real command line --------------------------------------------------------
def test_cli_selftest_heartbeat_and_history_never_show_the_pan(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    os.chmod(token, 0o600)
    cfg = tmp_path / "posagent.toml"
    cfg.write_text(
        f'[agent]\nterminal_id = "LEAK-1"\nstate_dir = "{state}"\n'
        f'[upstream]\nurl = "http://127.0.0.1:{free_port()}/hb"\ntoken_file = "{token}"\n'
        'allow_insecure_http = true\ntimeout = "1s"\n'
        '[[device]]\nname = "card-reader"\ndriver = "card-reader"\nurl = "sim://card-reader?swipe=visa"\n'
        '[[device]]\nname = "wedge-reader"\ndriver = "card-reader"\nurl = "sim://card-reader?swipe=none"\n'
        '[device.options]\nwedge = "sim://keypad?swipe=visa"\n', encoding="utf-8")
    outputs: list[str] = []
    table = run_cli("--debug", "selftest", "--config", str(cfg), "--level", "interactive",
                    "--only", "card-reader,wedge-reader", input="\n\n")
    outputs += [table.stdout, table.stderr]
    assert table.returncode == 0, table.stdout + table.stderr
    assert table.stdout.count(MASKED) >= 2  # the result shows the masked form, for both readers
    js = run_cli("--debug", "selftest", "--config", str(cfg), "--level", "interactive", "--json",
                 "--only", "card-reader,wedge-reader", input="\n\n")
    outputs += [js.stdout, js.stderr]
    swipes = [c for c in json.loads(js.stdout)["checks"] if c["name"] == "swipe"]
    assert [(c["code"], MASKED in c["message"]) for c in swipes] == [("READER_SWIPE_OK", True)] * 2
    assert all("masked_pan" not in c["measurements"] for c in swipes)  # a fact, never sent upstream
    hb = run_cli("--debug", "heartbeat", "--send", "--config", str(cfg), "--json")
    outputs += [hb.stdout, hb.stderr]
    assert hb.returncode == 75, hb.stderr  # nobody listens upstream: the heartbeat stays in the spool
    assert MASKED in hb.stdout  # the heartbeat carries the last self-test, masked
    hist = run_cli("--debug", "history", "--config", str(cfg), "--json")
    outputs += [hist.stdout, hist.stderr]
    assert hist.returncode == 0, hist.stderr
    for text in outputs:
        assert not leaks(text), text
    stored = files_under(tmp_path)
    names = [p.name for p in stored]
    assert any(n.startswith("history") for n in names) and any(n.startswith("outbox") for n in names), names
    for path in stored:
        assert not leaks(path.read_bytes()), path
    assert any(MASKED.encode() in p.read_bytes() for p in stored)  # the masked result was kept


# -- through the driver and the runner, logging at DEBUG ------------------------------------
@pytest.fixture
def devices(build_driver: DriverBuilder) -> Callable[..., DeviceSet]:
    """devices(*device_entries) -> a DeviceSet built through the config loader, closed at the end."""
    return build_driver.devices


def reader(name: str, url: str, **options: Any) -> dict[str, Any]:
    return device_entry(name, "card-reader", url, options)


CASES = [
    ("good", "sim://card-reader?swipe=visa", {}, Status.OK, "READER_SWIPE_OK"),
    ("good-idtech", "sim://card-reader?swipe=visa", {"profile": "idtech"}, Status.OK, "READER_SWIPE_OK"),
    ("unframed", "sim://card-reader?swipe=visa-nolrc", {"swipe_framed": False}, Status.OK, "READER_SWIPE_OK"),
    ("bad-track-lrc", "sim://card-reader?swipe=bad-lrc", {}, Status.FAIL, "READER_TRACK_ERROR"),
    ("bad-frame-lrc", "sim://card-reader?swipe=visa&bad_lrc=true", {}, Status.FAIL, "READER_BAD_CHECKSUM"),
    ("no-end", "sim://card-reader?swipe=no-end", {}, Status.FAIL, "READER_TRACK_ERROR"),
    ("unreadable", "sim://card-reader?swipe=unreadable", {}, Status.FAIL, "READER_TRACK_ERROR"),
    ("wedge", "sim://card-reader?swipe=none", {"wedge": "sim://keypad?swipe=visa"}, Status.OK, "READER_SWIPE_OK"),
    ("nobody", "sim://card-reader?swipe=none", {"swipe_timeout": "1s"}, Status.UNKNOWN, "READER_NO_SWIPE"),
]


def test_runner_results_and_debug_logs_never_carry_card_data(devices: Any, caplog: Any, capsys: Any) -> None:
    caplog.set_level(logging.DEBUG)
    ds = devices(*(reader(name, url, **opts) for name, url, opts, _, _ in CASES))
    said: list[str] = []
    runner = Runner(ds, prompt=lambda text: said.append(text) or "", say=said.append)
    report = runner.selftest(Level.INTERACTIVE)
    got = {c.device: c.result for c in report.checks if c.name == "swipe"}
    assert {n: (r.status, r.code) for n, r in got.items()} == {n: (s, c) for n, _, _, s, c in CASES}
    for name in ("good", "good-idtech", "unframed", "wedge", "bad-track-lrc", "unreadable"):
        shown = got[name].message + json.dumps(got[name].measurements)
        assert (MASKED in shown) == (name not in ("unreadable",)), (name, shown)
    everything = [json.dumps(report_json(report)), caplog.text, *said, *capsys.readouterr()]
    everything += [repr(r) for r in got.values()]
    for text in everything:
        assert not leaks(text), text


def test_driver_swipe_from_a_test_pushed_card(devices: Any, caplog: Any) -> None:
    """A test acting as the technician: pushes the track bytes itself when prompted."""
    caplog.set_level(logging.DEBUG)
    # As the owner, the stream (and the simulator behind it) stays open between checks.
    ds = devices(device_entry("r", "card-reader", "sim://card-reader?swipe=none", share="owner"))
    driver = ds.get("r")
    assert isinstance(driver, CardReaderDriver)
    check = next(c for c in driver.checks() if c.name == "swipe")
    assert driver.checks()[0].run(CheckContext(deadline=time.monotonic() + 5)).code == "READER_OK"
    stream = driver._link.stream
    assert stream is not None and stream.sim is not None
    track2 = b";" + TEST_PAN + b"=30122010000000000000?"
    ctx = CheckContext(deadline=time.monotonic() + 10, say=lambda text: stream.sim.sim.swipe(track2))
    r: Result = call_with_timeout(lambda: check.run(ctx), 10, "swipe")
    assert (r.status, r.code) == (Status.OK, "READER_SWIPE_OK"), r
    assert r.facts["track2"] == "ok" and "track1" not in r.facts and "track1" not in r.measurements
    assert MASKED in r.message
    assert not leaks(repr(r)) and not leaks(caplog.text)
