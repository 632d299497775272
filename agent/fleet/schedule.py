"""Schedule arithmetic for the daemon: when the daily self-test runs, at which level, how
often device status is polled, and whether to hold back the first reports after a boot.

Everything takes the time as an argument (an aware ``datetime``) so tests inject a clock;
only the small state helpers at the bottom touch the state dir.

- The self-test runs daily at ``selftest_at`` (local time) plus a per-terminal offset in
  ``[0, jitter)`` derived from a SHA-256 of the terminal id: stable for one terminal, spread
  over the fleet.
- A run missed while the box was off is caught up once at start (like systemd's
  ``Persistent=true``): the last run is recorded in the state dir. A terminal with no record
  yet (fresh install) waits for its next slot instead.
- Inside ``business_hours`` or on a ``blackout_dates`` day the self-test never prints: it
  runs at the internal level and says why.
- ``startup_jitter`` applies at every start of the agent (a boot, or a restart: a package
  update restarts a whole fleet at once). It holds back the first heartbeat, the outbox
  backlog and a catch-up self-test by the same random delay. Whether the system itself
  has just booted (the kernel boot id differs from the one stamped in the state dir *and*
  the uptime is short) is still told apart, for the log.
- A missed self-test is caught up at a random point of the ``jitter`` window after that
  hold (a region's terminals powered on together must not print together).
- Device status is polled every ``status_poll``, capped at ``heartbeat_interval``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass

from posagent.config.calendar import blackout_reason
from posagent.config.model import MIN_POLL, ScheduleSection
from posagent.core.base import Level
from posagent.core.statefile import write_json

log = logging.getLogger(__name__)

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
#: After a boot, startup jitter applies only while the system has been up less than this.
JUST_BOOTED_S = 600.0
_STATE_FILE = "schedule.json"


def terminal_offset(terminal_id: str, jitter: float) -> float:
    """Seconds in [0, jitter): the same for one terminal id, spread uniformly over a fleet."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(b"posagent.selftest:" + terminal_id.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2.0**64  # in [0, 1)
    return float(int(fraction * jitter))  # whole seconds keep the time readable, still < jitter


def localize(naive: dt.datetime, tz: dt.tzinfo | None) -> dt.datetime:
    """Attach a zone to a local wall-clock time; ``tz=None`` means the system's zone."""
    if tz is None:
        return naive.astimezone()  # the system zone, with its DST rules for that date
    return naive.replace(tzinfo=tz)


def slot_on(day: dt.date, sched: ScheduleSection, terminal_id: str, tz: dt.tzinfo | None) -> dt.datetime:
    """The self-test time of this terminal on ``day``."""
    base = localize(dt.datetime.combine(day, sched.selftest_at), tz)
    return base + dt.timedelta(seconds=terminal_offset(terminal_id, float(sched.jitter)))


def _local_date(now: dt.datetime, tz: dt.tzinfo | None) -> dt.date:
    return now.astimezone(tz).date() if tz is not None else now.astimezone().date()


def previous_slot(now: dt.datetime, sched: ScheduleSection, terminal_id: str,
                  tz: dt.tzinfo | None = None) -> dt.datetime:
    """The latest slot at or before ``now``."""
    day = _local_date(now, tz)
    for back in range(0, 3):  # the offset is < 1 day, so one of today/yesterday matches
        slot = slot_on(day - dt.timedelta(days=back), sched, terminal_id, tz)
        if slot <= now:
            return slot
    raise AssertionError("unreachable: a slot within three days")


def next_slot(now: dt.datetime, sched: ScheduleSection, terminal_id: str,
              tz: dt.tzinfo | None = None) -> dt.datetime:
    """The first slot strictly after ``now``."""
    day = _local_date(now, tz)
    for ahead in range(-1, 3):
        slot = slot_on(day + dt.timedelta(days=ahead), sched, terminal_id, tz)
        if slot > now:
            return slot
    raise AssertionError("unreachable: a slot within three days")


@dataclass(frozen=True)
class Plan:
    """When the next self-test runs and why (``catch-up`` or ``scheduled``)."""

    at: dt.datetime
    trigger: str


def plan_selftest(now: dt.datetime, sched: ScheduleSection, terminal_id: str, last_run: dt.datetime | None,
                  first_seen: dt.datetime | None, tz: dt.tzinfo | None = None) -> Plan:
    """The next self-test.

    ``last_run`` is the last recorded run, ``first_seen`` when this state dir was first used
    by the daemon. A slot that passed after the later of the two without a run is missed and
    runs now (catch-up, once, however many days were missed).
    """
    prev = previous_slot(now, sched, terminal_id, tz)
    since = max((t for t in (last_run, first_seen) if t is not None), default=None)
    if since is not None and since < prev:
        return Plan(now, "catch-up")
    return Plan(next_slot(now, sched, terminal_id, tz), "scheduled")


def level_for(when: dt.datetime, sched: ScheduleSection, wanted: Level = Level.EXTERNAL,
              tz: dt.tzinfo | None = None) -> tuple[Level, str]:
    """The level a self-test may run at ``when``, and why it was lowered ("" if it was not)."""
    local = when.astimezone(tz) if tz is not None else when.astimezone()
    if wanted <= Level.INTERNAL:
        return wanted, ""
    why = blackout_why(local.date(), sched)
    if why is not None:
        return Level.INTERNAL, f"blackout date {local.date().isoformat()}{why}: internal checks only, nothing printed"
    hours = sched.business_hours
    if hours is not None and hours.contains(local.time()):
        return Level.INTERNAL, f"inside business hours {hours}: internal checks only, no test slip printed"
    return wanted, ""


def blackout_why(day: dt.date, sched: ScheduleSection) -> str | None:
    """None on an ordinary day; on a blackout day "" (a listed date) or ", <why>" (a public
    holiday or a calendar event), as level_for() says it."""
    if day in sched.blackout_dates:
        return ""
    why = blackout_reason(day, sched.blackout_country, sched.blackout_ics)
    return f", {why}" if why else None


def startup_delay(sched: ScheduleSection, rng: random.Random | None = None) -> float:
    """Random seconds to hold back, after any start of the agent (a boot or a restart),
    everything that reaches the upstream: the first heartbeat, the outbox backlog and a
    catch-up self-test."""
    if sched.startup_jitter <= 0:
        return 0.0
    return (rng or random.Random()).uniform(0.0, float(sched.startup_jitter))


def hold_back(plan: Plan, not_before: dt.datetime, sched: ScheduleSection | None = None,
              rng: random.Random | None = None) -> Plan:
    """``plan`` moved to ``not_before`` if it was due earlier (a catch-up after a start); a
    catch-up then runs at a random point of the ``jitter`` window after it (``sched``)."""
    if plan.at >= not_before:
        return plan
    spread = float(sched.jitter) if sched is not None and plan.trigger == "catch-up" else 0.0
    extra = (rng or random.Random()).uniform(0.0, spread) if spread > 0 else 0.0
    return Plan(not_before + dt.timedelta(seconds=extra), plan.trigger)


def poll_interval(sched: ScheduleSection, heartbeat_interval: float) -> float:
    """Seconds between status rounds: ``status_poll``, but never more often than needed
    (a round every heartbeat anyway) and never below ``MIN_POLL`` (config/model.py)."""
    return max(MIN_POLL, min(float(sched.status_poll), float(heartbeat_interval)))


# -- state in the state dir ---------------------------------------------------------------

def read_boot_id(path: str = BOOT_ID_PATH) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def system_uptime() -> float:
    import psutil  # deferred: a heavy import, needed once (at the daemon's start)

    return max(0.0, time.time() - psutil.boot_time())


def is_just_booted(state_dir: str, boot_id: str | None, uptime_s: float) -> bool:
    """True once per boot, if the system has only just come up. Stamps the boot id.

    Without a boot id (not Linux), a short uptime alone decides.
    """
    state = _load_state(state_dir)
    previous = state.get("boot_id")
    if boot_id is not None:
        if previous == boot_id:
            return False
        state["boot_id"] = boot_id
        _save_state(state_dir, state)
    return uptime_s < JUST_BOOTED_S


def just_booted(state_dir: str) -> bool:
    """Whether the system itself has just booted (once per boot; stamps the boot id)."""
    return is_just_booted(state_dir, read_boot_id(), system_uptime())


def load_runs(state_dir: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(last self-test run, first time the daemon used this state dir)."""
    state = _load_state(state_dir)
    return _parse_time(state.get("last_selftest_run")), _parse_time(state.get("first_seen"))


def mark_first_seen(state_dir: str, now: dt.datetime) -> dt.datetime:
    state = _load_state(state_dir)
    seen = _parse_time(state.get("first_seen"))
    if seen is None:
        state["first_seen"] = now.isoformat(timespec="seconds")
        _save_state(state_dir, state)
        return now.replace(microsecond=0)
    return seen


def record_run(state_dir: str, when: dt.datetime) -> None:
    state = _load_state(state_dir)
    state["last_selftest_run"] = when.isoformat(timespec="seconds")
    _save_state(state_dir, state)


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def _load_state(state_dir: str) -> dict[str, object]:
    try:
        with open(os.path.join(state_dir, _STATE_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("schedule state %s unreadable (%s); starting afresh", _STATE_FILE, e)
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(state_dir: str, state: dict[str, object]) -> None:
    """Atomically: write a temp file, fsync, rename."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    try:
        write_json(os.path.join(state_dir, _STATE_FILE), state)
    except OSError as e:
        log.warning("cannot write schedule state in %s: %s", state_dir, e)


@dataclass(frozen=True)
class DayPlan:
    """One day of the announced maintenance: when this terminal's self-test runs, at which
    level and why, and the day's quiet window (outside business hours)."""

    date: dt.date
    selftest_at: dt.datetime
    level: Level
    reason: str
    blackout: bool
    business_hours: str | None  # "08:00-22:00": no test slip inside it


def week_ahead(now: dt.datetime, sched: ScheduleSection, terminal_id: str, days: int = 7,
               tz: dt.tzinfo | None = None) -> list[DayPlan]:
    """The next ``days`` self-tests (``posagent schedule``), one a day, from the next slot on."""
    first = next_slot(now, sched, terminal_id, tz)
    start = _local_date(first, tz)
    out: list[DayPlan] = []
    for k in range(days):
        day = start + dt.timedelta(days=k)
        at = slot_on(day, sched, terminal_id, tz)
        level, reason = level_for(at, sched, tz=tz)
        out.append(DayPlan(day, at, level, reason, blackout_why(day, sched) is not None,
                           str(sched.business_hours) if sched.business_hours is not None else None))
    return out
