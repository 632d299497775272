"""The delivery loop: takes reports from the outbox and sends them upstream, in its own thread.

Two parts. ``Pacer`` holds every decision (what goes next, when, how much in one request)
and does no I/O: it is given a clock and a random generator, so the fleet simulator
(``tests/bench/fleet.py``) drives the very same code for 200,000 virtual terminals on a
virtual clock. ``Delivery`` is the thread around it: it reads the outbox, posts, books the
outcome and waits on Events (cut short by stop() or a reload).

Why the rules are what they are (a fleet of 200,000 terminals against one collector):

- **One retry level.** A request is one attempt; the loop's backoff (exponential, full
  jitter, capped) is the only retry. Retries inside retries multiplied the load during an
  outage.
- **The collector sets the pace.** ``Retry-After`` (on 429, 5xx, even a 2xx) is a minimum,
  to which jitter is added (uniform over [RA, 1.5 RA]: a fleet told "60" must not come back
  in the same second), capped at ``retry_after_max``; it holds every request to that
  collector, not just the one report (new reports wait in the outbox). A ``RateLimit``
  with nothing remaining holds the same way until its reset; a ``RateLimit-Policy`` or
  ``RateLimit`` quota sets the rate a backlog drains at.
- **The present first, then the backlog in batches.** At start and after any failure the
  next request is the newest heartbeat alone (small, and the dashboard wants the present).
  What waited because the collector failed, refused or held us back (or more than one
  batch found at start) is a *backlog*: it goes oldest first in batches of up to
  ``batch_max`` reports, one POST each, after a random hold that grows with the backlog
  (a terminal with hours of backlog does not send it all the moment the collector is
  back), at most one batch per the terminal's own report interval unless the collector
  asked for another pace: new reports join the batches, so a returning fleet stays under
  twice its normal request rate. One exception: a terminal that comes back from a
  ``Retry-After`` hold of a collector that also set the pace (RateLimit) drains at once, at
  that pace. The collector said when to come back and how fast to go; the hold's jitter has
  already spread the fleet, and a second random hold on top only left the collector idle
  while work waited (in the fleet simulator, 200,000 terminals drain a 10,000 req/s
  collector in 1.5 min instead of 2.0, and the collector is used 85 % instead of 73 % from
  the first 503 to the last terminal drained).
  Without a pace from the collector, the hold stays: the agent's default pace must protect
  a collector that said nothing about it. Otherwise (a live report, a small leftover at start)
  reports go one by one, at most ``rate`` a second.
- A refusal (401, wrong URL) is logged once and pauses delivery until a reload or the pause
  ends; the reports stay in the outbox. A 4xx about a batch is about none of its reports in
  particular: they go again one by one, so each gets its own answer.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from posagent.fleet.messages import AgentState
from posagent.fleet.outbox import OutboxError, Pending, Stats, Store
from posagent.fleet.transport import Transport, same_upstream
from posagent.fleet.upstream import Outcome, SendResult, ServerPace, full_jitter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    rate: float = 5.0  # reports per second at most, one by one; the fastest pace a collector may ask. 0: unpaced
    backoff_base: float = 5.0  # after a failed request
    backoff_cap: float = 300.0
    refused_pause: float = 600.0  # after a 401/403/404: wait this long, or for a reload
    idle_wait: float = 60.0  # with nothing to send, look again after this long anyway
    interval: float = 60.0  # this terminal's report interval when the backlog cannot tell (seconds)
    drain_hold_max: float = 3600.0  # the longest random hold before a backlog starts to drain


# -- the decisions, without I/O --------------------------------------------------------------
class SendKind(enum.Enum):
    NEWEST = "newest"  # the newest heartbeat alone (or the oldest report when there is none)
    SINGLE = "single"  # the oldest report alone
    BATCH = "batch"  # up to ``limit`` reports, oldest first; one report goes as itself


# The values going in and out of the pacer are named tuples: cheap to make, and the fleet
# simulator makes tens of millions of them.
class Send(NamedTuple):
    kind: SendKind
    limit: int = 1


class Wait(NamedTuple):
    seconds: float
    wake_on_new: bool = False  # a newly committed report ends the wait (only when idle)


class Backlog(NamedTuple):
    """What waits in the outbox: how many reports, and the seconds from the oldest to the
    newest (their pace tells this terminal's normal report interval)."""

    size: int
    span: float = 0.0

    @classmethod
    def of(cls, stats: Stats) -> Backlog:
        span = 0.0
        if stats.oldest_created is not None and stats.newest_created is not None:
            span = max(0.0, stats.newest_created - stats.oldest_created)
        return cls(stats.backlog, span)


class Answer(NamedTuple):
    """What a request came back with, as far as pacing is concerned."""

    outcome: Outcome
    retry_after: float | None = None
    pace: ServerPace | None = None

    @classmethod
    def of(cls, result: SendResult) -> Answer:
        return cls(result.outcome, result.retry_after, result.pace)


def retry_after_hold(retry_after: float, rng: random.Random, cap: float) -> float:
    """How long a ``Retry-After`` (or a RateLimit reset) of ``retry_after`` seconds holds
    the collector back: uniform over [RA, 1.5 RA], so a fleet answered alike spreads out
    instead of coming back in one second. At most ``cap``; a value beyond two thirds of the
    cap is spread over [2/3 cap, cap] (the collector asked for more than the agent grants,
    and all at the cap would be a herd again)."""
    lo, hi = retry_after, 1.5 * retry_after
    if hi > cap:
        hi = cap
        lo = min(lo, cap / 1.5)
    return rng.uniform(lo, hi)


class Pacer:
    """Every delivery decision of one terminal towards one collector, on an injected clock
    and random generator. ``next(backlog)`` says what to do now (a ``Send`` or a ``Wait``);
    after a ``Send`` the caller posts, then tells ``sent(...)`` how it went and gets the
    seconds to wait before asking ``next`` again."""

    # slots: the fleet simulator keeps 200,000 of them
    __slots__ = ("_drain_from", "_fresh", "_tokens", "_tokens_at", "batch_max", "clock", "draining", "failures",
                 "hold_until", "policy", "probe", "retry_after_max", "rng", "scheduled", "server_rate", "split")

    def __init__(self, policy: DeliveryPolicy, *, rng: random.Random, clock: Callable[[], float],
                 batch_max: int = 50, retry_after_max: float = 3600.0) -> None:
        self.policy = policy
        self.rng = rng
        self.clock = clock
        self.batch_max = max(1, int(batch_max))
        self.retry_after_max = float(retry_after_max)
        self.failures = 0  # failed requests in a row (the backoff's exponent)
        self.hold_until = -math.inf  # no request to this collector before (Retry-After, RateLimit)
        self.probe = True  # the next request is the newest heartbeat alone
        self.draining = False  # what waits is a backlog: batches, held and paced
        self.server_rate: float | None = None  # requests per second the collector asked for
        self.split = 0  # reports to send one by one (a batch was rejected as a whole)
        self.scheduled = False  # this drain waited out a hold the collector asked for
        self._fresh = True
        self._drain_from: float | None = None
        self._tokens = 1.0
        self._tokens_at = 0.0

    @property
    def paced(self) -> bool:
        return self.policy.rate > 0

    @property
    def steady(self) -> bool:
        """A report committed now would go at once, alone (nothing held, probed, drained)."""
        return not (self.probe or self.draining or self.split) and self.clock() >= self.hold_until

    def after_reload(self) -> None:
        """A reload kept this collector: start with the present again, keep what it asked
        (its hold and its pace: a fleet-wide reload must not undo a Retry-After)."""
        self.probe, self.failures, self.split = True, 0, 0

    # -- what now ------------------------------------------------------------------------
    def next(self, backlog: Backlog) -> Send | Wait:
        now = self.clock()
        if now < self.hold_until:
            return Wait(self.hold_until - now)
        if self._fresh:  # more than a batch left from the last run is a backlog like any other
            self._fresh = False
            self.draining = self.draining or backlog.size > self.batch_max
        if backlog.size <= 0:
            if not self.probe:
                self._end_drain()
            return Wait(self.policy.idle_wait, wake_on_new=True)
        if self.probe:
            return Send(SendKind.NEWEST)
        if self.split > 0 or not self.draining:
            return Send(SendKind.SINGLE)
        if not self.paced:
            return Send(SendKind.BATCH, self.batch_max)
        rate = self.drain_rate(backlog)
        if self._drain_from is None:
            # after the collector's own hold, with its pace: no second hold (see the module doc)
            hold = 0.0 if self.scheduled and self.server_rate else self.rng.uniform(0.0, self.drain_hold(backlog))
            self._drain_from = now + hold
            self._tokens, self._tokens_at = 1.0, self._drain_from
        if now < self._drain_from:
            return Wait(self._drain_from - now)
        self._tokens = min(1.0, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1.0 - 1e-9:  # (float dust from the refill must not make a zero wait)
            return Wait((1.0 - self._tokens) / rate)
        return Send(SendKind.BATCH, self.batch_max)

    def drain_rate(self, backlog: Backlog) -> float:
        """Batches per second: what the collector asked for, else one per this terminal's
        own report interval (read from the backlog's pace), never above ``policy.rate``."""
        if self.server_rate is not None and self.server_rate > 0:
            rate = self.server_rate
        else:
            interval = backlog.span / (backlog.size - 1) if backlog.size > 1 and backlog.span > 0 else 0.0
            if not 1.0 <= interval <= 3600.0:
                interval = self.policy.interval
            rate = 1.0 / interval
        return min(rate, self.policy.rate)

    def drain_hold(self, backlog: Backlog) -> float:
        """The longest random hold before the first batch: the time the batches after the
        first take at the drain rate (none for a backlog of one batch), so a fleet back from
        a long outage spreads its backlogs over as long as they take to send; and for more
        than one batch at least the backlog's age up to ``backoff_cap``. A terminal cut off
        that long was most likely cut off with its fleet, and the fleet's first requests
        back (its probes) already come at the pace the outage set: the backoff's, or the
        collector's ``Retry-After`` cycle, 1.6x the normal rate for a ``Retry-After: 30``
        hour. The backlogs wait over at least the backoff's cap, so the two together stay
        under twice the normal rate (fleet simulator, 200,000 terminals: 1.77x after an hour of
        503s, was 2.36x)."""
        batches = math.ceil(backlog.size / self.batch_max)
        spread = (batches - 1) / self.drain_rate(backlog)
        if batches > 1:
            spread = max(spread, min(backlog.span, self.policy.backoff_cap))
        return min(self.policy.drain_hold_max, spread)

    # -- how it went ---------------------------------------------------------------------
    def sent(self, send: Send, count: int, answer: Answer, left: Backlog) -> float:
        """Book the answer to a request that carried ``count`` reports (``left`` wait still);
        the seconds to wait before the next ``next()``."""
        now = self.clock()
        if answer.pace is not None:
            self._take_pace(answer.pace, now, answer.retry_after)
        if answer.outcome in (Outcome.DELIVERED, Outcome.REJECTED):
            self.failures, self.probe = 0, False
            if send.kind is SendKind.BATCH:
                self._tokens -= 1.0
                if answer.outcome is Outcome.REJECTED and count > 1:
                    self.split = count  # nobody knows which one: each goes again alone
            elif self.split > 0:
                self.split -= 1
            if answer.retry_after:  # accepted, but "not so fast": the collector is held
                self.draining = True
                return self._hold(now, answer.retry_after)
            if left.size <= 0:
                self._end_drain()
                return 0.0
            if not self.paced or (self.draining and not self.split):
                return 0.0  # next() holds and paces the batches
            return 1.0 / self.policy.rate  # one by one: at most `rate` a second
        self.probe, self.draining, self.split, self._drain_from = True, True, 0, None
        if answer.outcome is Outcome.REFUSED:
            return self.policy.refused_pause
        self.failures += 1
        if answer.retry_after:
            return self._hold(now, answer.retry_after)
        return full_jitter(self.rng, self.policy.backoff_base, self.policy.backoff_cap, self.failures)

    def _take_pace(self, pace: ServerPace, now: float, retry_after: float | None) -> None:
        if pace.rate is not None:
            self.server_rate = pace.rate
        if pace.remaining == 0 and pace.reset and not retry_after:  # Retry-After takes precedence
            self.draining = True
            self._hold(now, pace.reset)

    def _hold(self, now: float, seconds: float) -> float:
        self.scheduled = True
        self.hold_until = max(self.hold_until, now + retry_after_hold(seconds, self.rng, self.retry_after_max))
        return self.hold_until - now

    def _end_drain(self) -> None:
        self.draining, self._drain_from, self.split, self.scheduled = False, None, 0, False


# -- the outbox side of one request -----------------------------------------------------------
def deliver(outbox: Store, upstream: Transport, pending: Pending) -> SendResult:
    """Send one report with the upstream's own retries (``posagent heartbeat --send``: one
    technician, one terminal) and update the outbox by the outcome."""
    result = upstream.send(pending.body, pending.message_id)
    book(outbox, [pending], result)
    return result


def book(outbox: Store, pendings: list[Pending], result: SendResult) -> None:
    """Update the outbox by the outcome of one request that carried ``pendings``.

    Delivered: removed (a 2xx covers a whole batch). A rejected report (a 4xx about it) is
    removed, counted (``agent.rejected``) and logged here, once; a rejected batch is kept
    (its reports go again one by one). A refusal of the agent as a whole (401/403/404...)
    keeps the reports and is counted (``agent.refused``); the caller says so to the operator.
    """
    seqs = [p.seq for p in pendings]
    if result.outcome is Outcome.DELIVERED:
        if len(seqs) == 1:
            outbox.ack(seqs[0])
        else:
            outbox.ack_many(seqs)
    elif result.outcome is Outcome.REJECTED and len(pendings) == 1:
        p = pendings[0]
        outbox.reject(p.seq, result.http_status, result.detail, kind=p.kind, message_id=p.message_id)
        log.warning("upstream rejected report seq %d (%s): %s; recorded, not retried", p.seq, p.kind, result.detail)
    elif result.outcome is Outcome.REJECTED:
        outbox.note_failures(seqs, result.detail)
        log.warning("upstream rejected a batch of %d reports (seq %d-%d): %s; sending them one by one",
                    len(seqs), seqs[0], seqs[-1], result.detail)
    else:
        outbox.note_failures(seqs, result.detail, refused=result.outcome is Outcome.REFUSED)


# -- the thread ----------------------------------------------------------------------------------
class Delivery:
    def __init__(self, outbox: Store, upstream: Transport | None, state: AgentState, *,
                 policy: DeliveryPolicy | None = None, rng: random.Random | None = None,
                 on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.outbox = outbox
        self.state = state
        self.policy = policy or DeliveryPolicy()
        self.rng = rng or random.Random()
        self.clock = clock
        self.on_change = on_change
        self._upstream = upstream
        self._pacer = self._new_pacer(upstream)
        self._next_upstream: Transport | bool | None = False  # False: no change pending
        self._stop = threading.Event()
        self._new = threading.Event()  # a report was committed
        self._kick = threading.Event()  # stop or reload: end any wait at once
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._trouble: str | None = None  # the problem last logged, so it is logged once
        self._hold = 0.0
        self.sent = 0

    # -- control from the main loop -------------------------------------------------------
    def start(self, hold: float = 0.0) -> None:
        """Start the loop; it sends nothing for the first ``hold`` seconds (stop() ends the hold)."""
        self._hold = max(0.0, hold)
        self._thread = threading.Thread(target=self._loop, name="delivery", daemon=True)
        self._thread.start()

    def notify_new(self) -> None:
        self._new.set()

    def replace_upstream(self, upstream: Transport | None) -> None:
        """Use a new upstream (after a reload) from the next send on."""
        with self._lock:
            self._next_upstream = upstream
            current = self._upstream
        if current is not None:
            current.stop.set()  # end a send in flight now
        self._kick.set()
        self._new.set()

    def stop(self, timeout: float) -> bool:
        """Stop the loop; True if it ended within ``timeout`` (a send in flight is abandoned)."""
        self._stop.set()
        self._kick.set()
        self._new.set()
        if self._upstream is not None:
            self._upstream.stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        ended = not self._thread.is_alive()
        if ended and self._upstream is not None:
            self._upstream.close(final=True)
        return ended

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        if self._hold > 0:
            log.debug("delivery held back for %.1f s", self._hold)
            self._stop.wait(self._hold)
        while not self._stop.is_set():
            self._swap_upstream()
            try:
                wait, on_new = self.step()
            except (OutboxError, OSError) as e:
                self._report(f"outbox error: {e}", logging.ERROR)
                wait, on_new = self.policy.backoff_base, True  # a report committed meanwhile ends the wait
            except Exception as e:  # never let the delivery thread die silently
                log.error("delivery loop: %s: %s", type(e).__name__, e, exc_info=True)
                wait, on_new = self.policy.backoff_base, False
            if wait > 0:
                (self._new if on_new else self._kick).wait(wait)
            self._new.clear()
            if self._kick.is_set() and not self._stop.is_set():
                self._kick.clear()
                if self._upstream is not None:
                    self._upstream.stop.clear()

    def _new_pacer(self, upstream: Transport | None) -> Pacer:
        section = upstream.section if upstream is not None else None
        return Pacer(self.policy, rng=self.rng, clock=self.clock,
                     batch_max=section.batch_max if section else 50,
                     retry_after_max=float(section.retry_after_max) if section else 3600.0)

    def _swap_upstream(self) -> None:
        with self._lock:
            nxt, self._next_upstream = self._next_upstream, False
        if nxt is False:
            return
        old = self._upstream
        if old is not None:
            old.close()
        self._upstream = None if isinstance(nxt, bool) else nxt
        if self._upstream is not None and same_upstream(old, self._upstream):
            # the same collector: what it asked for (a Retry-After hold, a pace) still holds
            self._pacer.batch_max = self._upstream.section.batch_max
            self._pacer.retry_after_max = float(self._upstream.section.retry_after_max)
            self._pacer.after_reload()
        else:
            self._pacer = self._new_pacer(self._upstream)
        self._trouble = None

    def step(self) -> tuple[float, bool]:
        """At most one request. Returns (seconds to wait, whether a new report ends the wait)."""
        upstream = self._upstream
        if upstream is None:
            return self.policy.idle_wait, True
        decision = self._pacer.next(Backlog.of(self.outbox.stats()))
        if isinstance(decision, Wait):
            return decision.seconds, decision.wake_on_new
        pendings = self._take(decision)
        if not pendings:  # another writer (heartbeat --send) took them meanwhile
            return 0.0, False
        result = upstream.post([p.body for p in pendings], [p.message_id for p in pendings])
        book(self.outbox, pendings, result)
        stats = self.outbox.stats()
        wait = self._pacer.sent(decision, len(pendings), Answer.of(result), Backlog.of(stats))
        if result.outcome in (Outcome.DELIVERED, Outcome.REJECTED):
            self.sent += len(pendings) if result.outcome is Outcome.DELIVERED else 0
            if self._trouble is not None:
                log.warning("upstream reachable again: delivered report seq %d; %d waiting",
                            pendings[0].seq, stats.backlog)
            self._trouble = None
            self.state.last_error = None
            self._changed()
            return wait, False
        if self._stop.is_set():
            return 0.0, False
        if result.outcome is Outcome.REFUSED:
            self._report(f"upstream refused the agent: {result.detail}; reports are kept in the outbox, "
                         f"next try in {self.policy.refused_pause:g} s or after a reload", logging.ERROR)
            return wait, False
        self._report(f"upstream unreachable: {result.detail}; {stats.backlog} report(s) kept in the outbox, "
                     "retrying with backoff", logging.WARNING)
        return wait, False

    def _take(self, decision: Send) -> list[Pending]:
        if decision.kind is SendKind.BATCH:
            return self.outbox.next_batch(decision.limit)
        pending = self.outbox.next_pending(after_newest=decision.kind is SendKind.SINGLE)
        return [pending] if pending is not None else []

    def _report(self, text: str, level: int) -> None:
        """Log a delivery problem once (until it changes or delivery works again)."""
        key = text.split(";")[0]
        if key != self._trouble:
            log.log(level, "%s", text)
            self._trouble = key
        self.state.last_error = key
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception as e:
                log.debug("on_change: %s", e)
