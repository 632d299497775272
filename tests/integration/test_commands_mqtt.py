"""Remote commands over MQTT, end to end: a real ``posagent run`` connected to a real
mosquitto; the fleet publishes signed tokens on ``posagent/<terminal>/cmd`` and reads the
results on ``posagent/<terminal>/command_result``:

- a valid ``selftest`` command yields its self-test report and one ``done`` result with
  source ``mqtt``;
- a forged, an expired and a wrong-audience command run nothing and each yields one
  ``refused`` result;
- the same valid token published again after an agent restart is refused ``replayed``.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.brokers import Mosquitto, Watcher
from tests.integration.daemon_proc import DaemonProc, daemon_config
from tests.integration.fleet_keys import FleetKey, tamper

TERMINAL = "SIM-MQTT-CMD"
CMD = f"posagent/{TERMINAL}/cmd"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker.start()


def messages(w: Watcher, kind: str) -> list[dict[str, Any]]:
    """The messages of ``kind`` seen, deduplicated on message_id (delivery is at least once)."""
    out: dict[str, dict[str, Any]] = {}
    for s in w.on(f"posagent/{TERMINAL}/{kind}"):
        m = json.loads(s.payload)
        out[m["message_id"]] = m
    return sorted(out.values(), key=lambda m: m["seq"])


def test_commands_over_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:
    fleet = FleetKey("fleet-1")
    key = fleet.write_public(tmp_path / "keys")
    later = (dt.datetime.now() + dt.timedelta(hours=12)).strftime("%H:%M")  # no daily self-test meanwhile
    cfg = daemon_config(tmp_path / "posagent.toml", TERMINAL, f"mqtt://127.0.0.1:{mosquitto.port}",
                        schedule=[f'selftest_at = "{later}"', 'jitter = "0s"'], system=False,
                        sections=f'[commands]\npublic_keys = ["{key}"]\nallow = ["heartbeat", "selftest"]\n')
    good = fleet.sign("selftest", TERMINAL, args={"level": "internal"}, jti="mqtt-good")
    bad = [tamper(fleet.sign("selftest", TERMINAL, jti="mqtt-forged")),
           fleet.sign("selftest", TERMINAL, jti="mqtt-old", iat=time.time() - 1200, lifetime=600),
           fleet.sign("selftest", "SIM-OTHER", jti="mqtt-aud")]
    with Watcher(mosquitto.port, f"posagent/{TERMINAL}/#", client_id="fleet-ops") as w:
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert w.wait_for(lambda s: any(x.topic.endswith("/online") and x.payload == b"true" for x in s)
                              and any(x.topic.endswith("/heartbeat") for x in s), 30.0), d.stderr()
            w.publish(CMD, good.encode())
            assert w.wait_for(lambda s: len(messages(w, "command_result")) >= 1, 60.0), d.stderr()
            done = messages(w, "command_result")
            assert [(m["jti"], m["outcome"], m["source"]) for m in done] == [("mqtt-good", "done", "mqtt")]
            selftests = messages(w, "selftest")
            assert len(selftests) == 1 and selftests[0]["trigger"] == "manual"
            assert selftests[0]["seq"] < done[0]["seq"]
            for token in bad:
                w.publish(CMD, token.encode())
            assert w.wait_for(lambda s: len(messages(w, "command_result")) >= 4, 30.0), d.stderr()
            refused = {m["jti"]: m["reason"] for m in messages(w, "command_result") if m["outcome"] == "refused"}
            assert len(refused) == 3 and "expired" in refused.values() and "wrong_audience" in refused.values()
            assert len(messages(w, "selftest")) == 1  # none of them ran anything
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            n = len(messages(w, "command_result"))
            assert w.wait_for(lambda s: len(messages(w, "heartbeat")) >= 2, 30.0), d.stderr()
            w.publish(CMD, good.encode())  # the same token again, after a restart
            assert w.wait_for(lambda s: len(messages(w, "command_result")) > n, 30.0), d.stderr()
            again = messages(w, "command_result")[-1]
            assert (again["jti"], again["outcome"], again["reason"]) == ("mqtt-good", "refused", "replayed")
            assert len(messages(w, "selftest")) == 1
            d.signal(signal.SIGTERM)
            assert d.wait(30.0) == 0
            assert "Traceback" not in d.stderr()
