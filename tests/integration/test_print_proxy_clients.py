"""The print proxy survives any client (escpos/proxy.py in-process, real sockets and the
printer simulator on a real pty): a flood, a half-closed socket, a disconnect mid-job, a
client that never sends, and a second client queued behind the first."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from posagent.config.urls import parse_url
from posagent.drivers.escpos.jobscan import JobCounts
from posagent.drivers.escpos.proxy import PrintProxy, ProxyError
from posagent.drivers.simulator import SimHandle
from posagent.drivers.transport.link import Link
from tests.integration.pos_app import raster, receipt


class Jobs:
    def __init__(self) -> None:
        self.done: list[tuple[JobCounts, str]] = []
        self.lost: list[tuple[str, int, str]] = []
        self.cond = threading.Condition()

    def on_job(self, counts: JobCounts, client: str) -> None:
        with self.cond:
            self.done.append((counts, client))
            self.cond.notify_all()

    def on_lost(self, client: str, n: int, reason: str) -> None:
        with self.cond:
            self.lost.append((client, n, reason))
            self.cond.notify_all()

    def wait(self, jobs: int, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.done) >= jobs, timeout)


@pytest.fixture
def proxy(sim: SimHandle) -> Iterator[tuple[PrintProxy, Jobs, Link]]:
    jobs = Jobs()
    link = Link(parse_url(sim.url), where="printer", share="owner")
    p = PrintProxy(link, listen=("127.0.0.1", 0), pty_path=None, job_idle=0.3, job_timeout=3.0,
                   on_job=jobs.on_job, on_lost=jobs.on_lost)
    p.start()
    yield p, jobs, link
    p.close()
    link.close()


def received_ends_with(sim: SimHandle, tail: bytes, timeout: float = 10.0) -> bool:
    """Whether the printer has received ``tail`` last, within ``timeout`` (the simulator
    reads the pty in a thread of its own: the proxy may be done writing before it read)."""
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        with sim.sim.lock:
            if bytes(sim.sim.received).endswith(tail):
                return True
        if time.monotonic() >= deadline:
            return False
        tick.wait(0.02)


def connect(p: PrintProxy) -> socket.socket:
    assert p.address is not None
    return socket.create_connection(p.address, timeout=10.0)


def test_a_flood_is_delivered_whole_with_bounded_memory(proxy: tuple[PrintProxy, Jobs, Link], sim: SimHandle) -> None:
    p, jobs, _ = proxy
    big = raster(72, 8000, b"\x10\x04\x01\n") + b"end\n"  # 576 KB of image data, full of DLE EOT and LF
    with connect(p) as s:
        s.sendall(big)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):  # what the printer answered to the 10 04 01 inside the image
            pass
    assert jobs.wait(1)
    counts, _ = jobs.done[0]
    assert counts.bytes == len(big) and counts.images == 1 and counts.lines == 1
    assert received_ends_with(sim, big)


def test_half_closed_and_mid_job_disconnects(proxy: tuple[PrintProxy, Jobs, Link], sim: SimHandle) -> None:
    p, jobs, _ = proxy
    part = receipt(7)[:150]
    s = connect(p)
    s.sendall(part)
    s.close()  # gone mid-job: what came is delivered and counted
    with connect(p) as s2:  # half-closed: the job ends at its EOF, the reply path stays open
        s2.sendall(receipt(8))
        s2.shutdown(socket.SHUT_WR)
        s2.settimeout(10.0)
        back = b"".join(iter(lambda: s2.recv(4096), b""))  # until the proxy closes after the job
    assert back and set(back) <= {0x12}  # the printer's answers to the DLE EOT inside the image came back
    assert jobs.wait(2)
    assert [c.bytes for c, _ in jobs.done] == [len(part), len(receipt(8))]
    assert received_ends_with(sim, part + receipt(8))


def test_an_idle_client_is_dropped_and_the_next_one_served_in_order(proxy: tuple[PrintProxy, Jobs, Link]) -> None:
    p, jobs, _ = proxy
    idle = connect(p)  # sends nothing: dropped after job_timeout (3 s)
    t0 = time.monotonic()
    with connect(p) as s:  # queued behind it
        s.sendall(receipt(1))
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10.0)
        b"".join(iter(lambda: s.recv(4096), b""))  # until the proxy closes after the job
    waited = time.monotonic() - t0
    idle.close()
    assert jobs.wait(1)
    assert 2.5 <= waited < 8.0  # served once the idle one was dropped
    assert jobs.done[0][0].bytes == len(receipt(1))


def test_a_status_query_waits_for_the_job_in_progress(proxy: tuple[PrintProxy, Jobs, Link], sim: SimHandle) -> None:
    p, jobs, link = proxy
    job = receipt(3)
    with connect(p) as s:
        s.sendall(job[:120])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the job has started at the printer
            with sim.sim.lock:
                if len(sim.sim.received) >= 120:
                    break
            threading.Event().wait(0.01)
        asked = threading.Thread(target=lambda: link.exchange(lambda st: (st.write(b"\x10\x04\x01"),
                                                                          st.read_exact(1, 2.0))))
        asked.start()
        threading.Event().wait(0.2)
        s.sendall(job[120:])
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10.0)
        while s.recv(4096):
            pass
    asked.join(10.0)
    assert jobs.wait(1)
    assert received_ends_with(sim, job + b"\x10\x04\x01")  # the query went after the whole job


def test_a_port_in_use_is_a_clear_error(proxy: tuple[PrintProxy, Jobs, Link]) -> None:
    p, jobs, link = proxy
    assert p.address is not None
    other = PrintProxy(link, listen=p.address, pty_path=None, on_job=jobs.on_job, on_lost=jobs.on_lost)
    with pytest.raises(ProxyError) as e:
        other.start()
    assert e.value.code == "PRINT_PROXY_UNAVAILABLE" and "cannot listen" in str(e.value)
