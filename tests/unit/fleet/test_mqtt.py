"""The MQTT transport's decisions without a broker: broker answers mapped onto the delivery
outcomes, batch results, command payloads, broker URLs, the password file, topics, and the
settings refused before any connection (the broker tests are tests/integration/test_mqtt*.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from posagent.config.model import UpstreamSection
from posagent.core.values import Duration
from posagent.fleet import mqtt_support as ms
from posagent.fleet.mqtt import MqttTransport
from posagent.fleet.transport import open_transport
from posagent.fleet.upstream import MAX_TOKEN, Outcome, SendResult, UpstreamError


def section(url: str = "mqtts://broker.example:8883", **kw: Any) -> UpstreamSection:
    return UpstreamSection(url=url, **kw)


@pytest.mark.parametrize(("code", "packet", "outcome"), [
    (0x00, "PUBACK", Outcome.DELIVERED),
    (0x10, "PUBACK", Outcome.DELIVERED),  # no matching subscribers: accepted all the same
    (0x87, "PUBACK", Outcome.REFUSED),  # not authorized (an ACL)
    (0x86, "CONNACK", Outcome.REFUSED),  # bad user name or password
    (0x8A, "CONNACK", Outcome.REFUSED),  # banned
    (0x85, "CONNACK", Outcome.REFUSED),  # client identifier not valid
    (0x97, "PUBACK", Outcome.FAILED),  # quota exceeded
    (0x89, "CONNACK", Outcome.FAILED),  # server busy
    (0x88, "CONNACK", Outcome.FAILED),  # server unavailable
    (0x9C, "CONNACK", Outcome.FAILED),  # use another server
    (0x90, "PUBACK", Outcome.REJECTED),  # topic name invalid
    (0x99, "PUBACK", Outcome.REJECTED),  # payload format invalid
    (0x95, "PUBACK", Outcome.REJECTED),  # packet too large
    (0x95, "CONNACK", Outcome.FAILED),  # ...only a PUBACK is about one message
    (0x80, "PUBACK", Outcome.FAILED),  # unspecified error
])
def test_broker_answers_map_like_http(code: int, packet: str, outcome: Outcome) -> None:
    result = ms.classify(code, "Name", packet, "b:1883")
    assert result.outcome is outcome
    assert f"{packet} 0x{code:02X} Name from b:1883" in result.detail


def test_busy_answers_carry_a_retry_hint() -> None:
    assert ms.classify(0x89, "Server busy", "CONNACK", "b").retry_after == ms.BUSY_RETRY_AFTER

    class Props:
        def __init__(self) -> None:
            self.UserProperty = [("Retry-After", "120")]

    assert ms.classify(0x97, "Quota exceeded", "PUBACK", "b", Props()).retry_after == 120.0
    assert ms.classify(0x87, "Not authorized", "PUBACK", "b").retry_after is None


def test_a_batch_is_as_bad_as_its_worst_message() -> None:
    d, f, r, x = (SendResult(o, o.value) for o in (Outcome.DELIVERED, Outcome.FAILED, Outcome.REJECTED,
                                                      Outcome.REFUSED))
    assert ms.worst([d, r, d]) is r
    assert ms.worst([d, r, f]) is f
    assert ms.worst([f, x, r]) is x
    assert ms.worst([d, d]).outcome is Outcome.DELIVERED


def test_command_payloads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert ms.command_token(b"  eyJ.eyJ.sig\n") == "eyJ.eyJ.sig"
    assert ms.command_token(b"a" * MAX_TOKEN) == "a" * MAX_TOKEN
    for junk in (b"a" * (MAX_TOKEN + 1), b"\xff\xfe", b"", b"two words", b"tab\there", b"nul\x00"):
        assert ms.command_token(junk) is None
    assert len(caplog.records) == 6  # one line each


def test_broker_urls() -> None:
    assert ms.Endpoint.parse("mqtts://broker.example", section()) == ms.Endpoint("broker.example", 8883, True,
                                                                          "broker.example:8883")
    lab = section(allow_insecure_http=True)
    assert ms.Endpoint.parse("mqtt://10.0.0.5", lab).port == 1883
    assert ms.Endpoint.parse("mqtt://[::1]:1999", lab).host == "::1"
    with pytest.raises(UpstreamError, match="allow_insecure_http"):
        ms.Endpoint.parse("mqtt://10.0.0.5", section())
    with pytest.raises(UpstreamError, match="user name or password") as e:
        ms.Endpoint.parse("mqtts://u:hunter2@broker.example", section())
    assert "hunter2" not in str(e.value)
    with pytest.raises(UpstreamError, match="not mqtt"):
        ms.Endpoint.parse("https://broker.example", section())
    with pytest.raises(UpstreamError, match="port"):
        ms.Endpoint.parse("mqtts://broker.example:99999", section())


@pytest.mark.parametrize("tid", ["", "a/b", "a+", "#", "x\0"])
def test_a_terminal_id_must_be_one_topic_level(tid: str) -> None:
    with pytest.raises(UpstreamError, match="topic level"):
        ms.check_terminal_id(tid)


def test_password_file_and_credential(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery\n")
    pw.chmod(0o600)
    assert ms.read_password(section(username="t1", password_file=str(pw)), {}) == "correct horse battery"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "upstream-password").write_text("from-systemd\n")
    assert ms.read_password(section(username="t1", password_file=str(pw)),
                         {"CREDENTIALS_DIRECTORY": str(creds)}) == "from-systemd"
    assert ms.read_password(section(username="t1"), {}) is None
    with pytest.raises(UpstreamError, match="needs a user name"):
        ms.read_password(section(password_file=str(pw)), {})
    pw.chmod(0o604)
    with pytest.raises(UpstreamError, match="readable by everyone") as e:
        ms.read_password(section(username="t1", password_file=str(pw)), {})
    assert "horse" not in str(e.value) and "LoadCredential=upstream-password" in str(e.value)
    pw.chmod(0o600)
    pw.write_text("one\ntwo\n")
    with pytest.raises(UpstreamError, match="more than one line"):
        ms.read_password(section(username="t1", password_file=str(pw)), {})


def test_topics_and_keepalive() -> None:
    t = MqttTransport(section(prefix="/fleet/"), terminal_id="SH-0042", env={})
    assert t.topic(b'{"schema": "posagent.heartbeat/1"}') == "fleet/SH-0042/heartbeat"
    assert t.topic(b'{"schema": "posagent.command_result/1"}') == "fleet/SH-0042/command_result"
    assert t.topic(b"[]") == "fleet/SH-0042/unknown"
    assert (t.online_topic, t.cmd_topic) == ("fleet/SH-0042/online", "fleet/SH-0042/cmd")
    assert t._keepalive() == 60
    assert MqttTransport(section(keepalive=Duration(2.0)), terminal_id="x", env={})._keepalive() == 2


def test_settings_refused_before_any_connection(tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match="no upstream URL"):
        MqttTransport(section(url=""), terminal_id="x", env={})
    with pytest.raises(UpstreamError, match="plain mqtt"):
        MqttTransport(section("mqtt://127.0.0.1"), terminal_id="x", env={})
    with pytest.raises(UpstreamError, match="topic level"):
        MqttTransport(section(), terminal_id="a/b", env={})
    with pytest.raises(UpstreamError, match="topic prefix"):
        MqttTransport(section(prefix="fleet/+"), terminal_id="x", env={})
    with pytest.raises(UpstreamError, match="ca_file"):
        MqttTransport(section(ca_file=str(tmp_path / "none.pem")), terminal_id="x", env={})
    with pytest.raises(UpstreamError, match=r"client_cert|not found"):
        MqttTransport(section(client_cert=str(tmp_path / "c.pem"), client_key=str(tmp_path / "k.pem")),
                      terminal_id="x", env={})


def test_open_transport_picks_mqtt_by_scheme() -> None:
    t = open_transport(section(), terminal_id="SH-1", env={})
    assert isinstance(t, MqttTransport)


def test_a_stopped_transport_answers_at_once_and_connects_nowhere() -> None:
    t = MqttTransport(section(timeout=Duration(30.0)), terminal_id="x", env={})
    t.stop.set()
    t0 = time.monotonic()
    result = t.post([b"{}"], ["m"])
    assert result.outcome is Outcome.FAILED and result.detail == "stopped"
    assert time.monotonic() - t0 < 0.1
    assert t._link is None  # nothing was started
    t.close()
