"""The host driver against real servers on 127.0.0.1: reachable, refused, slow, closed
mid-handshake, HTTP errors, silent server, and real TLS with a self-signed CA."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posagent.core.base import CheckContext, Result, Status
from posagent.drivers.host import HostDriver
from posagent.selftest.runner import Runner
from tests.conftest import DriverBuilder, device_entry, device_set, need_binary
from tests.loopback import LoopbackServer

Server = LoopbackServer  # the name its tests use


def http_reply(status: int, delay: float = 0.0):
    def handle(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:  # bounded by the socket timeout and peer close
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        if delay:
            stop.wait(delay)  # the server is slow to answer: the behaviour under test
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

    return handle


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(10)


def close_at_once(conn: socket.socket, stop: threading.Event) -> None:
    conn.close()


@pytest.fixture
def server() -> Iterator:
    made: list[Server] = []

    def make(handler, tls: ssl.SSLContext | None = None) -> Server:
        s = Server(handler, tls)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def host_status(build_driver: DriverBuilder, url: str, **options: object) -> Result:
    return build_driver.driver(HostDriver, device_entry("acq", "host", url, options)).status()


def test_tcp_reachable(build_driver: DriverBuilder, server) -> None:
    s = server(close_at_once)
    r = host_status(build_driver, f"tcp://127.0.0.1:{s.port}")
    assert (r.status, r.code) == (Status.OK, "HOST_OK")
    assert r.fields["latency_ms"] > 0 and r.measurements["loss_pct"] == 0.0
    assert "dns_ms" in r.measurements


def test_tcp_refused(build_driver: DriverBuilder) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    r = host_status(build_driver, f"tcp://127.0.0.1:{port}", status_tries=2)
    assert (r.status, r.code) == (Status.FAIL, "HOST_UNREACHABLE")
    assert "0 of 2" in r.message and "refused" in r.message
    assert r.fields["latency_ms"] is None


def test_http_ok_and_5xx(build_driver: DriverBuilder, server) -> None:
    ok = server(http_reply(200))
    r = host_status(build_driver, f"http://127.0.0.1:{ok.port}/health")
    assert (r.status, r.code) == (Status.OK, "HOST_OK") and r.measurements["http_status"] == 200
    bad = server(http_reply(503))
    r = host_status(build_driver, f"http://127.0.0.1:{bad.port}/health")
    assert (r.status, r.code) == (Status.FAIL, "HOST_HTTP_ERROR") and "503" in r.message


def test_http_slow_is_warn(build_driver: DriverBuilder, server) -> None:
    s = server(http_reply(200, delay=0.3))
    r = host_status(build_driver, f"http://127.0.0.1:{s.port}/", warn_http_ms=50.0)
    assert (r.status, r.code) == (Status.WARN, "HOST_SLOW")
    assert r.measurements["http_ms"] >= 300


def test_http_silent_server_times_out(build_driver: DriverBuilder, server) -> None:
    s = server(silent)
    r = host_status(build_driver, f"http://127.0.0.1:{s.port}/", connect_timeout="0.3s", warn_http_ms=100.0)
    assert (r.status, r.code) == (Status.FAIL, "HOST_TIMEOUT")


def test_https_closed_mid_handshake(build_driver: DriverBuilder, server) -> None:
    s = server(close_at_once)
    r = host_status(build_driver, f"https://127.0.0.1:{s.port}/")
    assert (r.status, r.code) == (Status.FAIL, "HOST_TLS_FAILED")
    assert "closed" in r.message


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = need_binary("openssl", "openssl")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


def test_https_real_tls(build_driver: DriverBuilder, server, cert: tuple[Path, Path]) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    s = server(http_reply(204), tls=ctx)
    r = host_status(build_driver, f"https://127.0.0.1:{s.port}/health", ca_file=str(cert[0]))
    assert (r.status, r.code) == (Status.OK, "HOST_OK"), r.message
    assert r.measurements["tls_ms"] > 0 and r.measurements["http_status"] == 204
    # Without the CA the same server is not trusted.
    r = host_status(build_driver, f"https://127.0.0.1:{s.port}/health")
    assert (r.status, r.code) == (Status.FAIL, "HOST_TLS_FAILED") and "not trusted" in r.message


def test_dns_failure(build_driver: DriverBuilder, mocker) -> None:
    # No resolver may be asked from a test (loopback only), so the lookup itself is faked.
    mocker.patch("socket.getaddrinfo", side_effect=socket.gaierror(-2, "Name or service not known"))
    r = host_status(build_driver, "tcp://acquirer.example.invalid:443")
    assert (r.status, r.code) == (Status.FAIL, "HOST_DNS_FAILED")
    assert "acquirer.example.invalid" in r.message


def test_runner_status_with_sim_host(tmp_path: Path) -> None:
    with device_set(tmp_path, device_entry("a", "host", "sim://host"),
                    device_entry("b", "host", "sim://host?status=500")) as devices:
        out = Runner(devices).status()
    assert out["a"][1].status == Status.OK and out["b"][1].code == "HOST_HTTP_ERROR"


def test_black_holed_host_is_unreachable_within_the_check_budget(tmp_path: Path) -> None:
    """A host that drops SYNs (a full accept queue stands in for a firewall) is graded
    HOST_UNREACHABLE by the driver itself, inside the check's timeout, not cut as hung."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue; later SYNs are dropped
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    try:
        dev = device_entry("acq", "host", f"tcp://127.0.0.1:{port}", {"status_tries": 3, "connect_timeout": "3s"},
                           timeout="2s")
        with device_set(tmp_path, dev) as devices:
            _, r = Runner(devices).status()["acq"]
        assert (r.status, r.code) == (Status.FAIL, "HOST_UNREACHABLE"), r.message
        assert r.duration_ms < 2000
    finally:
        for c in fillers:
            c.close()
        listener.close()


def test_status_probes_once_per_interval_and_the_selftest_measures_now(build_driver: DriverBuilder, server) -> None:
    """Every terminal of a fleet probes the same acquirer: status() connects once per
    probe_interval (1 connect), the self-test check measures now with ``tries`` connects."""
    accepted: list[int] = []
    lock = threading.Lock()

    def count(conn: socket.socket, stop: threading.Event) -> None:
        with lock:
            accepted.append(1)
        conn.close()

    s = server(count)
    driver = build_driver.driver(HostDriver, device_entry("acq", "host", f"tcp://127.0.0.1:{s.port}",
                                                          {"probe_interval": "60s"}))
    first = driver.status()
    assert all(driver.status() is first for _ in range(9))  # nine more polls: no new probe
    check = driver.checks()[0].run(CheckContext(deadline=time.monotonic() + 5))
    assert first.code == check.code == "HOST_OK"
    every = build_driver.driver(HostDriver, device_entry("acq2", "host", f"tcp://127.0.0.1:{s.port}",
                                                         {"probe_interval": "0s"}))
    for _ in range(3):
        every.status()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the server thread counts the last accepts
        with lock:
            if len(accepted) >= 7:
                break
        s.stop.wait(0.02)
    with lock:
        assert len(accepted) == 1 + 3 + 3  # one status probe, the check's three tries, three unthrottled probes
