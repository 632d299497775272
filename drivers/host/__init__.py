"""Driver ``host``: can this terminal reach the acquirer / fleet host?

URL: ``tcp://host:port``, ``https://host/path`` (also ``http://``), or ``sim://host``.
Measures DNS resolution time, TCP connect latency (loss %), and for http(s) URLs a TLS
handshake (timed separately) and the HTTP status via httpx. The self-test measures now
with ``tries`` connects; ``status()`` probes with ``status_tries`` (1) connect only every
``probe_interval`` (60 s, jittered) and returns the last probe in between.

Codes: HOST_OK, HOST_SLOW (warn), HOST_PACKET_LOSS (warn), HOST_DNS_FAILED,
HOST_UNREACHABLE, HOST_TLS_FAILED, HOST_HTTP_ERROR, HOST_TIMEOUT (fail).
"""

from __future__ import annotations

import dataclasses
import random
import socket
import ssl
import statistics
import time
from dataclasses import dataclass
from typing import Any

from posagent.config.urls import DeviceURL, parse_url
from posagent.core.base import Check, Driver, Level, Result, Status
from posagent.core.values import Duration
from posagent.drivers.host.codes import CODES
from posagent.drivers.simulator import SimHandle, start_sim


@dataclass(frozen=True)
class HostOptions:
    tries: int = 3  # TCP connects in the self-test
    status_tries: int = 1  # TCP connects per status probe
    probe_interval: Duration = Duration(60.0)  # status probes this often (+-20 %), not every status poll
    connect_timeout: Duration = Duration(3.0)
    warn_latency_ms: float = 300.0
    warn_http_ms: float = 2000.0
    ca_file: str = ""
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.tries <= 20 or not 1 <= self.status_tries <= 20:
            raise ValueError("tries and status_tries must be between 1 and 20")
        if not 0 <= self.probe_interval <= 86400:
            raise ValueError("probe_interval must be between 0 (every status poll) and 1 day")


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)


class HostDriver(Driver):
    name = "host"
    family = "host"
    description = "reachability of the acquirer or fleet host: DNS, TCP, TLS, HTTP"
    schemes = ("tcp", "https", "http", "sim")
    url_example = "tcp://acquirer.example.com:443"
    support = "stable"
    Options = HostOptions
    codes = CODES
    fleet_wide = True  # every terminal probes the same acquirer: its outage is everyone's

    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        self._sim: SimHandle | None = None
        self._deadline = 0.0  # monotonic end of the current probe's budget
        self._last: Result | None = None  # the last status probe
        self._next_probe = 0.0  # monotonic time of the next one
        self._rng = random.Random()

    def _target(self) -> DeviceURL:
        url = self.device.url
        assert url is not None
        if url.scheme != "sim":
            return url
        if self._sim is None:
            # Not through the transport seam: transport.open() returns an open stream, and
            # this driver needs an address to measure (DNS, TCP connects, TLS, HTTP, each
            # opened and closed by the measurement itself). The simulator is started here
            # and its URL is the target, as a real host's would be.
            self._sim = start_sim("host", url.params)
        return parse_url(self._sim.url)

    def status(self) -> Result:
        """The last probe while it is younger than ``probe_interval`` (jittered by +-20 %,
        so a fleet's probes of one acquirer spread out), else a new one of ``status_tries``
        connects. Every terminal probes the same host: a connect every status poll from
        each of them would be a load test of the acquirer."""
        now = time.monotonic()
        if self._last is not None and now < self._next_probe:
            return self._last
        result = self.probe(self.options.status_tries)
        interval = float(self.options.probe_interval)
        self._last, self._next_probe = result, time.monotonic() + interval * self._rng.uniform(0.8, 1.2)
        return result

    def checks(self) -> list[Check]:
        return [Check("status", Level.INTERNAL, lambda ctx: self.probe(self.options.tries),
                      "DNS, TCP connects, TLS and HTTP, measured now")]

    def probe(self, tries: int) -> Result:
        """Measure now: DNS, ``tries`` TCP connects, TLS and HTTP for http(s) URLs."""
        url = self._target()
        opts: HostOptions = dataclasses.replace(self.options, tries=tries)
        host, port = url.host, url.port or 443
        m: dict[str, Any] = {}
        fields: dict[str, Any] = {"host": f"{host}:{port}"}
        t0 = time.perf_counter()
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            return Result.fail("HOST_DNS_FAILED", f"cannot resolve {host}: {getattr(e, 'strerror', e)}",
                               measurements={"dns_ms": _ms(t0)}, fields={**fields, "latency_ms": None})
        m["dns_ms"] = _ms(t0)
        family, _, _, _, addr = infos[0]
        # Stay inside the check's own time budget: a black-holed host must come back as
        # HOST_UNREACHABLE from here, not be cut by the runner as a hung device. Connects get
        # the budget's first half when an HTTP exchange follows, all of it otherwise.
        budget = self.timeout * 0.9 - (time.perf_counter() - t0)
        share = 0.5 if url.scheme in ("http", "https") else 1.0
        self._deadline = time.monotonic() + budget
        times, last_error = self._connects(family, addr, opts, time.monotonic() + budget * share)
        m["loss_pct"] = round(100.0 * (opts.tries - len(times)) / opts.tries, 1)
        if not times:
            return Result.fail("HOST_UNREACHABLE",
                               f"0 of {opts.tries} TCP connects to {host}:{port} succeeded ({last_error})",
                               measurements=m, fields={**fields, "latency_ms": None})
        latency = round(statistics.median(times), 2)
        m["connect_ms"] = latency
        fields["latency_ms"] = latency
        if url.scheme in ("http", "https"):
            bad = self._http(url, family, addr, opts, m)
            if bad is not None:
                return dataclasses.replace(bad, measurements=m, fields=fields)
        return self._grade(host, port, latency, m, fields, opts)

    def _remaining(self, cap: float) -> float:
        return max(0.05, min(cap, self._deadline - time.monotonic()))

    def _connects(self, family: int, addr: Any, opts: HostOptions, until: float) -> tuple[list[float], str]:
        times: list[float] = []
        last_error = ""
        for i in range(opts.tries):
            wait = min(opts.connect_timeout, (until - time.monotonic()) / (opts.tries - i))
            if wait < 0.05:
                last_error = last_error or "no time left in the check's budget"
                break
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(wait)
            t0 = time.perf_counter()
            try:
                s.connect(addr)
                times.append(_ms(t0))
            except TimeoutError:
                last_error = f"no answer within {wait:.3g} s"
            except OSError as e:
                last_error = (e.strerror or str(e)).lower()
            finally:
                s.close()
        return times, last_error

    def _http(self, url: DeviceURL, family: int, addr: Any, opts: HostOptions,
              m: dict[str, Any]) -> Result | None:
        host = url.host
        ctx: ssl.SSLContext | None = None
        if url.scheme == "https":
            ctx = ssl.create_default_context(cafile=opts.ca_file or None)
            if not opts.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            t0 = time.perf_counter()
            try:
                with socket.socket(family, socket.SOCK_STREAM) as raw:
                    raw.settimeout(self._remaining(opts.connect_timeout))
                    raw.connect(addr)
                    with ctx.wrap_socket(raw, server_hostname=host) as tls:
                        m["tls_version"] = tls.version()
                m["tls_ms"] = _ms(t0)
            except ssl.SSLCertVerificationError as e:
                return Result.fail("HOST_TLS_FAILED", f"TLS certificate of {host} not trusted: "
                                   f"{e.verify_message} (check the clock and the CA file)")
            except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as e:
                why = "the server closed the connection" if isinstance(
                    e, ssl.SSLEOFError | ConnectionResetError) or "EOF" in str(e) else str(e)
                return Result.fail("HOST_TLS_FAILED", f"TLS handshake with {host} failed: {why}")
        import httpx  # deferred: httpx (and httpcore) only on the http(s) path, ~60 ms to import

        # Plain http needs no TLS context. trust_env=False: the check measures the direct
        # path, like the TCP connects above, and reading the environment's proxy and
        # certificate settings costs ~50 ms per client. The client is built (and httpcore
        # imported, ~60 ms the first time) before the clock starts: http_ms is the request.
        client = httpx.Client(verify=ctx if ctx is not None else False, trust_env=False,
                              timeout=self._remaining(opts.connect_timeout + opts.warn_http_ms / 1000.0))
        t0 = time.perf_counter()
        try:
            with client:
                resp = client.get(url.raw)
        except httpx.TimeoutException:
            return Result.fail("HOST_TIMEOUT", f"{host} accepted the connection but sent no HTTP reply in time")
        except httpx.HTTPError as e:
            m["exception"] = type(e).__name__  # the fact behind the message, for other languages
            return Result.fail("HOST_HTTP_ERROR", f"HTTP request to {host} failed: {e or type(e).__name__}")
        m["http_ms"] = _ms(t0)
        m["http_status"] = resp.status_code
        if resp.status_code >= 500:
            return Result.fail("HOST_HTTP_ERROR", f"{host} answered HTTP {resp.status_code}")
        return None

    def _grade(self, host: str, port: int, latency: float, m: dict[str, Any],
               fields: dict[str, Any], opts: HostOptions) -> Result:
        http_ms = m.get("http_ms")
        status, code = Status.OK, "HOST_OK"
        detail = f"{host}:{port} reachable, {latency:g} ms"
        if http_ms is not None:
            detail += f", HTTP {m['http_status']} in {http_ms:g} ms"
        if latency > opts.warn_latency_ms or (http_ms is not None and http_ms > opts.warn_http_ms):
            status, code = Status.WARN, "HOST_SLOW"
            detail += f" (slow: above {opts.warn_latency_ms:g} ms TCP / {opts.warn_http_ms:g} ms HTTP)"
        elif m["loss_pct"] > 0:
            status, code = Status.WARN, "HOST_PACKET_LOSS"
            detail += f", {m['loss_pct']:g} % of connects failed"
        return Result(status, code, detail, measurements=m, fields=fields)

    def close(self) -> None:
        if self._sim is not None:
            self._sim.stop()
            self._sim = None
