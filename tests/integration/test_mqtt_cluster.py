"""A broker cluster that already exists: three nats-server nodes (JetStream, MQTT on each,
routed to each other on loopback, ``tests/integration/brokers.py``). The agent is given all
three node URLs; it speaks MQTT 3.1.1 to them (NATS 2.9 answers MQTT 5 with "unsupported
protocol version": ``mqtt_version = "auto"`` falls back). The node it is connected to is
SIGKILLed mid-stream: it reconnects to another node and the dashboard, on a surviving node,
sees every seq, without a gap."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from posagent.config.model import UpstreamSection
from posagent.core.values import Duration
from posagent.fleet.delivery import Delivery, DeliveryPolicy
from posagent.fleet.messages import AgentState
from posagent.fleet.mqtt import MqttTransport
from posagent.fleet.outbox import Outbox, Stats
from tests.conftest import poll_until
from tests.integration.brokers import NatsCluster, Watcher

TID = "NATS-0007"


def commit(box: Outbox) -> int:
    def finalize(seq: int, stats: Stats) -> dict[str, Any]:
        return {"schema": "posagent.heartbeat/1", "message_id": str(uuid.uuid4()), "seq": seq}

    return int(box.commit("heartbeat", finalize)["seq"])


@pytest.mark.slow
def test_killing_the_node_in_use_fails_over_to_another_without_a_gap(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="posagent")
    with NatsCluster(tmp_path / "nats") as cluster:
        cluster.start()
        urls = [n.url for n in cluster.nodes]
        up = UpstreamSection(url=urls[0], urls=urls[1:], allow_insecure_http=True, timeout=Duration(3.0))
        transport = MqttTransport(up, terminal_id=TID, backoff=(0.05, 0.5))
        box = Outbox(str(tmp_path / "state"), max_bytes=10**7, max_age=86400)
        delivery = Delivery(box, transport, AgentState(started_at=dt.datetime.now().astimezone()),
                            policy=DeliveryPolicy(rate=0, backoff_base=0.1, backoff_cap=0.5, idle_wait=0.5))
        watcher: Watcher | None = None
        try:
            commit(box)
            delivery.start()
            poll_until(lambda: transport.connected_to is not None, 15.0, "connected to a node")
            first = cluster.node_of_port(int(str(transport.connected_to).rsplit(":", 1)[1]))
            survivor = next(n for n in cluster.nodes if n is not first)
            watcher = Watcher(survivor.mqtt_port, f"posagent/{TID}/#", client_id="nats-dashboard")
            assert watcher.subscribed.wait(15.0), "the dashboard's SUBACK"
            # The subscription must reach the node the agent publishes to (a route, and on
            # NATS a JetStream consumer, which a loaded machine creates in seconds): a probe
            # published there, QoS 1, until the dashboard sees one.
            with Watcher(first.mqtt_port, "posagent-test/none", client_id="nats-probe") as probe:
                for n in range(100):
                    probe.publish(f"posagent/{TID}/probe", str(n).encode())
                    if watcher.wait_for(lambda seen: any(s.topic.endswith("/probe") for s in seen), 0.2):
                        break
                assert watcher.on(f"posagent/{TID}/probe"), "a probe through the agent's node reached the dashboard"
            pause = threading.Event()
            killed_at = reconnected_at = 0.0
            for i in range(60):
                if i == 25:
                    cluster.kill(first)
                    killed_at = time.monotonic()
                commit(box)
                delivery.notify_new()
                pause.wait(0.03)
                if killed_at and not reconnected_at and transport.connections >= 2:
                    reconnected_at = time.monotonic()
            if not reconnected_at:
                poll_until(lambda: transport.connections >= 2, 30.0, "reconnected to another node")
                reconnected_at = time.monotonic()
            failover = reconnected_at - killed_at
            poll_until(lambda: box.stats().backlog == 0, 30.0, "outbox drained")
            drained = time.monotonic() - killed_at
            last = box.stats().seq

            def all_seen(seen: list[Any]) -> bool:
                return {json.loads(s.payload)["seq"] for s in seen if s.topic.endswith("/heartbeat")} >= set(
                    range(2, last + 1))

            if not watcher.wait_for(all_seen, 15.0):
                got = {json.loads(s.payload)["seq"] for s in watcher.seen if s.topic.endswith("/heartbeat")}
                missing = sorted(set(range(2, last + 1)) - got)
                raise AssertionError(f"the dashboard never saw seq {missing} (of 2..{last}; "
                                     f"the node died before seq 27)\n" + cluster.logs())
        finally:
            delivery.stop(5.0)
            box.close()
            if watcher is not None:
                watcher.close()
        seqs = {json.loads(s.payload)["seq"] for s in watcher.seen if s.topic.endswith("/heartbeat")}
        # seq 1 went before the dashboard subscribed; from then on nothing is missing
        assert sorted(seqs - {1}) == list(range(2, last + 1))
        assert transport.connected_to != f"127.0.0.1:{first.mqtt_port}"
        assert "does not speak MQTT 5" in caplog.text
        print(f"\nNATS failover: node {first.name} killed; connected again (to another node) after "
              f"{failover:.2f} s, outbox drained {drained:.2f} s after the kill; {last} messages, 0 gaps")
