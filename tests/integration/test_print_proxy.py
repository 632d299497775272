"""``share = "proxy"``: posagent owns the printer and the POS application prints through it.
Real processes: the daemon (``posagent run``) polling status every 0.2 s, a stand-in POS
application (``pos_app.py print``) printing receipts through the proxy's TCP port or pty,
the printer simulator on a real pty recording every byte, a real HTTP collector."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from posagent.drivers.simulator import SimHandle
from tests.conftest import REPO, free_port
from tests.integration.collector import Collector
from tests.integration.daemon_proc import DaemonProc, daemon_config
from tests.integration.pos_app import receipt

EOT_QUERIES = {bytes((0x10, 0x04, n)) for n in (1, 2, 3, 4)}


def proxy_printer(url: str, extra: str) -> str:
    return f"""
[[device]]
name = "receipt"
driver = "escpos"
url = "{url}"
share = "proxy"
job_idle = "500ms"
{extra}
"""


def counters(state: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state / "printer-receipt.json").read_text()))
    except (OSError, ValueError):
        return {}


def wait_until(check: Any, timeout: float) -> bool:
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        tick.wait(0.05)  # polling a file another process writes
    return bool(check())


def split_stream(received: bytes, jobs: list[bytes]) -> tuple[int, int]:
    """Walk what the printer received: each job must appear whole, in order, and only
    posagent's own 3-byte DLE EOT queries may stand between jobs. Returns (jobs found,
    queries between them); raises AssertionError at the first byte that is neither."""
    p, k, queries = 0, 0, 0
    while p < len(received):
        if k < len(jobs) and received.startswith(jobs[k], p):
            p += len(jobs[k])
            k += 1
        elif received[p:p + 3] in EOT_QUERIES:
            p += 3
            queries += 1
        else:
            raise AssertionError(f"byte {p}: neither job {k} nor a status query: {received[p:p + 16]!r}")
    return k, queries


def test_receipts_pass_whole_between_status_polls_and_are_counted(tmp_path: Path, sim: SimHandle) -> None:
    n = int(os.environ.get("POSAGENT_PROXY_RECEIPTS", "50"))
    port = free_port()
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-PROXY", "http://127.0.0.1:9/", system=False,
                        schedule=['status_poll = "200ms"'],
                        devices=proxy_printer(sim.url, f'proxy_listen = "tcp://127.0.0.1:{port}"'))
    state = tmp_path / "state"
    with DaemonProc(["--config", str(cfg)], tmp_path) as d:
        assert wait_until(lambda: "print proxy listening" in d.stderr(), 30.0), d.stderr()
        t0 = time.monotonic()
        pos = subprocess.run([sys.executable, "-m", "tests.integration.pos_app", "print", "127.0.0.1", str(port),
                              str(n)], cwd=REPO, capture_output=True, text=True, timeout=120 + n)
        took = time.monotonic() - t0
        assert pos.returncode == 0, pos.stderr
        assert wait_until(lambda: counters(state).get("cuts_total", 0) >= n, 30.0), (counters(state), d.stderr())
        assert wait_until(lambda: sim.sim.cuts >= n, 10.0)  # the simulator reads the pty in its own thread
        c = counters(state)
    with sim.sim.lock:
        received = bytes(sim.sim.received)
        printed = (len(sim.sim.printed_lines), sim.sim.cuts, sim.sim.printed_mm)
    jobs = [receipt(i) for i in range(n)]
    found, queries = split_stream(received, jobs)
    print(f"\n{n} receipts through the proxy in {took:.1f} s with status polls every 0.2 s: {found} arrived "
          f"whole and in order, {queries} status queries between them, 0 inside; counters {c}")
    assert found == n
    assert queries >= 4 * int(took / 0.2 / 2)  # the daemon did poll meanwhile (4 queries a poll)
    assert (c["lines_total"], c["cuts_total"]) == printed[:2]
    assert c["paper_mm"] == pytest.approx(printed[2], abs=0.1 * n)


@pytest.mark.slow
def test_two_hundred_receipts(tmp_path: Path, sim: SimHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSAGENT_PROXY_RECEIPTS", "200")
    test_receipts_pass_whole_between_status_polls_and_are_counted(tmp_path, sim)


def test_the_pty_path_and_the_listener_address(tmp_path: Path, sim: SimHandle) -> None:
    port = free_port()
    link = tmp_path / "receipt"
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-PROXY", "http://127.0.0.1:9/", system=False,
                        devices=proxy_printer(sim.url, f'proxy_listen = "tcp://127.0.0.1:{port}"\n'
                                                       f'proxy_pty = "{link}"'))
    with DaemonProc(["--config", str(cfg)], tmp_path) as d:
        assert wait_until(lambda: link.is_symlink(), 30.0), d.stderr()
        pos = subprocess.run([sys.executable, "-m", "tests.integration.pos_app", "printpty", str(link), "3"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert pos.returncode == 0, pos.stderr
        assert wait_until(lambda: counters(tmp_path / "state").get("cuts_total", 0) >= 3, 30.0), d.stderr()
        assert wait_until(lambda: sim.sim.cuts >= 3, 10.0)
        with pytest.raises(OSError):  # the listener is on 127.0.0.1 only
            socket.create_connection(("127.0.0.2", port), timeout=2.0).close()
    with sim.sim.lock:
        received = bytes(sim.sim.received)
    assert split_stream(received, [receipt(0) + receipt(1) + receipt(2)])[0] == 1
    assert not link.exists()  # the symlink goes with the daemon


def test_a_job_the_printer_cannot_take_is_reported_not_dropped(tmp_path: Path) -> None:
    port = free_port()
    gone = tmp_path / "ttyGONE"
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "SIM-PROXY", c.url, system=False,
                            devices=proxy_printer(f"serial://{gone}", f'proxy_listen = "tcp://127.0.0.1:{port}"\n'
                                                                      'job_timeout = "2s"'))
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert wait_until(lambda: "print proxy listening" in d.stderr(), 30.0), d.stderr()
            pos = subprocess.run([sys.executable, "-m", "tests.integration.pos_app", "print", "127.0.0.1",
                                  str(port), "1"], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert pos.returncode == 0, pos.stderr
            assert c.wait_for(lambda rs: any(r.json and r.json.get("event") == "device_notice" for r in rs), 30.0), \
                d.stderr()
    event = next(r.json for r in c.received if r.json and r.json.get("event") == "device_notice")
    cur = event["current"]
    assert event["device"] == "receipt" and (cur["status"], cur["code"]) == ("fail", "PRINT_JOB_LOST")
    assert cur["client"].startswith("127.0.0.1:") and cur["measurements"]["bytes_lost"] == len(receipt(0))
