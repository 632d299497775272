"""When the paper roll will run out: the consumables forecast of a thermal printer.

ESC/POS reports paper only as "near end" (a sensor a few metres before the core) and
"end". The counters know how much was printed since the last paper end (a new roll), so
with the roll's length the remaining share follows; the usage per day, an exponentially
weighted average over the days the counters kept (recent days weigh most: a shop's
trade changes with the season), says how many days that is.

- ``roll_length_m``: the roll's length; 0 takes the typical roll for the paper width:
  80 mm paper is sold as 80 m rolls (80 mm x 80 m, the roll the Epson TM-T88 class takes
  in its 83 mm holder), 57/58 mm paper as 40 m rolls (57 x 40, the common small roll).
  Set it when the site buys another size.
- The near-end sensor calibrates: while it is on, the roll is near its end whatever the
  count says (at most NEAR_END_PCT left).
- Today's printing so far counts only once it is beyond the average (``usage_per_day``).
- Without a roll length or without usage, the figures are None (null), never 0.

Ribbon (impact printers) the same way: the ribbon's rated life in lines
(``ribbon_life_lines``) less the lines printed since the last ribbon change, at the
weighted lines per day (``daily_lines``), gives ``ribbon_days_left``; None without a rated
life or without usage on record.
"""

from __future__ import annotations

import datetime as dt

#: The share of the roll left when the near-end sensor trips, at most (it sits a few
#: metres before the core: about 5-10 % of an 80 m roll).
NEAR_END_PCT = 10.0
#: Weight of the newest day in the usage average.
ALPHA = 0.3


def roll_length_mm(roll_length_m: float, paper_width_mm: float) -> float:
    """The configured roll length, else the typical one for the width (module doc)."""
    if roll_length_m > 0:
        return roll_length_m * 1000.0
    return 80_000.0 if paper_width_mm >= 70 else 40_000.0


def remaining_pct(used_mm: float, roll_mm: float, near_end: bool) -> float:
    """The share of the roll left, 0-100; capped at NEAR_END_PCT while near-end is on."""
    left = max(0.0, 100.0 * (1.0 - used_mm / roll_mm)) if roll_mm > 0 else 0.0
    if near_end:
        left = min(left, NEAR_END_PCT)
    return round(left, 1)


def usage_per_day(daily_mm: dict[str, float], today: dt.date) -> float | None:
    """Paper used per day (mm; or lines, for the ribbon), weighted to recent days, from the
    first day on record through yesterday (days without printing count as 0). Today is not
    over: what it printed so far is only a lower bound of its use, so it counts only once it
    is beyond the average (a busy day shows at once; a morning does not make the roll last
    longer, which made days-left jump every morning and fall through the day). On the first
    day on record, today so far is all there is. None without any record."""
    days = sorted(d for d in daily_mm if d <= today.isoformat())
    if not days:
        return None
    try:
        day = dt.date.fromisoformat(days[0])
    except ValueError:
        return None
    average: float | None = None
    for _ in range(400):  # bounded: the counters keep 30 days
        if day >= today:
            break
        used = daily_mm.get(day.isoformat(), 0.0)
        average = used if average is None else ALPHA * used + (1 - ALPHA) * average
        day += dt.timedelta(days=1)
    so_far = daily_mm.get(today.isoformat(), 0.0)
    if average is None:
        return so_far
    return ALPHA * so_far + (1 - ALPHA) * average if so_far > average else average


def days_left(left_pct: float, roll_mm: float, per_day_mm: float | None) -> float | None:
    """Days until the roll ends at the usage per day; None when unknown."""
    if per_day_mm is None or per_day_mm <= 0:
        return None
    return round(left_pct / 100.0 * roll_mm / per_day_mm, 1)


def ribbon_days_left(ribbon_lines: int, life_lines: int, per_day_lines: float | None) -> float | None:
    """Days until the ribbon reaches its rated life at the usage per day; None when the
    life or the usage is unknown (0 only when the ribbon is already past its life)."""
    if life_lines <= 0 or per_day_lines is None or per_day_lines <= 0:
        return None
    return round(max(0, life_lines - ribbon_lines) / per_day_lines, 1)
