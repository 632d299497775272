"""The daemon's jobs (a status round or the self-test) and how long each may take.

A job runs in its own thread; the main loop only looks at it. Every device call inside a
job is cut at its timeout by the Runner, so a job has an expected bound: the longest
device timeout for a status round, the per-device sum of check timeouts for a self-test
(devices run concurrently, the internal checks before the external ones). A job still
running after ``STUCK_FACTOR`` times that bound (plus ``JOB_SLACK``) is wedged: something
outside the cut hangs (a port that does not open, a driver holding a lock). The daemon
then stops the watchdog pings so systemd restarts it. ``start()`` runs a job's work in its
thread; the main loop looks at ``Job.done``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from posagent.config.model import Config
from posagent.core.base import Level
from posagent.selftest.devices import Broken, DeviceSet

#: Seconds a job may take beyond its device timeouts (system figures, history, thread start).
JOB_SLACK = 2.0
#: A job running longer than this many times its bound (plus the slack) is wedged.
STUCK_FACTOR = 2.0


@dataclass
class Job:
    kind: str  # "status" | "selftest"
    started: float  # time.monotonic()
    bound: float  # seconds the job should take at most (see the module doc)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    trigger: str = ""
    reason: str = ""
    heartbeat: bool = False  # a status round whose result is also the heartbeat

    def stuck_after(self) -> float:
        """The monotonic time from which this job counts as wedged."""
        return self.started + STUCK_FACTOR * (self.bound + JOB_SLACK)


def status_bound(config: Config) -> float:
    """A status round: every device at once, each cut at its own timeout."""
    timeouts = [float(d.timeout) if d.timeout is not None else float(config.agent.check_timeout)
                for d in config.devices if d.enabled]
    return max(timeouts, default=0.0)


def selftest_bound(devices: DeviceSet, level: Level) -> float:
    """A self-test at ``level``: per phase (internal, then external) the slowest device's
    sum of check timeouts. Call it from the job's thread: it may build a driver."""
    phases = {Level.INTERNAL: 0.0, Level.EXTERNAL: 0.0}
    for name in devices.names():
        entry = devices.get(name)
        if isinstance(entry, Broken):
            continue
        try:
            checks = entry.checks()
        except Exception:  # the Runner reports it; one setup check, bounded by the default
            checks = []
        per = dict.fromkeys(phases, 0.0)
        for check in checks:
            if check.level <= level and check.level in per:
                per[check.level] += float(check.timeout or entry.timeout)
        for lvl, total in per.items():
            phases[lvl] = max(phases[lvl], total)
    return sum(phases.values()) + status_bound(devices.config)


def start(job: Job, work: Callable[[], Any], wake: Callable[[], None]) -> None:
    """Run ``work`` in the job's own thread: its result (or exception) lands on ``job``, then
    ``job.done`` is set and ``wake`` called."""

    def target() -> None:
        try:
            job.result = work()
        except BaseException as e:
            job.error = e
        job.done.set()
        wake()

    threading.Thread(target=target, name=f"job-{job.kind}", daemon=True).start()
