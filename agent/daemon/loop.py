"""The daemon's main loop (``posagent run``), what systemd starts on every terminal.

The ``Daemon`` is a loop over collaborators built for the current config
(``posagent.daemon.services.build``: devices and runner, outbox, delivery, reporter). One main
thread decides and waits; the work happens elsewhere:
- a *job* thread runs either a status round (every device's ``status()`` concurrently,
  each cut at its timeout by the Runner) or the daily self-test, never both at once
  since they share the ports (``posagent.daemon.jobs``);
- the delivery thread sends the outbox upstream; remote commands it (or MQTT) receives wait
  in the executor's bounded queue and are verified and carried out here, one at a time, a
  command's work running as a job like any other (``posagent.daemon.commands``).
Device status is polled every ``status_poll`` (at most every ``heartbeat_interval``): each
round feeds the change tracker, so a change becomes an event at once; a heartbeat uses
the round it ran with, or the latest one when that is fresh. The reporter commits each
heartbeat, event and self-test report to the outbox and feeds its sinks; after a status
round, the inventory when it is due (start, daily, changed: ``posagent.daemon.inventory``).
The loop pings the systemd watchdog while it is alive and no job is wedged, and handles
SIGTERM (graceful stop, exit 0) and SIGHUP (reload: ``posagent.daemon.reload`` loads the new
config and closes the old devices in a thread while the loop goes on, then the services are
built again and swapped in; a bad new config is logged and the old one kept). After a
start (a boot or a restart), heartbeats, the outbox backlog and a catch-up self-test wait a
random part of ``startup_jitter``. Heartbeats fall on this terminal's phase
(``posagent.fleet.phase``: wall-clock instants ``k * interval + offset(terminal id)``), kept
across restarts, reloads and clock steps. Events of faults a whole fleet sees at once (the
acquirer unreachable) wait a random part of ``event_spread``, or go with the next heartbeat.
Every wait is an Event wait; the loop's own is a ``Waker``, which signal handlers may set.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posagent.config.model import Config
from posagent.core import power
from posagent.core.base import Result
from posagent.core.waker import Waker
from posagent.daemon import interrupted, jobs
from posagent.daemon.commands import Executor
from posagent.daemon.inventory import InventoryTracker
from posagent.daemon.jobs import Job, selftest_bound, status_bound
from posagent.daemon.reload import Reload
from posagent.daemon.sdnotify import Notifier
from posagent.daemon.services import STOP_GRACE, Env, Services, StartupHold, build, close_devices
from posagent.fleet import phase, schedule
from posagent.fleet.changes import Change, ChangeTracker
from posagent.fleet.delivery import DeliveryPolicy
from posagent.fleet.messages import AgentState, DeviceResults
from posagent.fleet.outbox import OutboxError
from posagent.fleet.service import status_round

log = logging.getLogger("posagent.daemon.loop")
__all__ = ["EX_CANTCREAT", "WALL_RECHECK", "Daemon", "Polled"]

EX_CANTCREAT = 73
WALL_RECHECK = 60.0  # re-read the wall clock at least this often (clock steps, DST)


@dataclass(frozen=True)
class Polled:
    """The latest status round: the device results, the system figures, when it ended."""

    results: DeviceResults
    system: dict[str, Any]
    at: float  # time.monotonic()


class Daemon:
    def __init__(self, config: Config, reload: Callable[[], Config], *, notifier: Notifier | None = None,
                 delivery_policy: DeliveryPolicy | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
                 rng: random.Random | None = None, booted: Callable[[str], bool] = schedule.just_booted) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.state = AgentState(started_at=clock().replace(microsecond=0))
        self._wake = Waker()  # set by signal handlers too: not a threading.Event (posagent.core.waker)
        self._rng = rng or random.Random()
        self._hold = StartupHold(booted, self._rng)
        self._notices: queue.SimpleQueue[tuple[str, str, Result]] = queue.SimpleQueue()
        self._spread_events: list[tuple[float, Change]] = []  # (monotonic due time, change)
        self._delivered = threading.Event()  # the delivery thread sent something
        self.commands = Executor(config, self._wake.set, self.state)
        self._env = Env(self.notifier, self.state, self._on_delivery, self._hold, delivery_policy, self._notice,
                        on_command=self.commands.receive)
        self._reload = Reload(reload, self.notifier)
        self.services: Services | None = None
        self.changes = ChangeTracker(float(config.schedule.event_dedupe))
        self.inventory = InventoryTracker(config)
        self.heartbeats = 0
        self._stop_requested = False
        self._reload_requested = False
        self._job: Job | None = None
        self._next_hb = 0.0
        self._next_poll = 0.0
        self._latest: Polled | None = None
        self._plan: schedule.Plan | None = None
        self._wedged = False

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

    # -- main -------------------------------------------------------------------------
    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            try:
                self.services = build(self.config, self._env)
            except OutboxError as e:
                log.error("%s (is the state dir writable by this user?)", e)
                return EX_CANTCREAT
            cfg = self.config
            power.record_start(cfg.agent.state_dir, schedule.read_boot_id(), self.clock().timestamp(),
                               schedule.system_uptime())
            cut_short = interrupted.take(cfg.agent.state_dir)
            if cut_short is not None and self._env.notify is not None:
                self._env.notify("selftest", "posagent", cut_short)
            self._next_poll = self._hold.until
            self._next_hb = self._phase_deadline(self._hold.until)
            self._plan_selftest()
            devices = len(self.services.devices.names())
            self.notifier.ready(status=f"started; {devices} devices")
            log.info("posagent running as %s: %d devices, heartbeat every %g s, status every %g s",
                     cfg.agent.terminal_id, devices, float(cfg.agent.heartbeat_interval), self._poll_interval())
            self._loop()
            return 0
        finally:
            self._shutdown()
            for s, handler in old.items():
                signal.signal(s, handler)

    def _current(self) -> Services:
        assert self.services is not None
        return self.services

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
            if self._reload_requested and self._job is None and not self._reload.closing:
                self._reload_requested = False
                if self._reload.begin(self._current().devices):
                    self._wake.set()
                continue
            for change in self.changes.due(now):
                self._report_event(change)
            self._report_spread_events(now)
            self._report_notices()
            self._take_command()
            if self._delivered.is_set():
                self._delivered.clear()
                self._current().reporter.delivered()
            self._schedule(now)
            deadlines = []
            job = self._job
            if job is not None:
                if not self._wedged:
                    deadlines.append(job.stuck_after())
            elif not self._reload.closing:  # (while a reload closes the devices there is nothing to run)
                deadlines += [self._next_hb, self._next_poll]
                if self._plan is not None:
                    deadlines.append(now + max(0.0, (self._plan.at - self.clock()).total_seconds()))
            if self._reload.deadline is not None:
                deadlines.append(self._reload.deadline)
            if wd is not None:
                deadlines.append(next_wd)
            trailing = self.changes.next_deadline()
            if trailing is not None:
                deadlines.append(trailing)
            deadlines += [at for at, _change in self._spread_events]
            timeout = min(deadlines, default=now + WALL_RECHECK) - time.monotonic()
            self._wake.wait(max(0.0, min(timeout, WALL_RECHECK)))

    def _finish_reload(self, now: float) -> None:
        """Once the old devices are closed: build the services of the new config and swap them in."""
        new = self._reload.ready(now)
        if new is None:
            return
        previous, self.services = self._current(), None  # build() takes the old outbox and delivery over
        self.services = build(new, self._env, previous)
        self.config = self.services.config  # the new config (with the old state dir if the new one failed)
        self.changes.reset(float(new.schedule.event_dedupe))
        self.commands.reconfigure(self.config)
        self.inventory.reconfigure(self.config)
        self._latest = None
        self._plan_selftest()
        # The devices are polled at once; the heartbeat keeps this terminal's phase (a
        # fleet-wide reload must not make every terminal beat in the same second).
        now = time.monotonic()
        self._next_poll = max(now, self._hold.until)
        self._next_hb = self._phase_deadline(self._next_poll)
        log.info("config reloaded from %s", new.path)
        self.notifier.ready(status="config reloaded")

    def _plan_selftest(self) -> None:
        cfg = self.config
        now = self.clock()
        first_seen = schedule.mark_first_seen(cfg.agent.state_dir, now)
        last_run, _ = schedule.load_runs(cfg.agent.state_dir)
        plan = schedule.plan_selftest(now, cfg.schedule, cfg.agent.terminal_id, last_run, first_seen)
        self._plan = schedule.hold_back(plan, now + dt.timedelta(seconds=self._hold.left()), cfg.schedule, self._rng)
        self.state.next_selftest = self._plan.at
        log.info("next self-test %s at %s", self._plan.trigger, self._plan.at.isoformat(timespec="seconds"))

    def _poll_interval(self) -> float:
        return schedule.poll_interval(self.config.schedule, float(self.config.agent.heartbeat_interval))

    def _schedule(self, now: float) -> None:
        """Start what is due: a heartbeat of a fresh round, the self-test, a status round."""
        if self._job is not None or self._reload.closing:
            return
        hb_due = now >= self._next_hb
        latest = self._latest
        if hb_due and latest is not None and now - latest.at <= self._poll_interval() / 2:
            self._advance_heartbeat(now)  # the latest round is fresh: the heartbeat reports it
            self._report_heartbeat(latest.results, latest.system)
            return
        wall = self.clock()
        if self._plan is not None and wall >= self._plan.at and latest is not None:
            # Due, and the devices were polled at least once: the self-test goes before the
            # next status round. (After it, not before: a round slower than the poll
            # interval, a slow device, left no gap between rounds and the self-test starved.)
            self._start_selftest(self._plan, wall)
            return
        if hb_due or now >= self._next_poll:
            self._next_poll = now + self._poll_interval()
            if hb_due:
                self._advance_heartbeat(now)
            runner, config = self._current().runner, self.config
            self._start_job(Job("status", time.monotonic(), status_bound(config), heartbeat=hb_due),
                            lambda: status_round(runner, config))
            return

    def _advance_heartbeat(self, now: float) -> None:
        interval = float(self.config.agent.heartbeat_interval)
        self._next_hb = self._phase_deadline(now + min(0.5, interval / 2))

    def _phase_deadline(self, not_before: float) -> float:
        """The monotonic time of this terminal's first heartbeat instant at or after
        ``not_before`` (monotonic): the instants are ``k * interval + offset(terminal id)``
        on the wall clock (fleet/phase.py), read afresh each time, so a restart, a reload
        or a clock step keeps the phase."""
        interval = float(self.config.agent.heartbeat_interval)
        offset = phase.heartbeat_offset(self.config.agent.terminal_id, interval)
        mono, wall = time.monotonic(), self.clock().timestamp()
        beat = phase.next_beat(wall + (not_before - mono) - 1e-6, interval, offset)
        return mono + (beat - wall)

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

    # -- jobs and their reports -------------------------------------------------------
    def _start_job(self, job: Job, work: Callable[[], Any]) -> None:
        self._job = job
        jobs.start(job, work, self._wake.set)

    def _start_selftest(self, plan: schedule.Plan, wall: dt.datetime) -> None:
        config, runner = self.config, self._current().runner
        level, reason = schedule.level_for(wall, config.schedule)
        log.info("self-test (%s) at level %s%s", plan.trigger, level.label, f": {reason}" if reason else "")
        schedule.record_run(config.agent.state_dir, wall)  # like Persistent=true: stamped when it starts
        interrupted.begin(config.agent.state_dir, plan.trigger, level.label, wall)
        self._plan = schedule.plan_selftest(wall, config.schedule, config.agent.terminal_id, wall, None)
        self.state.next_selftest = self._plan.at
        job = Job("selftest", time.monotonic(), status_bound(config), trigger=plan.trigger, reason=reason)

        def work() -> Any:
            job.bound = selftest_bound(runner.devices, level)
            return runner.selftest(level)

        self._start_job(job, work)

    def _collect_job(self) -> None:
        job = self._job
        if job is None or not job.done.is_set():
            return
        self._job = None
        if job.error is not None:
            log.error("%s job failed: %s: %s", job.kind, type(job.error).__name__, job.error, exc_info=job.error)
            if job.kind == "selftest":  # it ended (badly), it was not cut short
                interrupted.end(self.config.agent.state_dir)
            self._command_done(job)
            return
        committed = True
        if job.kind == "status":
            results, system = job.result
            now = time.monotonic()
            self._latest = Polled(results, system, now)
            if not job.heartbeat and now >= self._next_hb:  # it came due while this round ran
                self._advance_heartbeat(now)
                job.heartbeat = True
            if job.heartbeat:
                committed = self._report_heartbeat(results, system)
            for change in self.changes.observe(results, now):
                self._report_event(change)
            self._report_inventory(results)
        elif job.kind == "selftest":
            self._current().reporter.selftest(job.result, job.trigger, job.reason)
            interrupted.end(self.config.agent.state_dir)
        self._command_done(job, committed)

    def _report_heartbeat(self, results: DeviceResults, system: dict[str, Any]) -> bool:
        committed = self._current().reporter.heartbeat(results, system)
        if committed:
            self.heartbeats += 1
        power.record_alive(self.config.agent.state_dir, self.clock().timestamp())
        return committed

    def _report_inventory(self, results: DeviceResults) -> None:
        """``posagent.inventory/1`` at start, daily and on a change (``posagent.daemon.inventory``)."""
        services = self._current()
        try:
            self.inventory.after_round(services.devices, results, services.reporter.inventory)
        except Exception as e:  # an inventory must never cost the loop
            log.error("inventory not made: %s: %s", type(e).__name__, e, exc_info=True)

    # -- remote commands (posagent.daemon.commands) --------------------------------------
    def _take_command(self) -> None:
        """Verify the commands waiting (refusals are answered at once); start the next
        accepted one as a job when none runs."""
        services = self._current()
        cmd = self.commands.take(services.outbox, services.delivery.notify_new)
        if cmd is None or self._job is not None or self._reload.closing or self._reload_requested:
            return
        planned = self.commands.job_for(cmd, services.runner, self.config)
        if planned is None:
            self.commands.unable(cmd, services.outbox, services.delivery.notify_new, "no_printer",
                                 "no enabled escpos printer in the config")
            self._wake.set()  # the next command may wait
            return
        self._start_job(*planned)

    def _command_done(self, job: Job, committed: bool = True) -> None:
        services = self._current()
        latest = self._latest.results if self._latest is not None else None
        self.commands.finished(job, services.outbox, services.delivery.notify_new, latest, committed)

    def _report_event(self, change: Change) -> None:
        """Report ``change`` now, or, for a device whose faults a whole fleet sees at once
        (``Driver.fleet_wide``: the acquirer), at a random point of ``event_spread`` or with
        the next heartbeat if that comes first: 200,000 terminals that lose the acquirer
        in the same second must not report it in the same second."""
        spread = float(self.config.schedule.event_spread)
        entry = self._current().devices.get(change.device)
        if spread > 0 and getattr(type(entry), "fleet_wide", False):
            now = time.monotonic()
            due = min(now + self._rng.uniform(0.0, spread), max(now, self._next_hb))
            self._spread_events.append((due, change))
            return
        self._current().reporter.event(change, self.changes.latest())

    def _report_spread_events(self, now: float) -> None:
        due = [e for e in self._spread_events if e[0] <= now]
        if due:
            self._spread_events = [e for e in self._spread_events if e[0] > now]
            for _at, change in due:
                self._current().reporter.event(change, self.changes.latest())

    def _on_delivery(self) -> None:
        """From the delivery thread: something was sent (or failed); the loop updates the sinks."""
        self._delivered.set()
        self._wake.set()

    def _notice(self, device: str, driver: str, result: Result) -> None:
        """From any thread (a device's service, e.g. the print proxy): report it in the loop."""
        self._notices.put((device, driver, result))
        self._wake.set()

    def _report_notices(self) -> None:
        for _ in range(1000):  # bounded: a flood waits for the next turn of the loop
            try:
                device, driver, result = self._notices.get_nowait()
            except queue.Empty:
                return
            self._current().reporter.notice(device, driver, result, self.changes.latest())

    # -- stop -------------------------------------------------------------------------
    def _shutdown(self) -> None:
        self.notifier.stopping(status="stopping")
        if self.services is not None:
            self._report_spread_events(float("inf"))  # committed now rather than lost
        job = self._job
        if job is not None:
            if job.done.wait(STOP_GRACE):
                self._collect_job()
            else:
                log.warning("stopping: abandoning the running %s (a device did not answer in time)", job.kind)
                self.commands.abandoned()
        closing = self._reload.closing
        self._reload.join()  # a reload was closing the old devices
        services = self.services
        if services is not None:
            if not closing:
                closer = close_devices(services.devices)
                closer.join(STOP_GRACE)
                if closer.is_alive():
                    log.warning("stopping: a device did not close within %g s", STOP_GRACE)
            if not services.delivery.stop(STOP_GRACE):
                log.warning("stopping: abandoning a delivery in flight (it stays in the outbox)")
            services.outbox.close()
            power.record_stop(self.config.agent.state_dir, self.clock().timestamp())
        self.notifier.close()
        log.info("posagent stopped")
