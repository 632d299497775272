"""Schedule arithmetic with an injected clock: stable per-terminal jitter, the same time
every day, catch-up after a missed run, business hours and blackout dates, startup jitter
only after a system boot."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from posagent.config.model import ScheduleSection
from posagent.core.base import Level
from posagent.core.values import Duration, HourRange
from posagent.fleet import schedule

TZ = ZoneInfo("Asia/Shanghai")
SCHED = ScheduleSection(selftest_at=dt.time(3, 0), jitter=Duration(1800.0),
                        business_hours=HourRange(dt.time(8, 0), dt.time(22, 0)),
                        blackout_dates=[dt.date(2027, 2, 6)], startup_jitter=Duration(60.0))


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=TZ)


def test_offset_is_stable_per_terminal_and_inside_the_window() -> None:
    a1 = schedule.terminal_offset("SH-0042", 1800.0)
    a2 = schedule.terminal_offset("SH-0042", 1800.0)
    b = schedule.terminal_offset("SH-0043", 1800.0)
    assert a1 == a2
    assert a1 != b
    assert 0.0 <= a1 < 1800.0 and 0.0 <= b < 1800.0
    assert schedule.terminal_offset("SH-0042", 0.0) == 0.0


def test_offsets_spread_over_a_fleet() -> None:
    offsets = [schedule.terminal_offset(f"SH-{i:04d}", 1800.0) for i in range(2000)]
    assert all(0.0 <= o < 1800.0 for o in offsets)
    # every 3-minute tenth of the window gets a fair share (uniform: 200 each)
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o // 180)] += 1
    assert min(buckets) > 120 and max(buckets) < 280, buckets


def test_two_terminals_get_different_times_same_terminal_same_time_every_day() -> None:
    now = at(2027, 3, 1, 12, 0)
    a = schedule.next_slot(now, SCHED, "SH-0042", TZ)
    b = schedule.next_slot(now, SCHED, "SH-0043", TZ)
    assert a != b
    for t in (a, b):
        assert t.date() == dt.date(2027, 3, 2)
        assert at(2027, 3, 2, 3, 0) <= t < at(2027, 3, 2, 3, 30)
    # the following days: the same local time
    times = set()
    cursor = now
    for _ in range(10):
        nxt = schedule.next_slot(cursor, SCHED, "SH-0042", TZ)
        times.add(nxt.timetz())
        cursor = nxt
    assert times == {a.timetz()}


def test_next_slot_is_today_when_still_ahead() -> None:
    t = schedule.next_slot(at(2027, 3, 1, 1, 0), SCHED, "SH-0042", TZ)
    assert t.date() == dt.date(2027, 3, 1)
    assert schedule.previous_slot(t, SCHED, "SH-0042", TZ) == t
    assert schedule.next_slot(t, SCHED, "SH-0042", TZ) == t + dt.timedelta(days=1)


def test_catch_up_after_a_missed_run_once() -> None:
    slot = schedule.slot_on(dt.date(2027, 3, 1), SCHED, "SH-0042", TZ)
    last = slot - dt.timedelta(days=1)  # ran yesterday
    boot = at(2027, 3, 1, 9, 15)  # the box was off at 03:xx today
    plan = schedule.plan_selftest(boot, SCHED, "SH-0042", last, first_seen=at(2027, 1, 1), tz=TZ)
    assert plan.trigger == "catch-up" and plan.at == boot
    # after the catch-up ran (recorded now), the next is tomorrow's slot
    plan2 = schedule.plan_selftest(boot, SCHED, "SH-0042", boot, first_seen=at(2027, 1, 1), tz=TZ)
    assert plan2.trigger == "scheduled" and plan2.at == slot + dt.timedelta(days=1)
    # a week off: still a single catch-up, then back on the daily slot
    plan3 = schedule.plan_selftest(boot, SCHED, "SH-0042", last - dt.timedelta(days=7), at(2027, 1, 1), TZ)
    assert plan3.trigger == "catch-up"


def test_no_catch_up_when_nothing_was_missed_or_on_a_fresh_install() -> None:
    slot = schedule.slot_on(dt.date(2027, 3, 1), SCHED, "SH-0042", TZ)
    after = slot + dt.timedelta(hours=2)
    plan = schedule.plan_selftest(after, SCHED, "SH-0042", slot + dt.timedelta(seconds=1), at(2027, 1, 1), TZ)
    assert plan.trigger == "scheduled" and plan.at == slot + dt.timedelta(days=1)
    fresh = schedule.plan_selftest(after, SCHED, "SH-0042", None, first_seen=after, tz=TZ)
    assert fresh.trigger == "scheduled" and fresh.at == slot + dt.timedelta(days=1)
    # installed before the slot, never ran, box off at the slot: catch up
    missed = schedule.plan_selftest(after, SCHED, "SH-0042", None, first_seen=slot - dt.timedelta(hours=5), tz=TZ)
    assert missed.trigger == "catch-up"


@pytest.mark.parametrize(("when", "level", "why"), [
    (at(2027, 3, 1, 3, 10), "external", ""),
    (at(2027, 3, 1, 8, 0), "internal", "business hours 08:00-22:00"),
    (at(2027, 3, 1, 21, 59), "internal", "business hours"),
    (at(2027, 3, 1, 22, 0), "external", ""),
    (at(2027, 2, 6, 3, 10), "internal", "blackout date 2027-02-06"),
])
def test_never_print_in_business_hours_or_on_blackout_dates(when: dt.datetime, level: str, why: str) -> None:
    lvl, reason = schedule.level_for(when, SCHED, tz=TZ)
    assert lvl.label == level
    assert (why in reason) if why else reason == ""


def test_business_hours_wrapping_midnight() -> None:
    night = ScheduleSection(business_hours=HourRange(dt.time(18, 0), dt.time(6, 0)))
    assert schedule.level_for(at(2027, 3, 1, 3, 0), night, tz=TZ)[0].label == "internal"
    assert schedule.level_for(at(2027, 3, 1, 12, 0), night, tz=TZ)[0].label == "external"


def test_level_is_judged_in_local_time_whatever_the_clock_zone() -> None:
    utc_clock = dt.datetime(2027, 3, 1, 1, 0, tzinfo=dt.UTC)  # 09:00 in Shanghai: business hours
    assert schedule.level_for(utc_clock, SCHED, tz=TZ)[0].label == "internal"


def test_dst_day_keeps_the_local_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    s = ScheduleSection(selftest_at=dt.time(3, 30), jitter=Duration(0.0))
    before = schedule.slot_on(dt.date(2027, 3, 27), s, "X", berlin)
    after = schedule.slot_on(dt.date(2027, 3, 29), s, "X", berlin)  # DST began on the 28th
    assert before.hour == after.hour == 3 and before.minute == after.minute == 30


def test_startup_jitter_after_every_start_and_boots_told_apart(tmp_path: Path) -> None:
    state = str(tmp_path)
    rng = random.Random(7)
    delays = [schedule.startup_delay(SCHED, rng) for _ in range(200)]
    assert all(0.0 <= d <= 60.0 for d in delays) and max(delays) - min(delays) > 50  # spread over the window
    assert schedule.startup_delay(ScheduleSection(startup_jitter=Duration(0.0)), rng) == 0.0
    assert schedule.is_just_booted(state, "boot-a", uptime_s=40.0) is True
    # the agent restarts in the same boot: not a boot (a restart waits all the same)
    assert schedule.is_just_booted(state, "boot-a", uptime_s=300.0) is False
    # next boot
    assert schedule.is_just_booted(state, "boot-b", uptime_s=25.0) is True
    # first start on a box that has been up for days (fresh install): no jitter, but stamped
    assert schedule.is_just_booted(str(tmp_path / "other"), "boot-b", uptime_s=86400.0) is False
    assert schedule.is_just_booted(str(tmp_path / "other"), "boot-b", uptime_s=10.0) is False


def test_run_records_survive_in_the_state_dir(tmp_path: Path) -> None:
    state = str(tmp_path)
    assert schedule.load_runs(state) == (None, None)
    first = schedule.mark_first_seen(state, at(2027, 3, 1, 10, 0, 0))
    assert schedule.mark_first_seen(state, at(2027, 3, 5)) == first  # kept
    schedule.record_run(state, at(2027, 3, 2, 3, 12, 5))
    last, seen = schedule.load_runs(state)
    assert last == at(2027, 3, 2, 3, 12, 5) and seen == first
    (tmp_path / "schedule.json").write_text("{not json")
    assert schedule.load_runs(state) == (None, None)  # a damaged file: start afresh, no crash


def test_real_boot_id_is_read() -> None:
    boot = schedule.read_boot_id()
    if Path(schedule.BOOT_ID_PATH).exists():
        assert boot is not None and len(boot) == 36
    assert schedule.read_boot_id("/nonexistent/boot_id") is None


def test_status_poll_never_more_often_than_needed() -> None:
    assert schedule.poll_interval(ScheduleSection(), 60.0) == 10.0  # the default: every 10 s
    assert schedule.poll_interval(ScheduleSection(status_poll=Duration(30.0)), 5.0) == 5.0  # a round per heartbeat
    assert schedule.poll_interval(ScheduleSection(status_poll=Duration(2.0)), 300.0) == 2.0
    assert schedule.poll_interval(ScheduleSection(status_poll=Duration(0.2)), 300.0) == 0.2
    assert schedule.poll_interval(ScheduleSection(status_poll=Duration(0.05)), 300.0) == 0.2  # floor


def test_status_poll_is_a_checked_schedule_key(tmp_path: Path) -> None:
    from posagent.config.errors import ConfigError
    from posagent.config.loader import validate

    cfg = validate({"schedule": {"status_poll": "15s"}}, str(tmp_path / "c.toml"))
    assert cfg.schedule.status_poll == 15.0
    assert validate({}, str(tmp_path / "c.toml")).schedule.status_poll == 10.0
    assert validate({"schedule": {"status_poll": "200ms"}}, str(tmp_path / "c.toml")).schedule.status_poll == 0.2
    with pytest.raises(ConfigError) as e:
        validate({"schedule": {"status_poll": "100ms"}}, str(tmp_path / "c.toml"))
    assert "schedule.status_poll" in str(e.value.problems)


def test_a_catch_up_after_a_boot_waits_the_startup_delay() -> None:
    boot = at(2027, 3, 1, 9, 15)
    plan = schedule.plan_selftest(boot, SCHED, "SH-0042", at(2027, 2, 27, 3, 5), at(2027, 1, 1), TZ)
    assert plan.trigger == "catch-up" and plan.at == boot
    delay = schedule.startup_delay(SCHED, random.Random(5))
    held = schedule.hold_back(plan, boot + dt.timedelta(seconds=delay))
    assert held.trigger == "catch-up" and held.at == boot + dt.timedelta(seconds=delay) > boot
    # with the schedule: at a random point of the jitter window after the hold, spread over it
    spread = [schedule.hold_back(plan, boot + dt.timedelta(seconds=delay), SCHED, random.Random(i)).at
              for i in range(200)]
    first, last = boot + dt.timedelta(seconds=delay), boot + dt.timedelta(seconds=delay + float(SCHED.jitter))
    assert all(first <= t <= last for t in spread)
    assert (max(spread) - min(spread)).total_seconds() > 0.8 * float(SCHED.jitter)
    # a slot later than the hold is left alone
    later = schedule.Plan(boot + dt.timedelta(hours=3), "scheduled")
    assert schedule.hold_back(later, boot + dt.timedelta(seconds=delay)) == later


def test_week_ahead_names_the_level_of_every_day() -> None:
    sched = ScheduleSection(selftest_at=dt.time(3, 0), jitter=Duration(0.0),
                            business_hours=HourRange(dt.time(2, 0), dt.time(4, 0)),
                            blackout_dates=[dt.date(2027, 3, 3)])
    days = schedule.week_ahead(at(2027, 3, 1, 9, 0), sched, "SH-0042", 7, TZ)
    assert [d.date for d in days] == [dt.date(2027, 3, 2) + dt.timedelta(days=k) for k in range(7)]  # next slot on
    assert all(d.selftest_at.hour == 3 and d.level == Level.INTERNAL for d in days)  # 03:00 is inside 02-04
    assert [d.blackout for d in days][:2] == [False, True] and "blackout date" in days[1].reason
    assert days[0].business_hours == "02:00-04:00"
