"""The MQTT transport against a real mosquitto on 127.0.0.1 (``tests/integration/brokers.py``):
reports on their topics with contiguous seq through the real delivery loop and outbox, a
broker SIGKILLed and restarted mid-stream without a gap; presence (``online`` retained,
last will) after a SIGKILL and a freeze of a real ``posagent run``; TLS with a test CA
(valid, wrong CA, expired certificate); an ACL that refuses a terminal publishing under
another id (refused, told once, kept); commands on the ``cmd`` topic; the answer when no
broker is there; and the bytes a steady heartbeat costs on the wire against HTTPS."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.config.model import UpstreamSection
from posagent.core.values import Duration
from posagent.fleet.delivery import Delivery, DeliveryPolicy
from posagent.fleet.messages import AgentState
from posagent.fleet.mqtt import MqttTransport
from posagent.fleet.outbox import Outbox, Stats
from posagent.fleet.upstream import Outcome, UpstreamError
from tests.conftest import free_port, poll_until
from tests.integration.brokers import DASHBOARD, Mosquitto, Pki, Seen, Watcher, make_pki
from tests.integration.daemon_proc import DaemonProc, daemon_config

TID = "SH-0042"


def section(url: str, **kw: Any) -> UpstreamSection:
    kw.setdefault("timeout", Duration(2.0))
    kw.setdefault("allow_insecure_http", url.startswith("mqtt:"))
    return UpstreamSection(url=url, **kw)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(str(tmp_path / "state"), max_bytes=10**7, max_age=86400)
    yield box
    box.close()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A plain mosquitto (anonymous, persistent) on a free loopback port, killed at teardown."""
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker.start()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def commit(box: Outbox, kind: str) -> dict[str, Any]:
    def finalize(seq: int, stats: Stats) -> dict[str, Any]:
        return {"schema": f"posagent.{kind}/1", "message_id": str(uuid.uuid4()), "seq": seq, "terminal_id": TID}

    return box.commit(kind, finalize)


def seqs_on(seen: list[Seen], prefix: str) -> dict[int, Seen]:
    return {json.loads(s.payload)["seq"]: s for s in seen if s.topic.startswith(prefix) and not s.topic.endswith(
        ("/online", "/cmd"))}


def fast_delivery(box: Outbox, transport: MqttTransport, **kw: Any) -> Delivery:
    kw.setdefault("rate", 0.0)
    policy = DeliveryPolicy(backoff_base=0.1, backoff_cap=0.5, idle_wait=0.5, **kw)
    return Delivery(box, transport, AgentState(started_at=dt.datetime.now().astimezone()), policy=policy)


# -- bar 1: topics, payloads, contiguous seq, a broker killed and restarted ------------------------------
def test_reports_arrive_on_their_topics_and_a_broker_kill_loses_none(mosquitto: Mosquitto, outbox: Outbox) -> None:
    with Watcher(mosquitto.port) as watcher:
        assert watcher.subscribed.wait(5.0), "the watcher's SUBACK"
        subscribed = time.time()
        # mosquitto saves the watcher's session (autosave_interval 1) before the kill: its
        # database written after the SUBACK (it writes a new file and renames it over)
        db = mosquitto.root / "mosquitto.db"
        poll_until(lambda: db.exists() and db.stat().st_mtime > subscribed, 10.0, "the session saved")
        pause = threading.Event()
        transport = MqttTransport(section(f"mqtt://127.0.0.1:{mosquitto.port}"), terminal_id=TID,
                                  backoff=(0.05, 0.5))
        delivery = fast_delivery(outbox, transport)
        delivery.start()
        stored: dict[int, bytes] = {}
        try:
            for i in range(90):
                if i == 30:
                    mosquitto.kill(signal.SIGKILL)
                if i == 50:
                    mosquitto.start()
                msg = commit(outbox, "selftest" if i % 10 == 9 else "heartbeat")
                delivery.notify_new()
                stored[msg["seq"]] = json.dumps(msg).encode()
                pause.wait(0.02)
            poll_until(lambda: outbox.stats().backlog == 0, 20.0, "outbox drained")
            assert watcher.wait_for(lambda s: len(seqs_on(s, f"posagent/{TID}/")) >= 90, 10.0)
        finally:
            delivery.stop(5.0)
        got = seqs_on(watcher.seen, f"posagent/{TID}/")
        assert sorted(got) == list(range(1, 91))  # 0 gaps, kill and restart included
        assert transport.connections >= 2  # it did reconnect
        for seq, seen in got.items():
            kind = json.loads(stored[seq])["schema"].split(".")[1].split("/")[0]
            assert seen.topic == f"posagent/{TID}/{kind}"
        # the payload is the stored body itself (the last copy received, after any resend)
        assert all(json.loads(watcher_payload) == json.loads(stored[seq])
                   for seq, watcher_payload in ((q, s.payload) for q, s in got.items()))
        presence = [x.payload for x in watcher.on(f"posagent/{TID}/online")]
        assert presence.count(b"true") >= 2  # said again after the reconnect
        assert presence[-1] == b"false"  # and a stopped delivery says it is offline


def test_mqtt_3_1_1_delivers_too_and_a_batch_is_one_publish_each(mosquitto: Mosquitto) -> None:
    with Watcher(mosquitto.port, client_id="dash-311") as watcher:
        poll_until(lambda: watcher.client.is_connected(), 5.0, "watcher connected")
        t = MqttTransport(section(f"mqtt://127.0.0.1:{mosquitto.port}", mqtt_version="3.1.1"), terminal_id=TID)
        bodies = [json.dumps({"schema": "posagent.event/1", "seq": i}).encode() for i in range(1, 6)]
        result = t.post(bodies, [f"m{i}" for i in range(1, 6)])
        t.close()
        assert result.outcome is Outcome.DELIVERED, result.detail
        assert watcher.wait_for(lambda s: len(seqs_on(s, f"posagent/{TID}/event")) == 5, 5.0)
        assert [s.payload for s in watcher.seen if s.topic.endswith("/event")] == bodies
    assert "as SH-0042 (p2, c0, k60)" in mosquitto.text()  # 3.1.1, persistent session, keepalive 60


# -- bar 2: presence -------------------------------------------------------------------------------------------------
def test_a_stopped_agent_says_it_is_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A clean stop (SIGTERM) suppresses the last will, so the agent itself publishes the
    retained online = false before it disconnects: a stopped terminal does not show online."""
    name = "SIM-PRES-STOP-CLEAN"
    cfg = daemon_config(tmp_path / f"{name}.toml", name, f"mqtt://127.0.0.1:{mosquitto.port}")
    online = f"posagent/{name}/online"
    with Watcher(mosquitto.port, online, client_id="dash-clean") as watcher, \
            DaemonProc(["--config", str(cfg)], tmp_path) as d:
        assert watcher.wait_for(lambda s: any(x.payload == b"true" for x in s), 30.0), d.stderr()
        d.signal(signal.SIGTERM)
        assert d.wait(30.0) == 0
        assert watcher.wait_for(lambda s: any(x.payload == b"false" for x in s), 10.0), d.stderr()
    late = Watcher(mosquitto.port, online, client_id="late-dash-clean")
    try:
        assert late.wait_for(lambda s: any(x.retain and x.payload == b"false" for x in s), 5.0)
    finally:
        late.close()


def _presence_flip(tmp_path: Path, broker: Mosquitto, watcher: Watcher, name: str,
                   sig: signal.Signals) -> tuple[float, float]:
    """(seconds from the signal to online=false, seconds from the terminal's last message)."""
    cfg = daemon_config(tmp_path / f"{name}.toml", name, f"mqtt://127.0.0.1:{broker.port}",
                        upstream=['keepalive = "2s"'])
    online = f"posagent/{name}/online"
    with DaemonProc(["--config", str(cfg)], tmp_path) as d:
        up = watcher.wait_for(lambda s: any(x.topic == online and x.payload == b"true" for x in s)
                              and any(x.topic == f"posagent/{name}/heartbeat" for x in s), 30.0)
        assert up, d.stderr()
        d.signal(sig)
        t0 = time.monotonic()
        assert watcher.wait_for(lambda s: any(x.topic == online and x.payload == b"false" for x in s), 15.0)
        fired = next(x.at for x in watcher.on(online) if x.payload == b"false")
        last = max(x.at for x in watcher.on(f"posagent/{name}/heartbeat") if x.at <= t0)
        if sig is signal.SIGSTOP:
            d.signal(signal.SIGCONT)
    assert "Traceback" not in d.stderr()
    return fired - t0, fired - last


def test_online_turns_false_within_1_5_keepalive_after_sigkill_and_a_freeze(tmp_path: Path,
                                                                             mosquitto: Mosquitto) -> None:
    keepalive = 2.0
    with Watcher(mosquitto.port, client_id="dash-presence") as watcher:
        killed, _ = _presence_flip(tmp_path, mosquitto, watcher, "SIM-PRES-KILL", signal.SIGKILL)
        # a frozen terminal (SIGSTOP: the socket stays open, nothing is sent) is found by the
        # keepalive alone: the broker fires the will 1.5 x keepalive after the last packet
        frozen, since_last = _presence_flip(tmp_path, mosquitto, watcher, "SIM-PRES-STOP", signal.SIGSTOP)
        retained = Watcher(mosquitto.port, "posagent/SIM-PRES-KILL/online", client_id="late-dash")
        try:
            assert retained.wait_for(lambda s: any(x.retain and x.payload == b"false" for x in s), 5.0)
        finally:
            retained.close()
    print(f"\npresence (keepalive {keepalive:g} s, 1.5 x = {1.5 * keepalive:g} s): online=false {killed:.3f} s "
          f"after SIGKILL; {frozen:.3f} s after SIGSTOP ({since_last:.3f} s after the last message)")
    assert killed <= 1.5 * keepalive  # the socket closed: the broker fires the will at once
    # the keepalive path is the broker's clock: mosquitto 2.0 looks at keepalives only every
    # 6 s, in whole seconds, and fires once more than 1.5 x keepalive has passed; so up to
    # about 7 s on top of 1.5 x keepalive, whatever the keepalive (90-97 s for 60 s)
    assert 1.5 * keepalive - 0.5 <= since_last <= 1.5 * keepalive + 7.5


# -- bar 3: TLS ------------------------------------------------------------------------------------------------------
def test_tls_valid_ca_delivers_wrong_ca_and_expired_certificate_fail_and_lose_nothing(
        tmp_path: Path, pki: Pki, outbox: Outbox) -> None:
    with Mosquitto(tmp_path / "good", tls_cert=pki.cert, tls_key=pki.key) as good, \
            Mosquitto(tmp_path / "expired", tls_cert=pki.expired, tls_key=pki.key) as expired:
        good.start()
        expired.start()
        msg = commit(outbox, "heartbeat")
        cases = [(good.tls_port, pki.other_ca, "wrong CA"), (expired.tls_port, pki.ca, "expired")]
        for port, ca, what in cases:
            t = MqttTransport(section(f"mqtts://127.0.0.1:{port}", ca_file=str(ca)), terminal_id=TID)
            d = fast_delivery(outbox, t)
            d.step()
            result = t.post([json.dumps(msg).encode()], [msg["message_id"]])
            t.close()
            assert result.outcome is Outcome.FAILED, what
            assert "certificate not trusted" in result.detail and "ca_file" in result.detail, result.detail
            if what == "expired":
                assert "expired" in result.detail
            assert outbox.stats().backlog == 1  # kept for the next try
        with Watcher(good.port, client_id="dash-tls") as watcher:
            t = MqttTransport(section(f"mqtts://127.0.0.1:{good.tls_port}", ca_file=str(pki.ca)), terminal_id=TID)
            d = fast_delivery(outbox, t)
            d.step()
            t.close()
            assert outbox.stats().backlog == 0
            assert watcher.wait_for(lambda s: msg["seq"] in seqs_on(s, f"posagent/{TID}/"), 5.0)
    with pytest.raises(UpstreamError, match="ca_file"):
        MqttTransport(section("mqtts://127.0.0.1:1", ca_file=str(tmp_path / "missing.pem")), terminal_id=TID)


# -- bar 4: ACL and credentials --------------------------------------------------------------------------------------
def _password_file(tmp_path: Path, name: str, password: str) -> str:
    path = tmp_path / name
    path.write_text(password + "\n")
    path.chmod(0o600)
    return str(path)


def test_acl_refuses_another_terminals_topic_tells_once_and_keeps_everything(
        tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    users = {"T-A": "pw-a", "T-B": "pw-b"}
    with Mosquitto(tmp_path / "acl", users=users) as broker:
        broker.start()
        with Watcher(broker.port, client_id="dash-acl", username=DASHBOARD[0], password=DASHBOARD[1]) as watcher:
            # terminal A's id with user B's credentials: B may publish only under posagent/T-B/
            t = MqttTransport(section(f"mqtt://127.0.0.1:{broker.port}", username="T-B", mqtt_version="5",
                                      password_file=_password_file(tmp_path, "pw-b", "pw-b")), terminal_id="T-A")
            d = fast_delivery(outbox, t, refused_pause=0.0)
            for _ in range(3):
                commit(outbox, "heartbeat")
            caplog.set_level(logging.WARNING, logger="posagent")
            for _ in range(4):
                d.step()
            result = t.post([b'{"schema":"posagent.heartbeat/1"}'], ["x"])
            t.close()
            assert result.outcome is Outcome.REFUSED and "0x87 Not authorized" in result.detail, result.detail
            assert outbox.stats().backlog == 3  # nothing lost
            refusals = [r for r in caplog.records if "refused the agent" in r.getMessage()]
            assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
            # the same terminal with its own credentials is let through
            t = MqttTransport(section(f"mqtt://127.0.0.1:{broker.port}", username="T-A", mqtt_version="5",
                                      password_file=_password_file(tmp_path, "pw-a", "pw-a")), terminal_id="T-A")
            d = fast_delivery(outbox, t)
            poll_until(lambda: d.step() and outbox.stats().backlog == 0, 10.0, "delivered with its own user")
            t.close()
            assert watcher.wait_for(lambda s: len(seqs_on(s, "posagent/T-A/")) == 3, 5.0)
        # a wrong password is refused at CONNACK
        t = MqttTransport(section(f"mqtt://127.0.0.1:{broker.port}", username="T-A",
                                  password_file=_password_file(tmp_path, "bad", "wrong")), terminal_id="T-A")
        result = t.post([b"{}"], ["y"])
        t.close()
        assert result.outcome is Outcome.REFUSED and "CONNACK" in result.detail, result.detail
    assert "wrong" not in caplog.text and "pw-a" not in caplog.text  # no password in any log line


def test_acl_denial_is_silently_acked_with_mqtt_3_1_1(tmp_path: Path) -> None:
    """The limit docs/mqtt.md states: mosquitto acks a denied 3.1.1 publish (3.1.1 has no
    way to say no), so only MQTT 5 makes an ACL refusal visible."""
    with Mosquitto(tmp_path / "acl311", users={"T-A": "pw-a", "T-B": "pw-b"}) as broker:
        broker.start()
        t = MqttTransport(section(f"mqtt://127.0.0.1:{broker.port}", username="T-B", mqtt_version="3.1.1",
                                  password_file=_password_file(tmp_path, "pw-b", "pw-b")), terminal_id="T-A")
        result = t.post([b'{"schema":"posagent.heartbeat/1"}'], ["x"])
        t.close()
    assert result.outcome is Outcome.DELIVERED


def test_a_group_readable_password_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("secret\n")
    path.chmod(0o640)
    with pytest.raises(UpstreamError, match="readable by its group") as e:
        MqttTransport(section("mqtt://127.0.0.1:1", username="u", password_file=str(path)), terminal_id=TID)
    assert "secret" not in str(e.value)


# -- bar 6: commands ---------------------------------------------------------------------------------------------------
def test_a_command_token_reaches_on_command_and_junk_does_not(mosquitto: Mosquitto,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_command(token: str, source: str) -> None:
        with lock:
            calls.append((token, source))

    caplog.set_level(logging.INFO, logger="posagent")
    t = MqttTransport(section(f"mqtt://127.0.0.1:{mosquitto.port}"), terminal_id=TID, on_command=on_command)
    try:
        assert t.post([b'{"schema":"posagent.heartbeat/1"}'], ["h"]).outcome is Outcome.DELIVERED  # subscribed
        token = "eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiIxIiwiYWN0IjoiaGVhcnRiZWF0In0.c2lnbmF0dXJl"
        with Watcher(mosquitto.port, "nothing/#", client_id="fleet") as fleet:
            fleet.publish(f"posagent/{TID}/cmd", b"\xff\xfe not utf-8")
            fleet.publish(f"posagent/{TID}/cmd", b"a" * 8193)
            fleet.publish(f"posagent/{TID}/cmd", token.encode())
            poll_until(lambda: len(calls) >= 1, 5.0, "the command handed over")
        assert calls == [(token, "mqtt")]
        assert sum("dropped a command" in r.getMessage() for r in caplog.records) == 2
    finally:
        t.close()


# -- connection management -----------------------------------------------------------------------------------------
def test_no_broker_fails_fast_and_stop_returns_at_once() -> None:
    port = free_port()
    t = MqttTransport(section(f"mqtt://127.0.0.1:{port}", timeout=Duration(3.0)), terminal_id=TID, backoff=(5, 5))
    t0 = time.monotonic()
    first = t.post([b"{}"], ["a"])
    took = time.monotonic() - t0
    assert first.outcome is Outcome.FAILED and "refused" in first.detail and took < 3.0, (first, took)
    t0 = time.monotonic()
    again = t.post([b"{}"], ["a"])  # in the backoff: the last problem, at once
    assert again.outcome is Outcome.FAILED and time.monotonic() - t0 < 0.5
    t.stop.set()
    t0 = time.monotonic()
    assert t.post([b"{}"], ["a"]).detail == "stopped" and time.monotonic() - t0 < 0.1
    t.close()


def test_failover_to_the_next_broker_url(tmp_path: Path) -> None:
    dead = free_port()
    with Mosquitto(tmp_path / "second") as broker:
        broker.start()
        up = UpstreamSection(url=f"mqtt://127.0.0.1:{dead}", urls=[f"mqtt://127.0.0.1:{broker.port}"],
                             allow_insecure_http=True, timeout=Duration(2.0))
        t = MqttTransport(up, terminal_id=TID, backoff=(0.05, 0.2))
        try:
            poll_until(lambda: t.post([b"{}"], ["f"]).outcome is Outcome.DELIVERED, 10.0,
                       "delivered via the second URL")
            assert t.connected_to == f"127.0.0.1:{broker.port}"
        finally:
            t.close()


# -- bar 7: bytes on the wire ---------------------------------------------------------------------------------------
def test_a_steady_mqtt_heartbeat_costs_fewer_bytes_than_https(tmp_path: Path) -> None:
    """#15's bar: per steady heartbeat on kept TLS connections (both ways, TLS records
    included), MQTT 5 with its default gzip payload costs fewer bytes than HTTPS with its
    default gzip body, and MQTT's framing is a fraction of HTTP's headers."""
    from tests.bench.wire_bytes import measure, report

    figures = measure(tmp_path, count=5)
    print("\n" + report(figures))
    assert figures.mqtt < figures.https_gzip
    assert figures.mqtt_payload < figures.body  # the payload went compressed
    assert figures.mqtt_overhead < figures.https_overhead / 3
