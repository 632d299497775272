"""Fleet-safe delivery from real processes' code: 20 agents' real ``Delivery`` threads (each
with its own SQLite outbox and HTTP connection) against a real collector on 127.0.0.1.

- A collector answering 503 + ``Retry-After: 3`` gets each agent's retries no sooner than
  3 s and spread out (no herd in one 100 ms slice), one request per try.
- When it accepts again, each agent sends the present, then its backlog as one gzip batch;
  the collector dedupes each report on its message_id; nothing is lost.
- A batch answered too late is sent again and deduped; a 415 turns gzip off; the HTTP
  connection is kept across an idle gap longer than httpx's 5 s default; RateLimit and a
  Retry-After on a 2xx reach the pacer.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.config.model import UpstreamSection
from posagent.core.values import Duration
from posagent.fleet.delivery import Delivery, DeliveryPolicy
from posagent.fleet.messages import AgentState
from posagent.fleet.outbox import Outbox, Stats
from posagent.fleet.upstream import Outcome, Upstream
from tests.integration.collector import Collector, Received, Reply

AGENTS = 20
REPORTS = 6  # per agent, committed before it starts
RETRY_AFTER = 3.0


def section(url: str, **kw: Any) -> UpstreamSection:
    kw.setdefault("timeout", Duration(2.0))
    return UpstreamSection(url=url, allow_insecure_http=True, **kw)


def report(terminal: str, kind: str, seq: int) -> dict[str, Any]:
    """A report of about a kilobyte, shaped like a heartbeat (so gzip has something to do)."""
    devices = {f"dev{i}": {"driver": "escpos", "status": "ok", "code": "PRINTER_OK", "message": "ready",
                           "paper": "ok", "cover": "closed", "measurements": {"latency_ms": 3.5 + i}}
               for i in range(6)}
    return {"schema": f"posagent.{kind}/1", "message_id": str(uuid.uuid4()), "terminal_id": terminal,
            "seq": seq, "sent_at": dt.datetime.now().astimezone().isoformat(), "devices": devices}


class Agent:
    """One terminal's delivery: its outbox, its upstream, its delivery thread."""

    def __init__(self, tmp: Path, name: str, url: str, seed: int, *, policy: DeliveryPolicy | None = None,
                 timeout: float = 2.0) -> None:
        self.name = name
        self.outbox = Outbox(str(tmp / name), max_bytes=10**7, max_age=86400)
        self.ids: list[str] = []
        for i in range(REPORTS):
            kind = "event" if i == 2 else "heartbeat"

            def finalize(seq: int, stats: Stats, kind: str = kind) -> dict[str, Any]:
                return report(name, kind, seq)

            self.ids.append(self.outbox.commit(kind, finalize)["message_id"])
        self.upstream = Upstream(section(url, timeout=Duration(timeout)), env={})
        self.delivery = Delivery(self.outbox, self.upstream, AgentState(started_at=dt.datetime.now().astimezone()),
                                 policy=policy, rng=random.Random(seed))

    def close(self) -> None:
        self.delivery.stop(5.0)
        self.outbox.close()


@pytest.fixture
def agents(tmp_path: Path, collector: Collector) -> Iterator[list[Agent]]:
    fleet = [Agent(tmp_path, f"T{i:03d}", collector.url, seed=i) for i in range(AGENTS)]
    yield fleet
    for a in fleet:
        a.close()


def requests_of(collector: Collector, name: str) -> list[Received]:
    return [r for r in collector.requests if _terminal(r.json) == name]


def _terminal(body: Any) -> str | None:
    first = body[0] if isinstance(body, list) and body else body
    return first.get("terminal_id") if isinstance(first, dict) else None


@pytest.mark.slow
def test_twenty_agents_spread_their_retries_then_deliver_batches_deduped(collector: Collector,
                                                                         agents: list[Agent]) -> None:
    collector.default = Reply(503, {"Retry-After": f"{RETRY_AFTER:g}"})
    for a in agents:
        a.delivery.start()

    def tried(n: int) -> Any:
        return lambda _rs: all(len(requests_of(collector, a.name)) >= n for a in agents)

    assert collector.wait_for(tried(3), 30.0), "every agent tries three times while the collector says 503"
    collector.default = Reply(200)
    assert collector.wait_for(lambda _rs: set(collector.unique()) >= {i for a in agents for i in a.ids}, 30.0)
    for a in agents:
        assert a.delivery.stop(5.0)

    # -- the 503 phase: one request per try, never before Retry-After, spread out ---------
    retries: list[float] = []
    gaps: list[float] = []
    for a in agents:
        refused = [r for r in requests_of(collector, a.name) if r.status == 503]
        assert all(r.batch == 0 for r in refused)  # each try is the present alone: one small request
        gaps += [b.at - a_.at for a_, b in itertools.pairwise(refused)]
        retries += [r.at for r in refused[1:]]
        nxt = next(r for r in requests_of(collector, a.name) if r.status == 200)
        gaps.append(nxt.at - refused[-1].at)
    assert min(gaps) >= RETRY_AFTER - 0.05, min(gaps)  # Retry-After is a minimum
    assert max(gaps) <= 1.5 * RETRY_AFTER + 1.0, max(gaps)  # plus at most half of it (and scheduling)
    spread = max(retries) - min(retries)
    slices = Counter(int((t - min(retries)) / 0.1) for t in retries)
    first_round = sorted(min(r.at for r in requests_of(collector, a.name) if r.status == 503 and
                             r.at > min(x.at for x in requests_of(collector, a.name))) for a in agents)
    first_slices = Counter(int((t - first_round[0]) / 0.1) for t in first_round)
    print(f"\n{len(retries)} retries of {AGENTS} agents over {spread:.2f} s; busiest 100 ms slice: "
          f"{max(slices.values())} of them; first retries over {first_round[-1] - first_round[0]:.2f} s, "
          f"busiest slice {max(first_slices.values())} of {AGENTS}; waits {min(gaps):.2f}-{max(gaps):.2f} s")
    assert spread >= 1.5
    assert max(slices.values()) < len(retries) * 2 / 3
    assert max(first_slices.values()) < AGENTS * 2 / 3
    assert first_round[-1] - first_round[0] >= 0.5

    # -- back: the present alone, then the backlog as one gzip batch, nothing lost -------------
    for a in agents:
        ok = [r for r in requests_of(collector, a.name) if r.status == 200]
        assert ok[0].batch == 0 and ok[0].json["message_id"] == a.ids[-1]  # the newest heartbeat first
        batches = [r for r in ok if r.batch]
        assert len(batches) == 1 and batches[0].batch == REPORTS - 1 and batches[0].encoding == "gzip"
        assert [m["message_id"] for m in batches[0].json] == a.ids[:-1]  # oldest first
        assert batches[0].wire_bytes < len(batches[0].body) / 3  # gzip earns its keep
        assert a.outbox.stats().backlog == 0
        assert len({r.client_port for r in requests_of(collector, a.name)}) == 1  # one kept connection
    assert set(collector.unique()) == {i for a in agents for i in a.ids}


def test_a_batch_answered_too_late_is_sent_again_and_deduped(tmp_path: Path, collector: Collector) -> None:
    a = Agent(tmp_path, "T-LATE", collector.url, seed=5, policy=DeliveryPolicy(backoff_base=0.1, backoff_cap=0.3),
              timeout=0.5)
    # down once (so what waits is a backlog), the present accepted, the batch answered too late
    collector.script(Reply(503), Reply(200), Reply(200, hang=1.5))
    try:
        a.delivery.start()
        assert collector.wait_for(lambda _rs: set(collector.unique()) >= set(a.ids) and a.outbox.stats().backlog == 0,
                                  20.0)
        assert a.delivery.stop(5.0)
        collector.release.set()
        assert collector.wait_for(lambda rs: sum(1 for r in rs if r.status == 200) > REPORTS, 5.0)
    finally:
        a.close()
    delivered = collector.delivered()
    assert len(delivered) > len(collector.unique()) == REPORTS  # a duplicate arrived, the collector kept one
    # the late batch held seq 1-5; after it the present (seq 5) went alone, then seq 1-4
    assert sorted(r.batch for r in collector.requests if r.batch) == [REPORTS - 2, REPORTS - 1]


def test_415_turns_gzip_off_for_the_collector(collector: Collector) -> None:
    up = Upstream(section(collector.url), env={})
    body = (b'{"message_id":"k-415","pad":"' + b"x" * 2000 + b'"}')
    collector.script(Reply(415))
    assert up.post([body], ["k-415"]).outcome is Outcome.DELIVERED
    assert up.post([body], ["k-415"]).outcome is Outcome.DELIVERED
    up.close()
    assert [(r.status, r.encoding) for r in collector.requests] == [(415, "gzip"), (200, ""), (200, "")]
    assert not up.compressing


def test_the_connection_is_kept_across_an_idle_gap_longer_than_5_s(collector: Collector) -> None:
    up = Upstream(section(collector.url, keepalive=Duration(120.0)), env={})
    assert up.post([b'{"message_id":"k-1"}'], ["k-1"]).outcome is Outcome.DELIVERED
    threading.Event().wait(5.5)  # an idle period (the thing under test), not a wait for a condition
    assert up.post([b'{"message_id":"k-2"}'], ["k-2"]).outcome is Outcome.DELIVERED
    up.close()
    first, second = collector.requests
    assert first.client_port == second.client_port  # no new TCP (or TLS) handshake


def test_ratelimit_and_a_retry_after_on_a_2xx_reach_the_pacer(tmp_path: Path, collector: Collector) -> None:
    a = Agent(tmp_path, "T-PACE", collector.url, seed=9)
    collector.script(Reply(200, {"RateLimit-Policy": '"drain";q=6;w=60', "RateLimit": '"drain";r=5;t=60',
                                 "Retry-After": "2"}))
    try:
        wait, _ = a.delivery.step()
        assert 2.0 <= wait <= 3.0  # accepted, and told to hold: the whole collector waits
        before = time.monotonic()
        again, _ = a.delivery.step()
        assert len(collector.requests) == 1 and 0 < again <= wait - (time.monotonic() - before) + 1e-3
        assert a.delivery.pacer.server_rate == pytest.approx(5 / 60)  # the tighter of q/w and r/t
    finally:
        a.close()
