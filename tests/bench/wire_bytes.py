"""What one steady heartbeat costs the terminal on the wire: MQTT over TLS (a kept
connection: PUBLISH + PUBACK in TLS records) against HTTPS with a kept connection (request
line and headers with the bearer token, the gzip body when it is worth it, the response,
TLS records), both against local servers: mosquitto with a TLS listener and the test
collector with TLS, each behind a TCP relay on 127.0.0.1 that counts the bytes both ways.

The heartbeat is the daemon's own (``status_round`` + ``messages.heartbeat`` over the
simulated acquirer and the box), stored by a real outbox. The connection is made and one
heartbeat sent before counting (handshakes, session tickets, MQTT CONNECT/SUBSCRIBE and the
``online`` message are one-offs); then ``count`` heartbeats are sent and the bytes divided.

``python -m tests.bench.wire_bytes`` prints the figures; it never fails on a size.
"""

from __future__ import annotations

import argparse
import select
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.loopback import LoopbackServer

RELAY_SLICE = 0.2


class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target counting bytes each way."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.up = 0  # client -> server
        self.down = 0  # server -> client
        self.changed = time.monotonic()
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._relay, slice_s=RELAY_SLICE)
        self.port = self._server.port

    def _relay(self, client: socket.socket, stop: threading.Event) -> None:
        with socket.create_connection(("127.0.0.1", self.target), timeout=5.0) as server:
            while not stop.is_set():
                ready, _, _ = select.select([client, server], [], [], RELAY_SLICE)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (server if sock is client else client).sendall(data)
                    with self._lock:
                        if sock is client:
                            self.up += len(data)
                        else:
                            self.down += len(data)
                        self.changed = time.monotonic()

    def settle(self, quiet: float = 0.3, timeout: float = 5.0) -> None:
        """Wait until nothing has passed for ``quiet`` seconds (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        for _ in range(int(timeout / 0.05) + 2):
            with self._lock:
                idle = time.monotonic() - self.changed
            if idle >= quiet or time.monotonic() >= deadline:
                return
            pause.wait(0.05)

    def reset(self) -> None:
        with self._lock:
            self.up = self.down = 0

    def total(self) -> int:
        with self._lock:
            return self.up + self.down

    def close(self) -> None:
        self._server.close(join_connections=True)


def heartbeat_body(state_dir: Path) -> bytes:
    """The daemon's heartbeat over the simulated acquirer and the box, as the outbox stores it."""
    from posagent.config.loader import validate
    from posagent.fleet import messages
    from posagent.fleet.outbox import Outbox
    from posagent.fleet.service import status_round
    from posagent.selftest.devices import DeviceSet
    from posagent.selftest.runner import Runner

    devices = [{"name": "acquirer", "driver": "host", "url": "sim://host"},
               {"name": "system", "driver": "system", "options": {"disk_warn_pct": 0.5, "disk_fail_pct": 0.1}}]
    config = validate({"agent": {"terminal_id": "SH-0042", "state_dir": str(state_dir), "check_timeout": "3s"},
                       "device": devices}, str(state_dir / "posagent.toml"))
    with DeviceSet(config) as devs:
        results, system = status_round(Runner(devs), config)
    box = Outbox(str(state_dir), max_bytes=10**7, max_age=86400)
    try:
        box.commit("heartbeat", messages.heartbeat(config, results, system))
        pending = box.next_pending()
        assert pending is not None
        return pending.body
    finally:
        box.close()


def _per_message(relay: Relay, post: Any, count: int) -> float:
    """Bytes per ``post()`` once the connection is up and warm."""
    post()  # warm: connection, handshakes, session tickets, CONNECT/SUBSCRIBE/online
    relay.settle()
    relay.reset()
    for _ in range(count):
        post()
    relay.settle()
    return relay.total() / count


@dataclass(frozen=True)
class WireFigures:
    body: int  # the stored heartbeat JSON
    mqtt: float  # bytes per steady heartbeat, both ways, TLS included (MQTT 5, gzip = true: the default)
    mqtt_payload: int  # its PUBLISH payload (the body gzipped)
    https_gzip: float  # the same over HTTPS as the agent sends it by default (gzip = true)
    https_gzip_body: int  # its compressed body
    https_plain: float  # over HTTPS with gzip = false: the same payload bytes as MQTT

    @property
    def mqtt_overhead(self) -> float:
        """What MQTT adds to the payload (topic, PUBLISH/PUBACK framing, TLS records)."""
        return self.mqtt - self.mqtt_payload

    @property
    def https_overhead(self) -> float:
        """What HTTPS adds to its body (request line, headers, response, TLS records)."""
        return self.https_gzip - self.https_gzip_body


def measure(tmp: Path, count: int = 20) -> WireFigures:
    """The bytes per steady heartbeat over MQTT with TLS and over HTTPS (gzip on and off)."""
    from posagent.config.model import UpstreamSection
    from posagent.core.values import Duration
    from posagent.fleet.mqtt import MqttTransport
    from posagent.fleet.upstream import Outcome, RetryPolicy, Upstream
    from tests.integration.brokers import Mosquitto, make_pki
    from tests.integration.collector import Collector

    pki = make_pki(tmp / "pki")
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    body = heartbeat_body(state)
    token = tmp / "token"
    token.write_text("fleet-token-" + "7" * 32 + "\n")  # a bearer token of a typical length
    token.chmod(0o600)
    timeout = Duration(5.0)
    with Mosquitto(tmp / "wire-mqtt", tls_cert=pki.cert, tls_key=pki.key) as broker:
        broker.start()
        relay = Relay(broker.tls_port)
        t = MqttTransport(UpstreamSection(url=f"mqtts://127.0.0.1:{relay.port}", ca_file=str(pki.ca),
                                          timeout=timeout), terminal_id="SH-0042")

        payloads: list[int] = []

        def mqtt_post() -> None:
            r = t.post([body], ["m"])
            assert r.outcome is Outcome.DELIVERED
            payloads.append(r.wire_bytes)

        try:
            mqtt_bytes = _per_message(relay, mqtt_post, count)
        finally:
            t.close()
            relay.close()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.cert), str(pki.key))
    https: dict[bool, tuple[float, int]] = {}
    for gzip in (True, False):
        with Collector(tls=ctx) as collector:
            relay = Relay(collector.port)
            up = Upstream(UpstreamSection(url=f"https://127.0.0.1:{relay.port}/api/v1/heartbeat",
                                          ca_file=str(pki.ca), token_file=str(token), timeout=timeout, gzip=gzip),
                          policy=RetryPolicy(attempts=1), env={})
            sent: list[int] = []

            def https_post(up: Upstream = up, sent: list[int] = sent) -> None:
                r = up.post([body], ["m"])
                assert r.outcome is Outcome.DELIVERED, r.detail
                sent.append(r.wire_bytes)

            try:
                https[gzip] = (_per_message(relay, https_post, count), sent[-1])
            finally:
                up.close()
                relay.close()
            assert len({r.client_port for r in collector.received}) == 1  # one kept connection
    return WireFigures(body=len(body), mqtt=mqtt_bytes, mqtt_payload=payloads[-1], https_gzip=https[True][0],
                       https_gzip_body=https[True][1],
                       https_plain=https[False][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="heartbeats counted per transport")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="posagent-wire-") as tmp:
        print(report(measure(Path(tmp), args.count)))


def report(f: WireFigures) -> str:
    return "\n".join([
        f"heartbeat JSON: {f.body} bytes (gzip: {f.https_gzip_body} bytes)",
        "bytes on the wire per steady heartbeat, both ways, TLS records included, kept connections:",
        f"  MQTT 5 over TLS, QoS 1, gzip payload:         {f.mqtt:7.0f}  ({f.mqtt_overhead:.0f} beyond the "
        f"{f.mqtt_payload}-byte payload)",
        f"  HTTPS, gzip = true (the default):             {f.https_gzip:7.0f}  "
        f"({f.https_overhead:.0f} beyond the body)",
        f"  HTTPS, gzip = false:                          {f.https_plain:7.0f}",
        f"  MQTT / HTTPS gzip: {f.mqtt / f.https_gzip:.2f}; MQTT / HTTPS plain: {f.mqtt / f.https_plain:.2f}"])


if __name__ == "__main__":
    main()
