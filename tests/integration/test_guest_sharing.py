"""``share = "guest"``: the POS application owns the printer; posagent asks only when it is
free. Real processes throughout: the daemon (``posagent run``), a stand-in POS application
(``pos_app.py``) holding flock, a UUCP lock file or TIOCEXCL on the port, the printer
simulator on a real pty (or a loopback port serving one connection at a time) recording
every byte it receives, and a real HTTP collector receiving the heartbeats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.drivers.simulator import SimHandle, start_sim
from tests.conftest import REPO, hours_window, run_cli
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config

POLL = "200ms"


def printer(url: str, extra: str = "") -> str:
    return f"""
[[device]]
name = "receipt"
driver = "escpos"
url = "{url}"
{extra}
"""


def heartbeats(rs: list[Received]) -> list[dict[str, Any]]:
    return [r.json for r in rs if r.json and r.status == 200 and r.json["schema"] == "posagent.heartbeat/1"]


def events(rs: list[Received]) -> list[dict[str, Any]]:
    return [r.json for r in rs if r.json and r.json["schema"] == "posagent.event/1"]


class PosApp:
    """pos_app.py in its own process; ``wait_line`` reads its stdout with a deadline."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.pos_app", *args], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})

    def wait_line(self, expected: str, timeout: float = 10.0) -> None:
        assert self.proc.stdout is not None
        import select

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = self.proc.stdout.readline()
            if line.strip() == expected:
                return
            if not line:
                break
        raise AssertionError(f"pos_app did not say {expected!r} within {timeout} s")

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.wait_line("released")
        self.proc.wait(10.0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10.0)


@pytest.fixture
def lock_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "lock"
    d.mkdir()
    yield d


def run_daemon(tmp_path: Path, c: Collector, devices: str, lock_dir: Path, poll: str = POLL) -> DaemonProc:
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-GUEST", c.url, system=False,
                        schedule=[f'status_poll = "{poll}"', 'event_dedupe = "1s"'], devices=devices)
    return DaemonProc(["--config", str(cfg)], tmp_path, env={"POSAGENT_LOCK_DIR": str(lock_dir)})


def fresh_printer(hb: dict[str, Any]) -> bool:
    dev = hb["devices"]["receipt"]
    return dev["code"] == "PRINTER_OK" and not dev.get("busy")


@pytest.mark.parametrize("how", ["flock", "uucp", "excl"])
def test_a_held_port_gets_no_byte_and_the_heartbeat_keeps_the_last_reading(
        tmp_path: Path, sim: SimHandle, lock_dir: Path, how: str) -> None:
    path = sim.url.removeprefix("serial://")
    with Collector() as c, run_daemon(tmp_path, c, printer(sim.url), lock_dir) as d:
        assert c.wait_for(lambda rs: any(fresh_printer(h) for h in heartbeats(rs)), 30.0), d.stderr()
        pos = PosApp(how, path, "30", env={"POSAGENT_LOCK_DIR": str(lock_dir)})
        try:
            pos.wait_line("ready")
            held_at = time.monotonic()
            with sim.sim.lock:
                before = len(sim.sim.received)
            n_before = len(heartbeats(c.received))
            # hold it for 5 s while the daemon polls every 0.2 s and beats every 1 s
            assert c.wait_for(lambda rs: len(heartbeats(rs)) >= n_before + 5, 30.0), d.stderr()
            with sim.sim.lock:
                during = len(sim.sim.received) - before
            held_for = time.monotonic() - held_at
            busy = [h["devices"]["receipt"] for h in heartbeats(c.received)[n_before + 1:]]
            pos.release()
            released_at = time.monotonic()
            n_release = len(heartbeats(c.received))
            assert c.wait_for(lambda rs: any(fresh_printer(h) for h in heartbeats(rs)[n_release:]), 10.0)
            fresh_after = time.monotonic() - released_at
        finally:
            pos.close()
        with sim.sim.lock:
            after = len(sim.sim.received) - before - during
    print(f"\n{how}: held {held_for:.1f} s, posagent bytes while held: {during}, "
          f"fresh reading {fresh_after:.2f} s after release, busy heartbeats: {len(busy)}")
    assert during == 0, f"posagent wrote {during} bytes to a port held with {how}"
    assert busy and all(b["busy"] is True for b in busy)
    assert all(b["status"] == "ok" and b["code"] == "PRINTER_OK" and b["paper"] == "ok" for b in busy)
    ages = [b["status_age_s"] for b in busy]
    assert all(a is not None and a >= 0 for a in ages) and ages == sorted(ages)
    assert after > 0  # asked again once free
    assert not [e for e in events(c.received) if e["device"] == "receipt"]


def test_a_stale_lock_file_is_ignored_and_said_so(tmp_path: Path, sim: SimHandle, lock_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10.0)
    name = "LCK.." + os.path.realpath(sim.url.removeprefix("serial://")).removeprefix("/dev/").replace("/", "_")
    (lock_dir / name).write_text(f"{dead.pid:10d}\n", encoding="ascii")
    with Collector() as c, run_daemon(tmp_path, c, printer(sim.url), lock_dir) as d:
        assert c.wait_for(lambda rs: any(fresh_printer(h) for h in heartbeats(rs)), 30.0), d.stderr()
        err = d.stderr()
    assert "ignoring the stale lock file" in err and f"process {dead.pid} is not running" in err


def test_the_device_is_open_only_while_it_is_asked(tmp_path: Path, sim: SimHandle, lock_dir: Path) -> None:
    """50 samples of the daemon's open fds over 10 s at a 1 s poll: as a guest the printer
    is almost never open; as an owner it always is (which this test would catch)."""
    real = os.path.realpath(sim.url.removeprefix("serial://"))
    seen: dict[str, int] = {}
    for share in ("guest", "owner"):
        work = tmp_path / share
        work.mkdir()
        with Collector() as c, run_daemon(work, c, printer(sim.url, f'share = "{share}"'), lock_dir, "1s") as d:
            assert c.wait_for(lambda rs: any(fresh_printer(h) for h in heartbeats(rs)), 30.0), d.stderr()
            hits = 0
            tick = threading.Event()
            start = time.monotonic()
            for i in range(50):
                if any(_readlink(f"/proc/{d.proc.pid}/fd/{fd}") == real for fd in _fds(d.proc.pid)):
                    hits += 1
                left = start + (i + 1) * 0.2 - time.monotonic()
                if left > 0:
                    tick.wait(left)  # the sampling period itself, not a wait for anything
        seen[share] = hits
    print(f"\nprinter open in {seen['guest']}/50 samples as a guest, {seen['owner']}/50 as an owner")
    assert seen["guest"] <= 2, seen  # < 5 % of the time
    assert seen["owner"] >= 45, seen


def _fds(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def test_a_printer_serving_one_connection_is_never_kept_from_the_pos_app(tmp_path: Path, lock_dir: Path) -> None:
    seconds = float(os.environ.get("POSAGENT_GUEST_TCP_S", "30"))
    handle = start_sim("escpos", {"transport": "tcp"})
    try:
        host_port = handle.url.removeprefix("tcp://")
        with Collector() as c, run_daemon(tmp_path, c, printer(handle.url), lock_dir) as d:
            assert c.wait_for(lambda rs: any(fresh_printer(h) for h in heartbeats(rs)), 30.0), d.stderr()
            host, port = host_port.split(":")
            pos = subprocess.run([sys.executable, "-m", "tests.integration.pos_app", "tcp", host, port, str(seconds)],
                                 cwd=REPO, capture_output=True, text=True, timeout=seconds + 60)
            polled = len(heartbeats(c.received))
    finally:
        handle.stop()
    report = json.loads(pos.stdout)
    waits = sorted(report["waits_ms"])
    print(f"\nPOS app: {report['exchanges']} exchanges in {seconds:g} s, {report['failed']} failed; wait median "
          f"{waits[len(waits) // 2]:.1f} ms, max {waits[-1]:.1f} ms; daemon heartbeats meanwhile: {polled}")
    assert report["failed"] == 0
    assert report["exchanges"] >= seconds * 5
    # One exchange of posagent's (DLE EOT 1-4 on a healthy printer) takes milliseconds; a
    # held connection would make the POS app wait for its whole 5 s timeout.
    assert waits[-1] < 1000.0


def test_selftest_on_a_busy_printer_is_unknown_not_fail(tmp_path: Path, sim: SimHandle, lock_dir: Path) -> None:
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-GUEST", "http://127.0.0.1:9/", system=False,
                        check_timeout="1s", devices=printer(sim.url))
    pos = PosApp("flock", sim.url.removeprefix("serial://"), "30")
    try:
        pos.wait_line("ready")
        r = run_cli("selftest", "--config", str(cfg), "--only", "receipt", "--json",
                    env={"POSAGENT_LOCK_DIR": str(lock_dir)})
    finally:
        pos.close()
    report = json.loads(r.stdout)
    checks = {ch["name"]: ch for ch in report["checks"]}
    assert r.returncode == 3, r.stderr
    assert checks["status"]["code"] == "DEVICE_BUSY" and checks["status"]["status"] == "unknown"
    assert all(ch["status"] != "fail" for ch in report["checks"])


@pytest.mark.parametrize("inside", [True, False])
def test_the_slip_waits_for_the_quiet_window_while_the_pos_app_has_the_port_open(
        tmp_path: Path, sim: SimHandle, lock_dir: Path, inside: bool) -> None:
    cfg = daemon_config(tmp_path / "posagent.toml", "SIM-GUEST", "http://127.0.0.1:9/", system=False,
                        check_timeout="5s", devices=printer(sim.url),
                        schedule=[f'business_hours = "{hours_window(inside)}"'])
    pos = PosApp("open", sim.url.removeprefix("serial://"), "60")
    try:
        pos.wait_line("ready")
        r = run_cli("selftest", "--config", str(cfg), "--only", "receipt", "--level", "external", "--json",
                    env={"POSAGENT_LOCK_DIR": str(lock_dir)})
    finally:
        pos.close()
    slip = next(ch for ch in json.loads(r.stdout)["checks"] if ch["name"] == "slip")
    if inside:
        assert (slip["status"], slip["code"]) == ("unknown", "DEVICE_BUSY"), slip
        assert "quiet window" in slip["message"] and r.returncode == 3
        assert not sim.sim.printed_lines
    else:
        assert (slip["status"], slip["code"]) == ("ok", "SLIP_OK"), slip
        assert sim.sim.cuts == 1
