"""``share = "proxy"``: posagent owns the printer and the POS application prints through it.

Two layers, all with real sockets, ptys and processes:

- the proxy itself (``escpos.proxy``) in this process, on the printer simulator (a real
  pty or TCP port recording every byte), with posagent's status poll running every 0.2 s
  through the same ``Link`` in a thread, and the POS application a separate process
  (``pos_app.py``) printing receipts through the TCP port or the pty;
- the real daemon (``posagent run``) serving the proxy from its config, with a real HTTP
  collector for the lost-job event.

``POSAGENT_PROXY_RECEIPTS`` sets how many receipts the main runs print (default 50; the
slow test prints 200, the issue's bar)."""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from posagent.config.urls import parse_url
from posagent.core.errors import DeviceError
from posagent.drivers.escpos import proxyjob
from posagent.drivers.escpos.jobscan import JobCounts
from posagent.drivers.escpos.proxy import PrintProxy, ProxyError
from posagent.drivers.escpos.status import EOT_KINDS, check_eot_reply, eot_query
from posagent.drivers.simulator import SimHandle, start_sim
from posagent.drivers.transport.link import Link
from tests.conftest import REPO, free_port, wait_until
from tests.integration.collector import Collector
from tests.integration.daemon_proc import DaemonProc, daemon_config
from tests.integration.pos_app import raster, receipt

EOT_QUERIES = {bytes((0x10, 0x04, n)) for n in (1, 2, 3, 4)}


def receipts_to_print() -> int:
    return int(os.environ.get("POSAGENT_PROXY_RECEIPTS", "50"))


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


def eot_in(data: bytes) -> int:
    """DLE EOT 1-4 anywhere in ``data``: the simulated printer answers each with a byte."""
    return sum(data.count(bytes((0x10, 0x04, n))) for n in (1, 2, 3, 4))


def received(sim: SimHandle) -> bytes:
    with sim.sim.lock:
        return bytes(sim.sim.received)


class Reports:
    """What the proxy reported: ``on_job`` and ``on_lost`` calls, with when they came."""

    def __init__(self) -> None:
        self.done: list[tuple[JobCounts, str]] = []
        self.lost: list[tuple[str, int, str, float]] = []
        self.cond = threading.Condition()

    def on_job(self, counts: JobCounts, client: str) -> None:
        with self.cond:
            self.done.append((counts, client))
            self.cond.notify_all()

    def on_lost(self, client: str, n: int, reason: str) -> None:
        with self.cond:
            self.lost.append((client, n, reason, time.monotonic()))
            self.cond.notify_all()

    def wait_jobs(self, n: int, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.done) >= n, timeout)

    def wait_lost(self, n: int, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.lost) >= n, timeout)

    def total(self) -> JobCounts:
        t = JobCounts()
        for c, _ in self.done:
            t.lines, t.cuts, t.images = t.lines + c.lines, t.cuts + c.cuts, t.images + c.images
            t.paper_mm, t.bytes, t.realtime = t.paper_mm + c.paper_mm, t.bytes + c.bytes, t.realtime + c.realtime
        return t


@contextmanager
def serving(url: str, *, listen: tuple[str, int] | None = ("127.0.0.1", 0), pty_path: str | None = None,
            job_idle: float = 0.3, job_timeout: float = 5.0) -> Iterator[tuple[PrintProxy, Reports, Link]]:
    """A proxy on the printer at ``url`` (held open, as share = "proxy" does)."""
    link = Link(parse_url(url), where="printer", share="proxy", timeout=1.0)
    reports = Reports()
    p = PrintProxy(link, listen=listen, pty_path=pty_path, job_idle=job_idle, job_timeout=job_timeout,
                   on_job=reports.on_job, on_lost=reports.on_lost)
    p.start()
    try:
        yield p, reports, link
    finally:
        p.close()
        link.close()


class StatusPoller:
    """posagent's status poll every ``every`` s through the proxy's own Link, as the
    driver's ``read_status`` asks: flush, then DLE EOT 1-4, one validated byte each. Records
    how long each poll waited for the printer (a job in progress holds it)."""

    def __init__(self, link: Link, every: float = 0.2) -> None:
        self.link = link
        self.every = every
        self.waits: list[float] = []
        self.polls = 0
        self.failures = 0
        self.queries = 0  # DLE EOT written to the printer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-poller", daemon=True)

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            t0 = time.perf_counter()
            with self.link.lock:
                self.waits.append(time.perf_counter() - t0)
                try:
                    self.link.exchange(self._status)
                    self.polls += 1
                except DeviceError:
                    self.failures += 1

    def _status(self, s: Any) -> list[int]:
        s.flush_input()
        out = []
        for n in EOT_KINDS:
            s.write(eot_query(n), timeout=1.0)
            self.queries += 1
            out.append(check_eot_reply(n, s.read_exact(1, 1.0)))
        return out


def connect(p: PrintProxy, timeout: float = 10.0) -> socket.socket:
    assert p.address is not None
    return socket.create_connection(p.address, timeout=timeout)


def local_name(s: socket.socket) -> str:
    """The client's address as the proxy names it: host:port."""
    host, port = s.getsockname()[:2]
    return f"{host}:{port}"


def print_job(p: PrintProxy, job: bytes) -> str:
    """Send ``job`` on a connection of its own, close our side, read the answers until the
    proxy closes; the client's address (``local_name``)."""
    with connect(p) as s:
        name = local_name(s)
        s.sendall(job)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    return name


# -- the proxy in this process, the POS application a process of its own ----------------
def run_receipts(n: int, sim: SimHandle) -> None:
    jobs = [receipt(i) for i in range(n)]
    with serving(sim.url) as (p, reports, link), StatusPoller(link) as poller:
        assert p.address is not None
        t0 = time.monotonic()
        pos = subprocess.run([sys.executable, "-m", "tests.integration.pos_app", "print", p.address[0],
                              str(p.address[1]), str(n)], cwd=REPO, capture_output=True, text=True, timeout=120 + n)
        took = time.monotonic() - t0
        assert pos.returncode == 0, pos.stderr
        assert reports.wait_jobs(n, 30.0), (len(reports.done), reports.lost)
        assert wait_until(lambda: sim.sim.cuts >= n, 10.0)  # the simulator reads the pty in a thread of its own
    got = received(sim)
    with sim.sim.lock:
        printed = (len(sim.sim.printed_lines), sim.sim.cuts, sim.sim.images, sim.sim.printed_mm)
    found, queries = split_stream(got, jobs)
    total = reports.total()
    back = json.loads(pos.stdout)["bytes_back"]
    waits = sorted(poller.waits)
    print(f"\n{n} receipts ({total.bytes} bytes) through the proxy in {took:.2f} s, status polled every 0.2 s "
          f"through the same link: {found} arrived whole and in order; {poller.polls} polls ({queries} DLE EOT) "
          f"between them and none inside; {poller.failures} failed polls; a poll waited for a job at most "
          f"{waits[-1] * 1000:.1f} ms (median {waits[len(waits) // 2] * 1000:.2f} ms); {back} answer bytes "
          f"relayed to the POS application; counted {total.lines} lines, {total.cuts} cuts, "
          f"{total.paper_mm:.1f} mm = printer {printed[0]}, {printed[1]}, {printed[3]:.1f} mm")
    assert found == n and not reports.lost
    assert queries == poller.queries and poller.failures == 0
    assert poller.polls >= int(took / 0.2 / 2)  # the poll did run meanwhile
    assert total.bytes == sum(map(len, jobs))
    assert (total.lines, total.cuts, total.images) == printed[:3]
    assert total.paper_mm == pytest.approx(printed[3], abs=0.005 * 20 * n)  # the printer rounds each advance
    assert total.realtime == 0  # the DLE EOT in the images were data
    assert back == sum(map(eot_in, jobs))  # and the printer's answers to them went back to the POS application
    assert all(client.startswith("127.0.0.1:") for _, client in reports.done)
    assert p.peak_buffered <= proxyjob.CHUNK


def test_receipts_from_a_pos_process_pass_whole_between_status_polls(sim: SimHandle) -> None:
    run_receipts(receipts_to_print(), sim)


@pytest.mark.slow
def test_two_hundred_receipts_under_status_polls(sim: SimHandle) -> None:
    run_receipts(200, sim)


def test_the_pty_path_survives_the_pos_application_reopening_it(tmp_path: Path, sim: SimHandle) -> None:
    path = tmp_path / "receipt"
    path.symlink_to(tmp_path / "stale-pts")  # left by a crashed run: replaced
    with serving(sim.url, listen=None, pty_path=str(path)) as (p, reports, _link):
        assert p.address is None and os.readlink(path) == p.pty_name
        for run, count in enumerate((3, 2), 1):  # two runs of the POS application, each opening the symlink
            pos = subprocess.run([sys.executable, "-m", "tests.integration.pos_app", "printpty", str(path),
                                  str(count)], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert pos.returncode == 0, pos.stderr
            assert reports.wait_jobs(run, 10.0)  # a job ends after job_idle of silence
        assert wait_until(lambda: sim.sim.cuts >= 5, 10.0)
    assert not path.exists() and not path.is_symlink()  # the symlink goes with the proxy
    runs = [receipt(0) + receipt(1) + receipt(2), receipt(0) + receipt(1)]
    assert split_stream(received(sim), runs)[0] == 2
    assert [c.bytes for c, _ in reports.done] == list(map(len, runs))
    assert [client for _, client in reports.done] == ["pty", "pty"]
    assert reports.total().cuts == 5 and not reports.lost


def test_a_regular_file_at_the_pty_path_is_never_replaced(tmp_path: Path, sim: SimHandle) -> None:
    path = tmp_path / "receipt"
    path.write_text("not ours")
    link = Link(parse_url(sim.url), share="proxy")
    p = PrintProxy(link, listen=None, pty_path=str(path), on_job=Reports().on_job, on_lost=Reports().on_lost)
    with pytest.raises(ProxyError, match="not a symlink"):
        p.start()
    p.close()
    link.close()
    assert path.read_text() == "not ours"


def test_the_listener_is_on_the_configured_address_only(sim: SimHandle) -> None:
    with serving(sim.url) as (p, reports, _link):
        assert p.address is not None and p.address[0] == "127.0.0.1" and p.address[1] > 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", p.address[1]), timeout=2.0).close()
        with pytest.raises(OSError):  # ::1 (or no IPv6 at all)
            socket.create_connection(("::1", p.address[1]), timeout=2.0).close()
        print_job(p, receipt(0))  # while the configured address serves
        assert reports.wait_jobs(1)


def test_clients_are_served_one_at_a_time_in_order(sim: SimHandle) -> None:
    first, second = receipt(1), receipt(2)
    with serving(sim.url) as (p, reports, _link):
        a = connect(p)
        a.sendall(first[:120])
        assert wait_until(lambda: len(received(sim)) >= 120, 5.0)  # the first client's job has begun
        b = connect(p)  # waits in the backlog
        b.sendall(second)
        b.shutdown(socket.SHUT_WR)
        threading.Event().wait(0.15)  # (the first client's own pace, shorter than job_idle)
        a.sendall(first[120:])
        a.shutdown(socket.SHUT_WR)
        assert reports.wait_jobs(2)
        a.close()
        b.close()
        assert wait_until(lambda: sim.sim.cuts >= 2, 5.0)
    assert received(sim) == first + second
    assert [c.bytes for c, _ in reports.done] == [len(first), len(second)]


def test_a_slow_client_is_one_job_as_long_as_it_keeps_sending(sim: SimHandle) -> None:
    job = receipt(3)
    pieces = [job[i:i + 40] for i in range(0, len(job), 40)]
    with serving(sim.url, job_idle=0.3) as (p, reports, _link), connect(p) as s:
        pace = threading.Event()
        t0 = time.monotonic()
        for piece in pieces:  # a piece every 0.1 s: longer in all than job_idle, never silent that long
            s.sendall(piece)
            pace.wait(0.1)
        s.shutdown(socket.SHUT_WR)
        assert reports.wait_jobs(1, 5.0)
        assert time.monotonic() - t0 > 3 * 0.3
        assert wait_until(lambda: received(sim) == job, 5.0)
    assert [c.bytes for c, _ in reports.done] == [len(job)]


def test_one_connection_may_carry_several_jobs(sim: SimHandle) -> None:
    with serving(sim.url, job_idle=0.2) as (p, reports, _link), connect(p) as s:
        s.sendall(receipt(1))
        assert reports.wait_jobs(1, 5.0)  # ended by job_idle; the connection stays
        s.sendall(receipt(2))
        s.shutdown(socket.SHUT_WR)
        assert reports.wait_jobs(2, 5.0)
        name = local_name(s)
    assert [(c.bytes, client) for c, client in reports.done] == [(len(receipt(1)), name), (len(receipt(2)), name)]


def test_a_slow_printer_slows_the_client_and_memory_stays_bounded() -> None:
    """The printer: a pty whose far end takes 4 KB every 10 ms (about 400 KB/s): the kernel
    buffers little on a pty, so the proxy must wait for it rather than hold the job."""
    master, slave = os.openpty()
    tty.setraw(slave)
    got = bytearray()
    done = threading.Event()

    def printer() -> None:
        tick = threading.Event()
        poll = select.poll()
        poll.register(master, select.POLLIN)
        while not done.is_set():
            if poll.poll(100):
                got.extend(os.read(master, 4096))
                tick.wait(0.01)

    t = threading.Thread(target=printer, daemon=True)
    t.start()
    flood = raster(72, 8000, b"\x10\x04\x01\n\x1dV") + b"end\n"  # 576 KB of image data
    try:
        with serving(f"serial://{os.ttyname(slave)}", job_idle=1.0, job_timeout=30.0) as (p, reports, _link):
            t0 = time.monotonic()
            print_job(p, flood)  # returns once the proxy wrote the last byte and let the client go
            took = time.monotonic() - t0
            assert reports.wait_jobs(1, 30.0)
            assert wait_until(lambda: len(got) >= len(flood), 10.0)
            peak = p.peak_buffered
    finally:
        done.set()
        t.join(2.0)
        os.close(master)
        os.close(slave)
    print(f"\n{len(flood)} bytes to a printer taking ~400 KB/s: the client was done after {took:.2f} s; "
          f"at most {peak} bytes held by the proxy")
    assert bytes(got) == flood and reports.done[0][0].bytes == len(flood) and reports.done[0][0].images == 1
    assert took >= 1.0  # paced by the printer (576 KB at 400 KB/s), not absorbed by the proxy
    assert peak <= proxyjob.CHUNK


def test_abusive_clients_do_not_stop_the_proxy(sim: SimHandle) -> None:
    with serving(sim.url, job_idle=0.2) as (p, reports, _link):
        socket.create_connection(p.address or ("", 0), timeout=5.0).close()  # connects and goes
        s = connect(p)
        s.sendall(receipt(1)[:90])
        assert wait_until(lambda: len(received(sim)) >= 90, 5.0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset mid-job
        with connect(p) as deaf:  # asks 20000 times and never reads an answer
            deaf.sendall(b"\x10\x04\x01" * 20000)
            assert reports.wait_jobs(2, 10.0)
        print_job(p, receipt(2))  # and the next client prints as ever
        assert reports.wait_jobs(3, 10.0)
        assert wait_until(lambda: received(sim).endswith(receipt(2)), 5.0)
    assert [c.bytes for c, _ in reports.done] == [90, 60000, len(receipt(2))]
    assert reports.done[1][0].realtime == 20000 and not reports.lost


def test_close_reports_a_job_still_waiting_for_the_printer() -> None:
    with serving(f"tcp://127.0.0.1:{free_port()}", job_timeout=60.0) as (p, reports, _link):
        client = print_job(p, receipt(3))
        threading.Event().wait(0.3)  # the job waits for a printer that is not there
        t0 = time.monotonic()
        p.close()
        took = time.monotonic() - t0
    assert took < 2.0 and reports.lost and reports.lost[0][:2] == (client, len(receipt(3)))
    assert "stopped" in reports.lost[0][2]


# -- jobs the printer does not take --------------------------------------------------------
def test_an_undeliverable_job_is_reported_lost_after_job_timeout() -> None:
    job = receipt(4)
    with serving(f"tcp://127.0.0.1:{free_port()}", job_timeout=1.5) as (_p, reports, _link):  # nothing listens
        client = print_job(_p, job)
        ended = time.monotonic()
        assert reports.wait_lost(1, 10.0)
    who, n, reason, at = reports.lost[0]
    assert (who, n) == (client, len(job)) and "cannot be opened" in reason
    assert at - ended >= 1.5 - 0.1  # offered again until job_timeout after the job's end
    assert not reports.done


def test_a_vanished_printer_pty_loses_the_job_with_a_report(sim: SimHandle) -> None:
    url = sim.url
    sim.stop()  # the printer's pty is gone
    job = receipt(5)
    with serving(url, job_timeout=1.0) as (p, reports, _link):
        client = print_job(p, job)
        assert reports.wait_lost(1, 10.0)
    assert reports.lost[0][:2] == (client, len(job)) and not reports.done


def test_a_printer_that_comes_back_in_time_gets_the_whole_job() -> None:
    port = free_port()
    job = receipt(6)
    got = bytearray()
    with serving(f"tcp://127.0.0.1:{port}", job_timeout=6.0) as (p, reports, _link):
        print_job(p, job)
        threading.Event().wait(0.7)  # the first offers fail
        with socket.create_server(("127.0.0.1", port)) as srv:
            srv.settimeout(10.0)
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(5.0)
                while len(got) < len(job) and (chunk := conn.recv(4096)):
                    got.extend(chunk)
            assert reports.wait_jobs(1, 10.0)
    assert bytes(got) == job and not reports.lost
    assert reports.done[0][0].bytes == len(job) and reports.done[0][0].cuts == 1


def test_a_link_lost_mid_job_reports_what_was_printed_and_what_was_lost() -> None:
    job = receipt(7)
    head, tail = job[:200], job[200:]
    handle = start_sim("escpos", {"drop_after_bytes": 150})  # the printer hangs up mid-job
    try:
        with serving(handle.url, job_timeout=1.0) as (p, reports, _link), connect(p) as s:
            client = local_name(s)
            s.sendall(head)
            assert wait_until(lambda: len(received(handle)) >= 150, 5.0)
            threading.Event().wait(0.1)
            s.sendall(tail)
            s.shutdown(socket.SHUT_WR)
            assert reports.wait_lost(1, 10.0)
            assert reports.wait_jobs(1, 1.0)
        got = received(handle)
    finally:
        handle.stop()
    counts, _ = reports.done[0]
    who, lost, reason, _at = reports.lost[0]
    assert (who, lost) == (client, len(tail)) and "broke" in reason
    assert counts.bytes == len(head) and got == head  # printed up to the hang-up, nothing sent twice
    assert counts.bytes + lost == len(job)


def test_beyond_the_buffer_a_job_is_cut_and_the_rest_counted_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxyjob, "MAX_PENDING", 64 << 10)
    flood = raster(72, 3000, b"\x00\xff")  # 216 KB for a printer that is not there
    with serving(f"tcp://127.0.0.1:{free_port()}", job_timeout=0.5) as (p, reports, _link):
        client = print_job(p, flood)
        assert reports.wait_lost(1, 10.0)
        peak = p.peak_buffered
    assert reports.lost[0][:2] == (client, len(flood)) and "discarded" in reports.lost[0][2]
    assert peak <= 64 << 10


# -- the real daemon -------------------------------------------------------------------------
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


def test_receipts_pass_whole_between_status_polls_and_are_counted(tmp_path: Path, sim: SimHandle) -> None:
    n = receipts_to_print()
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
