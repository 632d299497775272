"""The delivery decisions (``Pacer``) on a virtual clock: one attempt per request and one
retry level, Retry-After as a jittered minimum that holds the whole collector, RateLimit
followed, a backlog held and drained in batches at the terminal's own pace, a rejected
batch split into single reports."""

from __future__ import annotations

import itertools
import random

import pytest

from posagent.fleet.delivery import (
    Answer,
    Backlog,
    DeliveryPolicy,
    Pacer,
    Send,
    SendKind,
    Wait,
    retry_after_hold,
)
from posagent.fleet.upstream import Outcome, ServerPace

OK = Answer(Outcome.DELIVERED)
DOWN = Answer(Outcome.FAILED)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def pacer(clock: Clock, seed: int = 1, **policy: float) -> Pacer:
    return Pacer(DeliveryPolicy(**policy), rng=random.Random(seed), clock=clock, batch_max=50,
                 retry_after_max=3600.0)


def run_until_send(p: Pacer, clock: Clock, backlog: Backlog, limit: int = 100) -> tuple[Send, float]:
    """Advance the clock through the Waits until the pacer sends; (the send, seconds waited)."""
    start = clock.t
    for _ in range(limit):
        d = p.next(backlog)
        if isinstance(d, Send):
            return d, clock.t - start
        clock.t += d.seconds
    raise AssertionError("the pacer never sent")


def test_the_present_goes_first_then_reports_one_by_one() -> None:
    clock = Clock()
    p = pacer(clock)
    assert p.next(Backlog(3, 120)) == Send(SendKind.NEWEST)
    assert p.sent(Send(SendKind.NEWEST), 1, OK, Backlog(2, 60)) == pytest.approx(1 / 5.0)  # live: `rate` a second
    assert p.next(Backlog(2, 60)) == Send(SendKind.SINGLE)
    assert p.sent(Send(SendKind.SINGLE), 1, OK, Backlog(0)) == 0.0
    assert p.next(Backlog(0)) == Wait(60.0, wake_on_new=True)
    assert p.steady


def test_a_failure_is_one_attempt_then_the_loops_jittered_backoff() -> None:
    clock = Clock()
    p = pacer(clock, backoff_base=5.0, backoff_cap=300.0)
    waits = []
    for _ in range(10):
        assert p.next(Backlog(1)) == Send(SendKind.NEWEST)  # one request per step, never more
        waits.append(p.sent(Send(SendKind.NEWEST), 1, DOWN, Backlog(1)))
    ceilings = [min(300.0, 5.0 * 2**n) for n in range(10)]
    assert all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len(set(waits)) == len(waits) and max(waits[6:]) > 20.0


@pytest.mark.parametrize("status_outcome", [Outcome.FAILED, Outcome.DELIVERED])
def test_retry_after_is_a_jittered_minimum_that_holds_the_whole_collector(status_outcome: Outcome) -> None:
    clock = Clock()
    p = pacer(clock)
    p.next(Backlog(5, 240))
    wait = p.sent(Send(SendKind.NEWEST), 1, Answer(status_outcome, retry_after=60.0), Backlog(5, 240))
    assert 60.0 <= wait <= 90.0
    # no request goes to that collector before the hold has passed, whatever waits
    for backlog in (Backlog(1), Backlog(6, 300), Backlog(500, 30000)):
        d = p.next(backlog)
        assert isinstance(d, Wait) and d.seconds == pytest.approx(wait) and not d.wake_on_new
    clock.t += wait
    assert isinstance(p.next(Backlog(6, 300)), Send)


def test_retry_after_jitter_spreads_a_fleet_over_half_the_value() -> None:
    rng = random.Random(7)
    holds = [retry_after_hold(3.0, rng, 3600.0) for _ in range(2000)]
    assert min(holds) >= 3.0 and max(holds) <= 4.5
    assert max(holds) - min(holds) > 1.45
    buckets = [0] * 15
    for h in holds:
        buckets[min(14, int((h - 3.0) / 0.1))] += 1
    assert max(buckets) < 2000 / 15 * 1.5  # uniform: no 100 ms slice holds the herd


def test_retry_after_is_capped_at_retry_after_max_and_still_spread() -> None:
    rng = random.Random(3)
    assert all(2400.0 <= retry_after_hold(86400.0, rng, 3600.0) <= 3600.0 for _ in range(200))
    assert all(100.0 <= retry_after_hold(100.0, rng, 3600.0) <= 150.0 for _ in range(200))
    clock = Clock()
    p = Pacer(DeliveryPolicy(), rng=random.Random(1), clock=clock, retry_after_max=30.0)
    p.next(Backlog(1))
    assert 20.0 <= p.sent(Send(SendKind.NEWEST), 1, Answer(Outcome.FAILED, retry_after=600.0), Backlog(1)) <= 30.0


def test_ratelimit_with_nothing_remaining_holds_until_its_reset_and_retry_after_wins() -> None:
    clock = Clock()
    p = pacer(clock)
    p.next(Backlog(2, 60))
    empty = ServerPace(rate=None, remaining=0, reset=40.0)
    wait = p.sent(Send(SendKind.NEWEST), 1, Answer(Outcome.DELIVERED, pace=empty), Backlog(1))
    d = p.next(Backlog(1))
    assert isinstance(d, Wait) and 40.0 <= d.seconds <= 60.0 and wait == 0.0
    clock.t += 100
    p.next(Backlog(1))
    wait = p.sent(Send(SendKind.SINGLE), 1, Answer(Outcome.FAILED, retry_after=5.0, pace=empty), Backlog(1))
    assert 5.0 <= wait <= 7.5  # both said: Retry-After takes precedence


def test_a_backlog_drains_in_batches_after_a_hold_that_grows_with_it() -> None:
    def first_batch_delay(count: int, seed: int) -> float:
        clock = Clock()
        p = pacer(clock, seed=seed)
        p.next(Backlog(count, 60.0 * (count - 1)))
        p.sent(Send(SendKind.NEWEST), 1, DOWN, Backlog(count, 60.0 * (count - 1)))  # an outage
        clock.t += 1000
        assert p.next(Backlog(count)) == Send(SendKind.NEWEST)  # the present first, alone
        backlog = Backlog(count - 1, 60.0 * (count - 2))
        assert p.sent(Send(SendKind.NEWEST), 1, OK, backlog) == 0.0
        send, waited = run_until_send(p, clock, backlog)
        assert send == Send(SendKind.BATCH, 50)
        return waited

    assert first_batch_delay(30, 1) == 0.0  # one batch: no hold
    hour = [first_batch_delay(61, s) for s in range(40)]  # 60 reports: 2 batches, 60 s apart
    day = [first_batch_delay(1441, s) for s in range(40)]  # 1440 reports: 29 batches
    # an hour's backlog waits over the backoff's cap (300 s: its fleet came back with it), a
    # day's over the 28 minutes its batches after the first take
    assert max(hour) <= 300.0 and max(day) <= 28 * 60.0
    assert sum(1 for h in hour if h > 60.0) >= 25
    assert sum(day) / len(day) > 3 * sum(hour) / len(hour)


def test_back_from_the_collectors_hold_with_its_pace_the_drain_starts_at_once() -> None:
    """A 503 + Retry-After that came with the collector's pace: when the hold is over, the
    present goes first, then the batches at once at that pace (no second random hold on top
    of the collector's own); with no pace from the collector, the backlog's hold stays."""

    def after_hold(pace: ServerPace | None, seed: int) -> tuple[float, list[float]]:
        clock = Clock()
        p = pacer(clock, seed=seed)
        backlog = Backlog(200, 199 * 60.0)
        p.next(backlog)
        busy = Answer(Outcome.FAILED, retry_after=30.0, pace=pace)
        wait = p.sent(Send(SendKind.NEWEST), 1, busy, backlog)
        assert 30.0 <= wait <= 45.0
        clock.t += wait
        assert p.next(backlog) == Send(SendKind.NEWEST)
        p.sent(Send(SendKind.NEWEST), 1, Answer(Outcome.DELIVERED, pace=pace), backlog)
        first, waited = run_until_send(p, clock, backlog)
        assert first == Send(SendKind.BATCH, 50)
        times = [clock.t]
        p.sent(first, 50, OK, backlog)
        for _ in range(2):
            run_until_send(p, clock, backlog)
            times.append(clock.t)
            p.sent(Send(SendKind.BATCH, 50), 50, OK, backlog)
        return waited, [round(b - a, 6) for a, b in itertools.pairwise(times)]

    paced = [after_hold(ServerPace(rate=0.5), seed) for seed in range(20)]
    assert all(waited == 0.0 and gaps == [2.0, 2.0] for waited, gaps in paced)
    unpaced = [after_hold(None, seed) for seed in range(20)]
    assert all(gaps == [60.0, 60.0] for _, gaps in unpaced)
    holds = [waited for waited, _ in unpaced]
    assert max(holds) <= 300.0 and sum(1 for h in holds if h > 10.0) >= 15  # held up to the backoff cap


def test_the_default_drain_pace_is_one_batch_per_own_report_interval() -> None:
    clock = Clock()
    p = pacer(clock)
    backlog = Backlog(200, 199 * 30.0)  # a report every 30 s
    p.next(backlog)
    p.sent(Send(SendKind.NEWEST), 1, DOWN, backlog)
    clock.t += 500
    p.next(backlog)
    p.sent(Send(SendKind.NEWEST), 1, OK, backlog)
    times = []
    for _ in range(4):
        send, _ = run_until_send(p, clock, backlog)
        assert send.kind is SendKind.BATCH
        times.append(clock.t)
        assert p.sent(send, 50, OK, backlog) == 0.0
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [30.0, 30.0, 30.0]


def test_the_collectors_pace_is_followed() -> None:
    clock = Clock()
    p = pacer(clock)
    backlog = Backlog(500, 499 * 60.0)
    p.next(backlog)
    p.sent(Send(SendKind.NEWEST), 1, DOWN, backlog)
    clock.t += 500
    p.next(backlog)
    p.sent(Send(SendKind.NEWEST), 1, Answer(Outcome.DELIVERED, pace=ServerPace(rate=0.5)), backlog)
    times = []
    for _ in range(4):
        send, _ = run_until_send(p, clock, backlog)
        times.append(clock.t)
        p.sent(send, 50, OK, backlog)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [2.0, 2.0, 2.0]
    assert p.drain_rate(backlog) == 0.5
    p.server_rate = 1000.0
    assert p.drain_rate(backlog) == 5.0  # never above policy.rate, whatever it says


def test_a_rejected_batch_goes_again_report_by_report() -> None:
    clock = Clock()
    p = pacer(clock)
    backlog = Backlog(10, 540)
    p.next(backlog)
    p.sent(Send(SendKind.NEWEST), 1, DOWN, backlog)
    p.next(backlog)
    p.sent(Send(SendKind.NEWEST), 1, OK, backlog)
    send, _ = run_until_send(p, clock, backlog)
    assert send == Send(SendKind.BATCH, 50)
    p.sent(send, 9, Answer(Outcome.REJECTED), Backlog(9, 480))
    for n in range(9):
        assert p.next(Backlog(9 - n)) == Send(SendKind.SINGLE)
        p.sent(Send(SendKind.SINGLE), 1, Answer(Outcome.REJECTED if n == 4 else Outcome.DELIVERED), Backlog(8 - n))
    assert p.split == 0 and p.next(Backlog(0)) == Wait(60.0, wake_on_new=True)


def test_more_than_a_batch_left_at_start_is_a_backlog() -> None:
    clock = Clock()
    p = pacer(clock)
    backlog = Backlog(120, 119 * 60.0)
    assert p.next(backlog) == Send(SendKind.NEWEST)
    p.sent(Send(SendKind.NEWEST), 1, OK, Backlog(119, 118 * 60.0))
    send, _ = run_until_send(p, clock, Backlog(119, 118 * 60.0))
    assert send.kind is SendKind.BATCH
    small = pacer(Clock())
    small.next(Backlog(5, 240))
    small.sent(Send(SendKind.NEWEST), 1, OK, Backlog(4, 180))
    assert small.next(Backlog(4, 180)) == Send(SendKind.SINGLE)


def test_unpaced_sends_batches_back_to_back() -> None:
    clock = Clock()
    p = pacer(clock, rate=0.0)
    p.next(Backlog(200, 199 * 60.0))
    assert p.sent(Send(SendKind.NEWEST), 1, OK, Backlog(199)) == 0.0
    assert p.next(Backlog(199)) == Send(SendKind.BATCH, 50)
    assert p.sent(Send(SendKind.BATCH, 50), 50, OK, Backlog(149)) == 0.0
    assert p.next(Backlog(149)) == Send(SendKind.BATCH, 50)


def test_refusal_pauses_and_a_reload_keeps_the_collectors_hold() -> None:
    clock = Clock()
    p = pacer(clock)
    p.next(Backlog(1))
    assert p.sent(Send(SendKind.NEWEST), 1, Answer(Outcome.REFUSED), Backlog(1)) == 600.0
    p.next(Backlog(1))
    hold = p.sent(Send(SendKind.NEWEST), 1, Answer(Outcome.FAILED, retry_after=120.0), Backlog(1))
    p.after_reload()
    d = p.next(Backlog(1))
    assert isinstance(d, Wait) and d.seconds == pytest.approx(hold)
    clock.t += hold
    assert p.next(Backlog(1)) == Send(SendKind.NEWEST)
