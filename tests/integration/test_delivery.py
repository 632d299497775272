"""Delivery against a real HTTP collector on 127.0.0.1: headers, retries with backoff,
Retry-After honoured and capped, jittered waits (seeded), 401 logged once and counted (no
silent loop, nothing lost), other 4xx rejected, recorded and counted, the newest heartbeat
once then the backlog oldest first at a limited rate, outage and recovery, token file
permissions, TLS verification with a private CA."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import random
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.config.model import UpstreamSection
from posagent.core.values import Duration
from posagent.fleet.delivery import Delivery, DeliveryPolicy
from posagent.fleet.messages import AgentState
from posagent.fleet.outbox import Outbox, Stats
from posagent.fleet.upstream import Outcome, RetryPolicy, Upstream, UpstreamError, parse_retry_after, read_token
from tests.conftest import free_port, need_binary
from tests.integration.collector import Collector, Reply

FAST = RetryPolicy(attempts=5, base=0.05, cap=0.2, retry_after_cap=5.0, budget=30.0)
TOKEN = "s3cr3t-token-0042"


def section(url: str, **kw: Any) -> UpstreamSection:
    kw.setdefault("timeout", Duration(0.5))
    kw.setdefault("allow_insecure_http", url.startswith("http:"))
    return UpstreamSection(url=url, **kw)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(str(tmp_path / "state"), max_bytes=10**7, max_age=86400)
    yield box
    box.close()


def commit(box: Outbox, kind: str) -> dict[str, Any]:
    def finalize(seq: int, stats: Stats) -> dict[str, Any]:
        return {"schema": f"posagent.{kind}/1", "message_id": str(uuid.uuid4()), "seq": seq}

    return box.commit(kind, finalize)


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def test_post_carries_json_idempotency_key_and_bearer_token(collector: Collector, token_file: Path) -> None:
    up = Upstream(section(collector.url, token_file=str(token_file)), policy=FAST, env={})
    msg = {"message_id": str(uuid.uuid4()), "seq": 1, "text": "收银机"}
    result = up.send(body(msg), msg["message_id"])
    up.close()
    assert result.outcome is Outcome.DELIVERED and result.attempts == 1
    (r,) = collector.received
    assert r.path == "/api/v1/heartbeat"
    assert r.headers["idempotency-key"] == msg["message_id"]
    assert r.headers["authorization"] == f"Bearer {TOKEN}"
    assert r.headers["content-type"] == "application/json"
    assert r.json == msg


def test_5xx_dropped_connection_and_timeout_are_retried(collector: Collector) -> None:
    collector.script(Reply(500), Reply(drop=True), Reply(hang=60.0), Reply(502))
    up = Upstream(section(collector.url), policy=FAST, env={})
    result = up.send(b'{"x":1}', "k-1")
    up.close()
    assert result.outcome is Outcome.DELIVERED and result.attempts == 5
    # the hung request is recorded only when the collector lets it go: the client gave up on it
    assert [r.status for r in collector.received] == [500, None, 502, 200]
    keys = {r.headers["idempotency-key"] for r in collector.received}
    assert keys == {"k-1"}  # the same key on every retry: the receiver dedupes
    assert all(0.0 <= w <= FAST.cap for w in up.waits)  # full jitter, capped


def test_retries_give_up_after_the_attempts_and_say_why(collector: Collector) -> None:
    collector.default = Reply(503)
    up = Upstream(section(collector.url), policy=FAST, env={})
    result = up.send(b"{}", "k-2")
    up.close()
    assert result.outcome is Outcome.FAILED and result.attempts == FAST.attempts
    assert "503" in result.detail
    assert len(collector.received) == FAST.attempts


def test_retry_after_is_honoured(collector: Collector) -> None:
    collector.script(Reply(503, {"Retry-After": "1"}))
    up = Upstream(section(collector.url), policy=FAST, env={})
    result = up.send(b"{}", "k-3")
    up.close()
    assert result.outcome is Outcome.DELIVERED
    assert up.waits == [1.0]  # not the 0.2 s backoff cap: the server's word
    first, second = collector.received
    assert second.at - first.at >= 0.95


def test_retry_after_is_capped(collector: Collector) -> None:
    collector.script(Reply(429, {"Retry-After": "3600"}))
    capped = RetryPolicy(attempts=3, base=0.05, cap=0.2, retry_after_cap=0.3, budget=30.0)
    up = Upstream(section(collector.url), policy=capped, env={})
    assert up.send(b"{}", "k-4").outcome is Outcome.DELIVERED
    up.close()
    assert up.waits == [0.3]


def test_retry_after_forms() -> None:
    now = dt.datetime(2027, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Mon, 01 Mar 2027 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 01 Mar 2027 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_401_is_one_request_and_one_clear_log_line(collector: Collector, outbox: Outbox,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    collector.default = Reply(401)
    for kind in ("heartbeat", "event", "heartbeat"):
        commit(outbox, kind)
    state = AgentState(started_at=dt.datetime.now().astimezone())
    policy = DeliveryPolicy(refused_pause=600.0)
    d = Delivery(outbox, Upstream(section(collector.url), policy=FAST, env={}), state, policy=policy)
    with caplog.at_level(logging.INFO, logger="posagent"):
        wait, _ = d.step()
        assert wait == 600.0  # paused, not a retry loop
        assert len(collector.received) == 1
        d.step()  # after the pause: one more request, and no new log line
    assert len(collector.received) == 2
    lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1
    assert "401" in lines[0].getMessage() and "token" in lines[0].getMessage()
    assert outbox.stats().backlog == 3  # nothing lost: the reports wait for a good token
    assert state.last_error is not None and "401" in state.last_error


def test_every_rejection_and_refusal_is_counted_logged_once_and_reported(collector: Collector, outbox: Outbox,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    from posagent.fleet.messages import agent_figures

    collector.script(Reply(400), Reply(413), Reply(410), Reply(401), Reply(401))
    events = [commit(outbox, "event") for _ in range(4)]
    state = AgentState(started_at=dt.datetime.now().astimezone())
    d = Delivery(outbox, Upstream(section(collector.url), policy=FAST, env={}), state,
                 policy=DeliveryPolicy(refused_pause=600.0))
    with caplog.at_level(logging.INFO, logger="posagent"):
        for _ in range(5):
            d.step()
    assert [r.status for r in collector.received] == [400, 413, 410, 401, 401]  # none retried at once
    stats = outbox.stats()
    assert stats.rejected == 3 and stats.refused == 2
    assert stats.backlog == 1 and outbox.pending_seqs() == [events[3]["seq"]]  # the 401 loses nothing
    assert [row[:3] for row in outbox.rejected_rows()] == [(e["seq"], "event", st) for e, st in
                                                           zip(events[:3], (400, 413, 410), strict=True)]
    rejected_lines = [r.getMessage() for r in caplog.records if "rejected report" in r.getMessage()]
    assert len(rejected_lines) == 3  # one line per rejected report, no more
    assert all(f"seq {e['seq']}" in line for e, line in zip(events, rejected_lines, strict=False))
    refused_lines = [r.getMessage() for r in caplog.records if "refused the agent" in r.getMessage()]
    assert len(refused_lines) == 1 and "401" in refused_lines[0]  # said once, not on every try
    # the next report carries the figures (and they validate against the shipped schemas)
    figures = agent_figures(outbox.stats(), state)
    assert figures["rejected"] == 3 and figures["refused"] == 2
    assert figures["last_error"] is not None and "401" in figures["last_error"]


def test_a_rejection_counts_even_when_the_report_left_the_outbox_meanwhile(collector: Collector,
                                                                         outbox: Outbox) -> None:
    """A `heartbeat --send` running beside the daemon may ack the same report first."""
    from posagent.fleet.delivery import deliver

    collector.script(Reply(422))
    commit(outbox, "event")
    pending = outbox.next_pending()
    assert pending is not None
    outbox.ack(pending.seq)  # the other writer delivered it
    up = Upstream(section(collector.url), policy=FAST, env={})
    assert deliver(outbox, up, pending).outcome is Outcome.REJECTED
    up.close()
    assert outbox.stats().rejected == 1
    assert outbox.rejected_rows()[0][:3] == (pending.seq, "event", 422)


def test_retry_waits_are_jittered_not_the_fixed_exponential_sequence(collector: Collector) -> None:
    """tenacity's waits inside one send(): each in [0, min(cap, base * 2**n)], different from
    one another and from the ceilings, and reproducible from the seed."""
    policy = RetryPolicy(attempts=6, base=0.04, cap=0.3, retry_after_cap=5.0, budget=30.0)
    ceilings = [min(policy.cap, policy.base * 2**n) for n in range(policy.attempts - 1)]

    def waits(seed: int) -> list[float]:
        collector.script(*[Reply(503)] * (policy.attempts - 1))
        up = Upstream(section(collector.url), policy=policy, env={}, rng=random.Random(seed))
        assert up.send(b"{}", f"k-jitter-{seed}").outcome is Outcome.DELIVERED
        up.close()
        return list(up.waits)

    first = waits(11)
    assert len(first) == policy.attempts - 1
    assert all(0.0 <= w <= c for w, c in zip(first, ceilings, strict=True)), (first, ceilings)
    assert first != ceilings and len(set(first)) == len(first)
    assert first == waits(11)  # the seed decides: the same draws again
    assert first != waits(12)


def test_the_delivery_loop_backoff_is_jittered_too(outbox: Outbox) -> None:
    down = Collector(port=free_port())  # never started: every send fails at once
    policy = DeliveryPolicy(backoff_base=5.0, backoff_cap=300.0)
    ceilings = [min(policy.backoff_cap, policy.backoff_base * 2**n) for n in range(8)]
    commit(outbox, "heartbeat")

    def waits(seed: int) -> list[float]:
        up = Upstream(section(down.url), policy=RetryPolicy(attempts=1), env={})
        d = Delivery(outbox, up, AgentState(started_at=dt.datetime.now().astimezone()), policy=policy,
                     rng=random.Random(seed))
        out = [d.step()[0] for _ in ceilings]
        up.close()
        return out

    first = waits(3)
    assert all(0.0 <= w <= c for w, c in zip(first, ceilings, strict=True)), (first, ceilings)
    assert first != ceilings and len(set(first)) == len(first)
    assert max(first[5:]) > 2 * policy.backoff_base  # it does grow: the ceiling doubles
    assert first == waits(3) and first != waits(4)
    assert outbox.stats().backlog == 1  # nothing lost meanwhile


def test_other_4xx_is_recorded_and_not_retried(collector: Collector, outbox: Outbox) -> None:
    collector.script(Reply(422))
    first = commit(outbox, "event")
    commit(outbox, "event")
    d = Delivery(outbox, Upstream(section(collector.url), policy=FAST, env={}),
                 AgentState(started_at=dt.datetime.now().astimezone()))
    d.step()
    d.step()
    assert [r.status for r in collector.received] == [422, 200]
    assert outbox.stats().backlog == 0 and outbox.stats().rejected == 1
    assert outbox.rejected_rows()[0][:3] == (first["seq"], "event", 422)


def test_newest_heartbeat_once_then_everything_oldest_first_at_a_limited_rate(collector: Collector,
                                                                              outbox: Outbox) -> None:
    for kind in ("heartbeat", "event", "heartbeat", "selftest", "heartbeat"):
        commit(outbox, kind)
    rate = 10.0
    d = Delivery(outbox, Upstream(section(collector.url), policy=FAST, env={}),
                 AgentState(started_at=dt.datetime.now().astimezone()),
                 policy=DeliveryPolicy(rate=rate))
    d.start()
    try:
        assert collector.wait_for(lambda r: len(r) >= 5, 10.0)
    finally:
        assert d.stop(5.0)
    # the present first (seq 5), then the backlog in seq order, older heartbeats included
    assert [r.json["seq"] for r in collector.received] == [5, 1, 2, 3, 4]
    gaps = [b.at - a.at for a, b in itertools.pairwise(collector.received)]
    assert min(gaps) >= 0.9 / rate, gaps


def test_after_an_outage_the_newest_heartbeat_goes_first_again(collector: Collector, outbox: Outbox) -> None:
    for kind in ("heartbeat", "event", "heartbeat"):
        commit(outbox, kind)
    d = Delivery(outbox, Upstream(section(collector.url), policy=RetryPolicy(attempts=1), env={}),
                 AgentState(started_at=dt.datetime.now().astimezone()))
    d.step()  # seq 3, the newest heartbeat
    d.step()  # then the oldest: seq 1
    collector.script(Reply(503))
    commit(outbox, "heartbeat")  # seq 4, while the upstream fails
    d.step()  # seq 2 fails
    d.step()  # back: the present first (seq 4), then the rest of the backlog
    d.step()
    assert [(r.json["seq"], r.status) for r in collector.received] == [(3, 200), (1, 200), (2, 503), (4, 200),
                                                                       (2, 200)]
    assert outbox.stats().backlog == 0


def test_outage_then_recovery_logs_once_and_delivers_everything(outbox: Outbox,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    down = Collector(port=free_port())  # not started: connection refused
    d = Delivery(outbox, Upstream(section(down.url), policy=FAST, env={}),
                 AgentState(started_at=dt.datetime.now().astimezone()),
                 policy=DeliveryPolicy(rate=50.0, backoff_base=0.05, backoff_cap=0.2))
    sent = [commit(outbox, "heartbeat")["message_id"] for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="posagent"):
        d.start()
        try:
            for _ in range(3):  # several failed rounds while it is down
                assert d.step()[0] >= 0.0
            down.start()
            try:
                assert down.wait_for(lambda r: len(r) >= 3, 15.0)
            finally:
                assert d.stop(5.0)
                down.stop()
        finally:
            d.stop(5.0)
    assert sorted(r.json["message_id"] for r in down.received) == sorted(sent)
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "Connection refused" in warnings[0]
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert outbox.stats().backlog == 0


def test_token_file_must_not_be_readable_by_others(tmp_path: Path, token_file: Path) -> None:
    token_file.chmod(0o644)
    with pytest.raises(UpstreamError) as e:
        read_token(section("https://x.invalid/", token_file=str(token_file)), env={})
    assert "readable by everyone" in str(e.value) and "chmod 600" in str(e.value)
    assert TOKEN not in str(e.value)
    token_file.chmod(0o640)
    with pytest.raises(UpstreamError, match="readable by its group"):
        read_token(section("https://x.invalid/", token_file=str(token_file)), env={})
    token_file.chmod(0o600)
    assert read_token(section("https://x.invalid/", token_file=str(token_file)), env={}) == TOKEN
    with pytest.raises(UpstreamError, match="not found"):
        read_token(section("https://x.invalid/", token_file=str(tmp_path / "missing")), env={})
    assert read_token(section("https://x.invalid/"), env={}) is None


def test_systemd_credential_is_preferred(tmp_path: Path, token_file: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "upstream-token").write_text("from-systemd\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert read_token(section("https://x.invalid/", token_file=str(token_file)), env=env) == "from-systemd"


def test_plain_http_needs_the_explicit_option() -> None:
    with pytest.raises(UpstreamError, match="allow_insecure_http"):
        Upstream(UpstreamSection(url="http://127.0.0.1:9/"), env={})
    with pytest.raises(UpstreamError, match="no upstream URL"):
        Upstream(UpstreamSection(url=""), env={})


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    openssl = need_binary("openssl", "openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return key, cert


def test_https_is_verified_by_default_and_a_private_ca_works(tls_files: tuple[Path, Path]) -> None:
    import ssl

    key, cert = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    c = Collector(tls=ctx).start()
    try:
        strict = Upstream(section(c.url), policy=RetryPolicy(attempts=1), env={})
        r = strict.send(b"{}", "k-tls")
        strict.close()
        assert r.outcome is Outcome.FAILED and "ca_file" in r.detail  # self-signed: not trusted
        assert c.received == []
        trusting = Upstream(section(c.url, ca_file=str(cert)), policy=FAST, env={})
        assert trusting.send(b"{}", "k-tls").outcome is Outcome.DELIVERED
        trusting.close()
        assert len(c.received) == 1
    finally:
        c.stop()
    with pytest.raises(UpstreamError, match="ca_file"):
        Upstream(section("https://127.0.0.1/", ca_file=os.devnull), env={})


def test_stop_ends_the_retry_waits_at_once(collector: Collector) -> None:
    collector.default = Reply(503, {"Retry-After": "30"})
    up = Upstream(section(collector.url), policy=RetryPolicy(attempts=5, retry_after_cap=30.0), env={})
    box: list[Any] = []
    th = threading.Thread(target=lambda: box.append(up.send(b"{}", "k-stop")))
    th.start()
    assert collector.wait_for(lambda r: len(r) >= 1, 5.0)
    up.stop.set()
    th.join(5.0)
    assert not th.is_alive() and box[0].outcome is Outcome.FAILED
    up.close()
