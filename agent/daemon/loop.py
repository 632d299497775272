"""The daemon's main loop (``posagent run``), what systemd starts on every terminal.

One main thread decides and waits; the work happens elsewhere:
- a *job* thread runs either a status round (every device's ``status()`` concurrently,
  each cut at its timeout by the Runner) or the daily self-test, never both at once
  since they share the ports;
- the delivery thread sends the outbox upstream.
Device status is polled every ``status_poll`` (at most every ``heartbeat_interval``): each
round feeds the change tracker, so a change becomes an event at once; a heartbeat uses
the round it ran with, or the latest one when that is fresh.
The main loop commits each heartbeat, event and self-test report to the outbox, pings the
systemd watchdog while it is alive and no job is wedged (``posagent.daemon.jobs``), and handles
SIGTERM (graceful stop, exit 0) and SIGHUP (reload; a bad new config is logged and the old
one kept; the old devices are closed in a thread while the loop goes on). After a system
boot, heartbeats, the outbox backlog and a catch-up self-test wait ``startup_jitter``.
Every wait is an Event wait. The reports (commits, status line) live in ``daemon_reports``,
the reload in ``daemon_reload``.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posagent.config.model import Config
from posagent.core.base import Level
from posagent.daemon.jobs import Job, selftest_bound, status_bound
from posagent.daemon.reload import STOP_GRACE, ReloadMixin, make_upstream, open_outbox
from posagent.daemon.reports import ReportsMixin, export_prometheus, history_status, record_history
from posagent.daemon.sdnotify import Notifier
from posagent.fleet.changes import ChangeTracker
from posagent.fleet.delivery import Delivery, DeliveryPolicy
from posagent.fleet.messages import AgentState, DeviceResults
from posagent.fleet.outbox import Outbox, OutboxError
from posagent.selftest.devices import DeviceSet
from posagent.selftest.runner import Runner

log = logging.getLogger("posagent.daemon.loop")
__all__ = ["EX_CANTCREAT", "STOP_GRACE", "WALL_RECHECK", "Daemon", "Polled", "export_prometheus", "history_status",
           "just_booted", "make_upstream", "open_outbox", "record_history", "status_round"]

EX_CANTCREAT = 73
WALL_RECHECK = 60.0  # re-read the wall clock at least this often (clock steps, DST)


def status_round(runner: Runner, config: Config) -> tuple[DeviceResults, dict[str, Any]]:
    from posagent.drivers.system import snapshot

    results = runner.status()
    try:
        system = snapshot(config.agent.state_dir)
    except Exception as e:  # psutil oddities must not cost the heartbeat
        log.warning("system figures unavailable: %s", e)
        system = {}
    return results, system


def just_booted(state_dir: str) -> bool:
    """Whether the system itself has just booted (once per boot; stamps the boot id)."""
    from posagent.fleet import schedule

    return schedule.is_just_booted(state_dir, schedule.read_boot_id(), schedule.system_uptime())


@dataclass(frozen=True)
class Polled:
    """The latest status round: the device results, the system figures, when it ended."""

    results: DeviceResults
    system: dict[str, Any]
    at: float  # time.monotonic()


class Daemon(ReportsMixin, ReloadMixin):
    def __init__(self, config: Config, reload: Callable[[], Config], *, notifier: Notifier | None = None,
                 delivery_policy: DeliveryPolicy | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
                 rng: random.Random | None = None, booted: Callable[[str], bool] = just_booted) -> None:
        self.config = config
        self._reload_fn = reload
        self.notifier = notifier or Notifier()
        self.delivery_policy = delivery_policy
        self.clock = clock
        self.rng = rng or random.Random()
        self._booted = booted
        self.state = AgentState(started_at=clock().replace(microsecond=0))
        self._wake = threading.Event()
        self._stop_requested = False
        self._reload_requested = False
        self._job: Job | None = None
        self.devices: DeviceSet | None = None
        self.runner: Runner | None = None
        self.outbox: Outbox | None = None
        self.delivery: Delivery | None = None
        self.changes = ChangeTracker(float(config.schedule.event_dedupe))
        self.heartbeats = 0
        self._hold_until = 0.0  # startup_jitter: nothing goes out before this (monotonic)
        self._next_hb = 0.0
        self._next_poll = 0.0
        self._latest: Polled | None = None
        self._plan: Any = None
        self._wedged = False
        self._closing: tuple[threading.Thread, float, Config] | None = None  # a reload closing the old devices

    # -- signals --------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self.request_reload()
        else:
            self.request_stop()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake.set()

    # -- setup ------------------------------------------------------------------------
    def _open(self, config: Config) -> None:
        """Build every device of this config (drivers opened, simulators started on first use)."""
        self.devices = DeviceSet(config)
        for name in self.devices.names():
            self.devices.get(name)
        self.runner = Runner(self.devices)

    def _start_delivery(self, config: Config) -> None:
        assert self.outbox is not None
        upstream, problem = make_upstream(config)
        if problem:
            log.error("upstream not usable: %s; reports are kept in the outbox", problem)
            self.state.last_error = problem
        elif upstream is None:
            log.warning("no upstream url configured: reports are kept in the outbox (bounded)")
        self.delivery = Delivery(self.outbox, upstream, self.state, policy=self.delivery_policy,
                                 on_change=self._wake.set)
        self.delivery.start(hold=max(0.0, self._hold_until - time.monotonic()))

    def _plan_selftest(self) -> None:
        from posagent.fleet import schedule

        cfg = self.config
        now = self.clock()
        first_seen = schedule.mark_first_seen(cfg.agent.state_dir, now)
        last_run, _ = schedule.load_runs(cfg.agent.state_dir)
        plan = schedule.plan_selftest(now, cfg.schedule, cfg.agent.terminal_id, last_run, first_seen)
        hold = max(0.0, self._hold_until - time.monotonic())
        self._plan = schedule.hold_back(plan, now + dt.timedelta(seconds=hold))
        log.info("next self-test %s at %s", self._plan.trigger, self._plan.at.isoformat(timespec="seconds"))

    def _poll_interval(self) -> float:
        from posagent.fleet import schedule

        return schedule.poll_interval(self.config.schedule, float(self.config.agent.heartbeat_interval))

    # -- main -------------------------------------------------------------------------
    def run(self) -> int:
        from posagent.fleet import schedule

        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            try:
                self.outbox = open_outbox(self.config)
            except OutboxError as e:
                log.error("%s (is the state dir writable by this user?)", e)
                return EX_CANTCREAT
            self._open(self.config)
            cfg = self.config
            delay = schedule.startup_delay(self._booted(cfg.agent.state_dir), cfg.schedule, self.rng)
            self._hold_until = time.monotonic() + delay
            self._next_hb = self._next_poll = self._hold_until
            if delay:
                log.info("system just booted: the first heartbeat, the outbox backlog and any catch-up self-test "
                         "wait %.0f s (startup_jitter)", delay)
            self._start_delivery(cfg)
            self._plan_selftest()
            self.notifier.ready(status=f"started; {len(self.devices.names()) if self.devices else 0} devices")
            log.info("posagent running as %s: %d devices, heartbeat every %g s, status every %g s",
                     cfg.agent.terminal_id, len(self.devices.names()) if self.devices else 0,
                     float(cfg.agent.heartbeat_interval), self._poll_interval())
            self._loop()
            return 0
        finally:
            self._shutdown()
            for s, handler in old.items():
                signal.signal(s, handler)

    def _loop(self) -> None:
        wd = self.notifier.watchdog_interval
        next_wd = time.monotonic()
        while True:
            self._wake.clear()
            if self._stop_requested:
                return
            now = time.monotonic()
            wedged = self._check_wedged(now, wd is not None)
            if wd is not None and now >= next_wd:
                if not wedged:
                    self.notifier.watchdog()
                next_wd = now + wd
            self._collect_job()
            self._finish_reload(now)
            if self._reload_requested and self._job is None and self._closing is None:
                self._reload_requested = False
                self._reload()
                continue
            for change in self.changes.due(now):
                self._commit_event(change)
            self._schedule(now)
            deadlines = []
            job = self._job
            if job is not None:
                if not self._wedged:
                    deadlines.append(job.stuck_after())
            elif self.runner is not None:  # (no runner: a reload is closing the devices)
                deadlines += [self._next_hb, self._next_poll]
                if self._plan is not None:
                    deadlines.append(now + max(0.0, (self._plan.at - self.clock()).total_seconds()))
            if self._closing is not None:
                deadlines.append(self._closing[1])
            if wd is not None:
                deadlines.append(next_wd)
            trailing = self.changes.next_deadline()
            if trailing is not None:
                deadlines.append(trailing)
            timeout = min(deadlines, default=now + WALL_RECHECK) - time.monotonic()
            self._wake.wait(max(0.0, min(timeout, WALL_RECHECK)))

    def _schedule(self, now: float) -> None:
        """Start what is due: a status round (poll or heartbeat), else the self-test."""
        if self._job is not None or self.runner is None:
            return
        hb_due = now >= self._next_hb
        latest = self._latest
        if hb_due and latest is not None and now - latest.at <= self._poll_interval() / 2:
            self._advance_heartbeat(now)  # the latest round is fresh: the heartbeat reports it
            self._commit_heartbeat(latest.results, latest.system)
            return
        if hb_due or now >= self._next_poll:
            self._next_poll = now + self._poll_interval()
            if hb_due:
                self._advance_heartbeat(now)
            self._start_job("status", heartbeat=hb_due)
            return
        wall = self.clock()
        if self._plan is not None and wall >= self._plan.at:
            self._start_selftest(wall)

    def _advance_heartbeat(self, now: float) -> None:
        self._next_hb = max(self._next_hb + float(self.config.agent.heartbeat_interval), now + 0.5)

    def _check_wedged(self, now: float, watchdog: bool) -> bool:
        """True while the running job is past its bound: then the watchdog is not pinged."""
        job = self._job
        if job is None or job.done.is_set() or now < job.stuck_after():
            if self._wedged:
                log.warning("the stuck job returned after all: the agent is alive again")
                self._wedged = False
            return False
        if not self._wedged:
            self._wedged = True
            what = ("no more watchdog pings: systemd restarts the agent" if watchdog
                    else "no watchdog configured: restart the agent")
            log.error("the %s job has run %.0f s, more than twice its bound of %.0f s: a device call does not "
                      "return; %s", job.kind, now - job.started, job.bound, what)
            self.notifier.status(f"wedged: the {job.kind} job has not returned for {now - job.started:.0f} s")
        return True

    # -- jobs -------------------------------------------------------------------------
    def _start_job(self, kind: str, level: Level = Level.INTERNAL, trigger: str = "", reason: str = "",
                   heartbeat: bool = False) -> None:
        runner, config = self.runner, self.config
        assert runner is not None
        job = Job(kind, time.monotonic(), status_bound(config), trigger=trigger, reason=reason,
                  heartbeat=heartbeat)

        def work() -> None:
            try:
                if kind == "status":
                    job.result = status_round(runner, config)
                else:
                    job.bound = selftest_bound(runner.devices, level)
                    job.result = runner.selftest(level)
            except BaseException as e:
                job.error = e
            job.done.set()
            self._wake.set()

        self._job = job
        threading.Thread(target=work, name=f"job-{kind}", daemon=True).start()

    def _start_selftest(self, wall: dt.datetime) -> None:
        from posagent.fleet import schedule

        plan = self._plan
        level, reason = schedule.level_for(wall, self.config.schedule)
        log.info("self-test (%s) at level %s%s", plan.trigger, level.label, f": {reason}" if reason else "")
        schedule.record_run(self.config.agent.state_dir, wall)  # like Persistent=true: stamped when it starts
        self._plan = schedule.plan_selftest(wall, self.config.schedule, self.config.agent.terminal_id, wall,
                                            None)
        self._start_job("selftest", level, plan.trigger, reason)

    def _collect_job(self) -> None:
        job = self._job
        if job is None or not job.done.is_set():
            return
        self._job = None
        if job.error is not None:
            log.error("%s job failed: %s: %s", job.kind, type(job.error).__name__, job.error, exc_info=job.error)
            return
        if job.kind == "status":
            results, system = job.result
            now = time.monotonic()
            self._latest = Polled(results, system, now)
            if not job.heartbeat and now >= self._next_hb:  # it came due while this round ran
                self._advance_heartbeat(now)
                job.heartbeat = True
            if job.heartbeat:
                self._commit_heartbeat(results, system)
            for change in self.changes.observe(results, now):
                self._commit_event(change)
        else:
            self._commit_selftest(job)

    # -- stop -------------------------------------------------------------------------
    def _shutdown(self) -> None:
        self.notifier.stopping(status="stopping")
        job = self._job
        if job is not None:
            if job.done.wait(STOP_GRACE):
                self._collect_job()
            else:
                log.warning("stopping: abandoning the running %s (a device did not answer in time)", job.kind)
        if self._closing is not None:  # a reload was closing the old devices
            self._closing[0].join(max(0.0, self._closing[1] - time.monotonic()))
        if self.devices is not None:
            closer = threading.Thread(target=self.devices.close, name="close-devices", daemon=True)
            closer.start()
            closer.join(STOP_GRACE)
            if closer.is_alive():
                log.warning("stopping: a device did not close within %g s", STOP_GRACE)
        if self.delivery is not None and not self.delivery.stop(STOP_GRACE):
            log.warning("stopping: abandoning a delivery in flight (it stays in the outbox)")
        if self.outbox is not None:
            self.outbox.close()
        self.notifier.close()
        log.info("posagent stopped")
