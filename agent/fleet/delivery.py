"""The delivery loop: takes reports from the outbox and sends them upstream, in its own thread.

The newest heartbeat goes first, once, then everything else oldest first (in seq order,
heartbeats included) at a limited rate, so a fleet coming back from an outage does not
hammer the endpoint; after a failure the newest heartbeat goes first again. After a boot
the loop can be held back (``start(hold=...)``: the daemon's startup_jitter). After a failed send the
loop backs off (exponential, full jitter, capped; at least what Retry-After asked). A
refusal (401, wrong URL) is logged once and pauses delivery until a reload or the pause
ends; the reports stay in the outbox. Every wait is an Event wait, cut short by stop().
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from posagent.fleet.messages import AgentState
from posagent.fleet.outbox import Outbox, OutboxError, Pending
from posagent.fleet.upstream import Outcome, SendResult, Upstream, full_jitter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    rate: float = 5.0  # backlog messages per second at most
    backoff_base: float = 5.0  # after a failed send() (which retried already)
    backoff_cap: float = 300.0
    refused_pause: float = 600.0  # after a 401/403/404: wait this long, or for a reload
    idle_wait: float = 60.0  # with nothing to send, look again after this long anyway


def deliver(outbox: Outbox, upstream: Upstream, pending: Pending) -> SendResult:
    """Send one report and update the outbox by the outcome.

    A rejected report (a 4xx about it) is removed, counted (``agent.rejected``) and logged
    here, once. A refusal of the agent as a whole (401/403/404...) keeps the report and is
    counted (``agent.refused``); the caller says so to the operator.
    """
    result = upstream.send(pending.body, pending.message_id)
    if result.outcome is Outcome.DELIVERED:
        outbox.ack(pending.seq)
    elif result.outcome is Outcome.REJECTED:
        outbox.reject(pending.seq, result.http_status, result.detail, kind=pending.kind,
                      message_id=pending.message_id)
        log.warning("upstream rejected report seq %d (%s): %s; recorded, not retried",
                    pending.seq, pending.kind, result.detail)
    else:
        outbox.note_failure(pending.seq, result.detail, refused=result.outcome is Outcome.REFUSED)
    return result


class Delivery:
    def __init__(self, outbox: Outbox, upstream: Upstream | None, state: AgentState, *,
                 policy: DeliveryPolicy | None = None, rng: random.Random | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.outbox = outbox
        self.state = state
        self.policy = policy or DeliveryPolicy()
        self.rng = rng or random.Random()
        self.on_change = on_change
        self._upstream = upstream
        self._next_upstream: Upstream | bool | None = False  # False: no change pending
        self._stop = threading.Event()
        self._new = threading.Event()  # a report was committed
        self._kick = threading.Event()  # stop or reload: end any wait at once
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._trouble: str | None = None  # the problem last logged, so it is logged once
        self._newest_first = True  # the next send is the newest heartbeat (at start, after a failure)
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

    def replace_upstream(self, upstream: Upstream | None) -> None:
        """Use a new upstream (after a reload) from the next send on."""
        with self._lock:
            self._next_upstream = upstream
            current = self._upstream
        if current is not None:
            current.stop.set()  # end its retries now
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
            self._upstream.close()
        return ended

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
                wait, on_new = self.policy.backoff_cap, False
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

    def _swap_upstream(self) -> None:
        with self._lock:
            nxt, self._next_upstream = self._next_upstream, False
        if nxt is not False:
            if self._upstream is not None:
                self._upstream.close()
            self._upstream = nxt if isinstance(nxt, Upstream) else None
            self._failures, self._trouble, self._newest_first = 0, None, True

    def step(self) -> tuple[float, bool]:
        """Send at most one report. Returns (seconds to wait, whether a new report ends the wait)."""
        if self._upstream is None:
            return self.policy.idle_wait, True
        pending = self.outbox.next_pending(after_newest=not self._newest_first)
        if pending is None:
            return self.policy.idle_wait, True
        result = deliver(self.outbox, self._upstream, pending)
        if result.outcome in (Outcome.DELIVERED, Outcome.REJECTED):
            self._newest_first = False
            self.sent += result.outcome is Outcome.DELIVERED
            if self._trouble is not None:
                log.warning("upstream reachable again: delivered report seq %d; %d waiting",
                            pending.seq, self.outbox.stats().backlog)
            self._failures, self._trouble = 0, None
            self.state.last_error = None
            self._changed()
            more = self.outbox.next_pending(after_newest=True) is not None
            return (1.0 / self.policy.rate if more and self.policy.rate > 0 else 0.0), False
        self._newest_first = True  # when it works again, the present goes first
        if self._stop.is_set():
            return 0.0, False
        if result.outcome is Outcome.REFUSED:
            self._report(f"upstream refused the agent: {result.detail}; reports are kept in the outbox, "
                         f"next try in {self.policy.refused_pause:g} s or after a reload", logging.ERROR)
            return self.policy.refused_pause, False
        self._failures += 1
        wait = full_jitter(self.rng, self.policy.backoff_base, self.policy.backoff_cap, self._failures)
        if result.retry_after is not None:
            wait = max(wait, min(result.retry_after, self._upstream.policy.retry_after_cap))
        backlog = self.outbox.stats().backlog
        self._report(f"upstream unreachable: {result.detail}; {backlog} report(s) kept in the outbox, "
                     "retrying with backoff", logging.WARNING)
        return wait, False

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
