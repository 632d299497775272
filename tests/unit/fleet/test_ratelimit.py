"""The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) as the agent
reads them: the tightest request quota wins, other units are ignored, a malformed field is
ignored as a whole; Retry-After is read on 2xx, 429 and 5xx answers."""

from __future__ import annotations

import pytest

from posagent.fleet.upstream import Outcome, ServerPace, batch_body, batch_key, classify, parse_ratelimit


@pytest.mark.parametrize("policy,limit,pace", [
    ('"default";q=100;w=10', None, ServerPace(rate=10.0)),
    ('"permin";q=50;w=60,"perhr";q=1000;w=3600', None, ServerPace(rate=1000 / 3600)),
    ('"burst";q=100;w=60, "daily";q=1000;w=86400', None, ServerPace(rate=1000 / 86400)),
    ('default;q=6;w=60', None, ServerPace(rate=0.1)),  # a token, as draft 08 wrote it
    (None, '"default";r=50;t=30', ServerPace(rate=50 / 30, remaining=50, reset=30.0)),
    (None, '"default";r=0;t=30', ServerPace(remaining=0, reset=30.0)),
    (None, '"default";r=999;pk=:dHJpYWwxMjEzMjM=:', ServerPace(remaining=999)),
    ('"default";q=100;w=10', '"default";r=1;t=60', ServerPace(rate=1 / 60, remaining=1, reset=60.0)),
    ('"a";q=100;w=10', '"a";r=5;t=1,"b";r=0;t=20', ServerPace(rate=5.0, remaining=0, reset=20.0)),
])
def test_ratelimit_fields(policy: str | None, limit: str | None, pace: ServerPace) -> None:
    got = parse_ratelimit(policy, limit)
    assert got is not None
    assert got.remaining == pace.remaining and got.reset == pace.reset
    assert (got.rate is None) == (pace.rate is None)
    if pace.rate is not None:
        assert got.rate == pytest.approx(pace.rate)


@pytest.mark.parametrize("policy,limit", [
    (None, None), ("", ""),
    ('"peruser";q=65535;qu="content-bytes";w=10', None),  # not in requests: not a pace
    ('"x";q=-1;w=10', None), ('"x";q=1.5;w=10', None), ('"x";q=10;w=0', None), ('"x";q=10', None),
    ('"x";q=99999999999999;w=1', None), ("garbage ,,", None), ('"x";q=1;w=1 trailing', None),
    (None, '"x";t=30'), (None, '"x";r=٣;t=30'), ('"x";q=1;w=1' * 200, None),
])
def test_anything_unusable_is_ignored(policy: str | None, limit: str | None) -> None:
    assert parse_ratelimit(policy, limit) is None


def test_retry_after_is_read_on_2xx_429_and_5xx_only() -> None:
    assert classify(200, "OK", "30").retry_after == 30.0
    assert classify(200, "OK").retry_after is None
    assert classify(202, "Accepted", "5").outcome is Outcome.DELIVERED
    for status in (429, 500, 502, 503, 504):
        r = classify(status, "x", "7")
        assert r.outcome is Outcome.FAILED and r.retry_after == 7.0
    assert classify(408, "Request Timeout", "7").retry_after is None
    assert classify(400, "Bad Request", "7").retry_after is None


def test_a_batch_is_the_stored_bodies_as_one_array_with_a_stable_key() -> None:
    assert batch_body([b'{"a":1}', b'{"b":2}']) == b'[{"a":1},{"b":2}]'
    ids = ["a64a991c-efd7-4de3-b3d5-7dde13650c1e", "9c5dea42-9dc0-461b-9af4-0bbc8de303a6"]
    assert batch_key(ids) == batch_key(list(ids)) != batch_key(ids[::-1])
    assert batch_key(ids).startswith("batch-2-")
