"""Each terminal's heartbeat phase: a stable function of its terminal id.

A fleet whose heartbeats are anchored at each process's start lines up whenever the
processes start together: a fleet-wide reload, a power cut ending in a whole region, a
package update. Anchored to the wall clock instead, terminal T beats at the instants
``k * interval + heartbeat_offset(T, interval)``: the same after a restart, a reload, a
boot or a clock step, and spread uniformly over the interval across a fleet (the offset
is a SHA-256 of the id, like the self-test's).
"""

from __future__ import annotations

import hashlib
import math


def heartbeat_offset(terminal_id: str, interval: float) -> float:
    """Seconds in [0, interval): the same for one terminal id, uniform over a fleet."""
    if interval <= 0:
        return 0.0
    digest = hashlib.sha256(b"posagent.heartbeat:" + terminal_id.encode("utf-8")).digest()
    offset = int.from_bytes(digest[:8], "big") / 2.0**64 * interval
    # the top few of 2**64 values round to 1.0 as a float: keep the promise of "< interval"
    return min(offset, math.nextafter(interval, 0.0))


def next_beat(now: float, interval: float, offset: float) -> float:
    """The first instant ``k * interval + offset`` strictly after ``now`` (seconds since
    the epoch in, seconds since the epoch out)."""
    k = math.floor((now - offset) / interval) + 1
    beat = k * interval + offset
    return beat if beat > now else beat + interval
