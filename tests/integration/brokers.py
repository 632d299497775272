"""Real MQTT brokers on 127.0.0.1 for the MQTT transport tests, each in a private dir.

``Mosquitto`` writes a mosquitto.conf into its dir (a plain listener, optionally a TLS
listener with a certificate from ``make_pki``, a password file made by
``mosquitto_passwd``, an ACL letting each terminal's user publish only under
``posagent/<its own terminal id>/#`` and read its own ``cmd`` topic, persistence in its
dir) and runs ``/usr/sbin/mosquitto -c``; ``kill()`` and ``start()`` again keep the ports
and the persistence, so "the broker died and came back" is real.

``NatsCluster`` runs three ``nats-server`` nodes, each with ``server_name``, its own
JetStream store dir, MQTT enabled, and cluster routes to the other two on loopback.

Ports come from binding port 0. Readiness is a real CONNECT answered by a CONNACK
(``mqtt_ready``), polled with a deadline; every process started here is killed at
teardown, also when the test failed. Missing binaries skip the test with the apt-get line
to install them, and fail it under CI=true (``tests.conftest.need_binary``).
"""

from __future__ import annotations

import gzip
import os
import pwd
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port, need_binary, stop_process

MOSQUITTO = "/usr/sbin/mosquitto"
NATS = "/usr/sbin/nats-server"
INSTALL = "mosquitto nats-server"  # the apt-get line's packages
DASHBOARD = ("dashboard", "dash-pw")  # a user who may read everything under posagent/


def mqtt_ready(port: int, *, username: str = "", password: str = "", timeout: float = 1.0,
               tls_ca: str = "", version: int = 4) -> bool:
    """Whether a broker on 127.0.0.1:``port`` answers a CONNECT with a success CONNACK."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTProtocolVersion(version))
    done = threading.Event()
    ok: list[bool] = []

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        ok.append(not rc.is_failure)
        done.set()

    client.on_connect = on_connect
    if username:
        client.username_pw_set(username, password)
    if tls_ca:
        client.tls_set(ca_certs=tls_ca)
    client.connect_timeout = timeout
    try:
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        done.wait(timeout)
    except OSError:
        return False
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(ok and ok[0])


def wait_ready(port: int, proc: subprocess.Popen[Any], timeout: float, what: str, **kw: Any) -> None:
    """Poll ``mqtt_ready`` until it answers, with a deadline; fail with the log on exit."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    for _ in range(int(timeout / 0.1) + 2):
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        if mqtt_ready(port, **kw):
            return
        if time.monotonic() >= deadline:
            break
        pause.wait(0.1)
    raise AssertionError(f"{what} did not answer a CONNECT on port {port} within {timeout:g} s")


# -- a test PKI made by openssl -------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server certificates
    other_ca: Path  # a CA that signed nothing here (a "wrong CA")
    cert: Path  # the server certificate for 127.0.0.1, valid for two days
    key: Path
    expired: Path  # the same key, a certificate that expired yesterday


def make_pki(d: Path) -> Pki:
    openssl = need_binary("openssl", "openssl")
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for name in ("ca", "other-ca"):
        run("req", "-x509", *ec, "-days", "2", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
            "-subj", f"/CN=posagent test {name}")
    run("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, days in (("server.pem", "2"), ("expired.pem", "-1")):  # -1: notAfter before notBefore
        run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", days, "-extfile", str(d / "ext"), "-out", str(d / name))
    return Pki(ca=d / "ca.pem", other_ca=d / "other-ca.pem", cert=d / "server.pem", key=d / "server.key",
               expired=d / "expired.pem")


# -- mosquitto ----------------------------------------------------------------------------------
@dataclass
class Mosquitto:
    root: Path
    users: dict[str, str] = field(default_factory=dict)  # terminal id (= user name): password
    tls_cert: Path | None = None  # a TLS listener with this certificate (and pki.key)
    tls_key: Path | None = None
    port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen[Any] | None = None

    def __post_init__(self) -> None:
        self.exe = need_binary(MOSQUITTO, INSTALL)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.tls_port = free_port() if self.tls_cert else 0
        self.conf = self.root / "mosquitto.conf"
        self.log = self.root / "mosquitto.log"
        self._write()

    def _write(self) -> None:
        # as root, mosquitto would change to user "mosquitto", who cannot read this test's files
        lines = [f"user {pwd.getpwuid(os.getuid()).pw_name}", "per_listener_settings false", "persistence true",
                 f"persistence_location {self.root}/",
                 "autosave_interval 1", "log_dest stderr", "log_type error", "log_type warning",
                 "log_type notice", "log_type information", "connection_messages true",
                 "max_keepalive 65535", f"listener {self.port} 127.0.0.1"]
        if self.tls_cert:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"certfile {self.tls_cert}",
                      f"keyfile {self.tls_key}"]
        if self.users:
            passwd = self.root / "passwd"
            passwd.write_text("")
            tool = need_binary("mosquitto_passwd", INSTALL)
            for user, pw in {**self.users, DASHBOARD[0]: DASHBOARD[1]}.items():
                subprocess.run([tool, "-b", str(passwd), user, pw], check=True, capture_output=True, timeout=30)
            acl = [f"user {DASHBOARD[0]}", "topic readwrite posagent/#", ""]
            for user in self.users:
                acl += [f"user {user}", f"topic write posagent/{user}/#", f"topic read posagent/{user}/cmd", ""]
            (self.root / "acl").write_text("\n".join(acl))
            lines += ["allow_anonymous false", f"password_file {passwd}", f"acl_file {self.root / 'acl'}"]
        else:
            lines += ["allow_anonymous true"]
        self.conf.write_text("\n".join(lines) + "\n")
        passwd = self.root / "passwd"
        for p in (passwd, self.root / "acl"):
            if p.exists():
                p.chmod(0o600)

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self._err = open(self.log, "a", encoding="utf-8")  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err)
        auth = {"username": DASHBOARD[0], "password": DASHBOARD[1]} if self.users else {}
        wait_ready(self.port, self.proc, timeout, "mosquitto", **auth)
        return self

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill the broker (SIGKILL: no goodbye to anyone); start() brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        if self.proc is not None:
            self._err.close()
        self.proc = None

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Mosquitto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# -- a NATS cluster with JetStream and MQTT ----------------------------------------------------------
@dataclass
class NatsNode:
    name: str
    root: Path
    client_port: int
    cluster_port: int
    mqtt_port: int
    proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"


class NatsCluster:
    """Three nats-server nodes with JetStream (each its own store dir) and MQTT, routed
    to each other on loopback."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.exe = need_binary(NATS, INSTALL)
        self.nodes = [NatsNode(f"n{i + 1}", root / f"n{i + 1}", free_port(), free_port(), free_port())
                      for i in range(size)]
        for node in self.nodes:
            node.root.mkdir(parents=True, exist_ok=True)
            routes = ", ".join(f'"nats-route://127.0.0.1:{o.cluster_port}"' for o in self.nodes if o is not node)
            (node.root / "nats.conf").write_text(f"""
server_name: {node.name}
listen: "127.0.0.1:{node.client_port}"
jetstream {{ store_dir: "{node.root / 'js'}", max_memory_store: 64MB, max_file_store: 256MB }}
cluster {{ name: "posagent-test", listen: "127.0.0.1:{node.cluster_port}", routes: [{routes}] }}
mqtt {{ listen: "127.0.0.1:{node.mqtt_port}", stream_replicas: {size} }}
""")

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            self._start(node)
        for node in self.nodes:  # a CONNACK needs the JetStream meta leader elected
            assert node.proc is not None
            wait_ready(node.mqtt_port, node.proc, timeout, f"nats-server {node.name}")
        return self

    def _start(self, node: NatsNode) -> None:
        log = open(node.root / "nats.log", "a", encoding="utf-8")  # noqa: SIM115 (the child holds it)
        node.proc = subprocess.Popen([self.exe, "-c", str(node.root / "nats.conf")], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()

    def kill(self, node: NatsNode) -> None:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait(10.0)

    def node_of_port(self, port: int) -> NatsNode:
        return next(n for n in self.nodes if n.mqtt_port == port)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                stop_process(node.proc, timeout=5.0)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n" + (n.root / "nats.log").read_text(errors="replace")[-3000:]
                         for n in self.nodes if (n.root / "nats.log").exists())

    def __enter__(self) -> NatsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a dashboard: a subscriber that records what arrives ------------------------------------------
@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival


class Watcher:
    """A paho client subscribed (QoS 1, persistent session) to ``topic`` on a broker,
    recording every message; it reconnects by itself when the broker comes back. Waits
    use a Condition with a deadline; ``subscribed`` is set when the broker's SUBACK came."""

    def __init__(self, port: int, topic: str = "posagent/#", *, client_id: str = "dashboard",
                 username: str = "", password: str = "") -> None:
        import paho.mqtt.client as mqtt

        self.seen: list[Seen] = []
        self._cond = threading.Condition()
        self._topic = topic
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.05, 0.5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self._topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            payload = bytes(msg.payload)
            if payload[:2] == b"\x1f\x8b":  # gzip (MQTT 5, gzip = true): JSON never starts so
                payload = gzip.decompress(payload)
            self.seen.append(Seen(msg.topic, payload, bool(msg.retain), time.monotonic()))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Seen]:
        with self._cond:
            return [s for s in self.seen if s.topic == topic]

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            for _ in range(int(timeout / 0.05) + 2):
                if predicate(list(self.seen)):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return False

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5.0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
