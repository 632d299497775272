"""Power-cycle hygiene: each boot of the box, whether the agent stopped cleanly before it
went down, and how long the box was off.

Field practice: after switching a POS off, wait at least a minute before switching it on,
and do not cycle it often (each cycle stresses the power supply, the disk and the
printer's mechanism, and a fast cycle can leave the UPS or the printer half-reset). The
agent keeps ``power.json`` in its state dir, one entry per boot of the box (the kernel's
boot id), newest last:

    boot_id     the kernel's boot id (/proc/sys/kernel/random/boot_id)
    booted_at   when that boot started (the clock at the agent's start minus the uptime)
    last_alive  the agent's last sign of life in it (start, every heartbeat, stop)
    clean       whether the agent's last run in that boot ended with a clean stop

From it: ``boots_24h`` (boots that started in the last 24 h, this one included),
``unclean_shutdowns_24h`` (earlier boots whose agent never stopped cleanly: the power was
cut, or the box crashed, within the last 24 h) and ``last_off_s``, the time between the
previous boot's last sign of life and this boot's start. That figure is an upper bound:
the box may have run up to one heartbeat interval after the last heartbeat before it went
off (a clean stop is exact), and the RTC's drift over the off time is in it too. Tests
fake earlier boots by writing ``power.json`` into the state dir.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from posagent.core.logonce import ok, warn_once
from posagent.core.statefile import read_json, write_atomic

log = logging.getLogger(__name__)

POWER_FILE = "power.json"
KEEP_BOOTS = 100
DAY = 86400.0


@dataclass
class Boot:
    boot_id: str
    booted_at: float  # seconds since the epoch
    last_alive: float
    clean: bool = False


@dataclass(frozen=True)
class PowerSummary:
    boots_24h: int
    unclean_shutdowns_24h: int
    last_off_s: float | None  # None: no earlier boot known

    def fields(self) -> dict[str, Any]:
        return {"boots_24h": self.boots_24h, "unclean_shutdowns_24h": self.unclean_shutdowns_24h,
                "last_off_s": self.last_off_s}


def _path(state_dir: str) -> str:
    return f"{state_dir.rstrip('/')}/{POWER_FILE}"


def load(state_dir: str) -> list[Boot]:
    """The boots the state dir remembers, oldest first; entries that do not parse are left out."""
    raw = read_json(_path(state_dir)).get("boots")
    boots: list[Boot] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            boots.append(Boot(str(item["boot_id"]), float(item["booted_at"]), float(item["last_alive"]),
                              bool(item.get("clean", False))))
        except (KeyError, TypeError, ValueError):
            continue
    return boots


def _save(state_dir: str, boots: list[Boot]) -> None:
    try:
        write_atomic(_path(state_dir), json.dumps({"schema": 1, "boots": [asdict(b) for b in boots[-KEEP_BOOTS:]]},
                                                  indent=1), mode=0o600)
    except OSError as e:
        warn_once(log, "power.save", "power-cycle record not kept: %s", e)
    else:
        ok(log, "power.save")


def record_start(state_dir: str, boot_id: str | None, now: float, uptime_s: float) -> None:
    """The agent starts: a new boot is added; a restart in the same boot marks it running."""
    boots = load(state_dir)
    bid = boot_id or f"unknown-{int(now - uptime_s)}"
    if boots and boots[-1].boot_id == bid:
        boots[-1].clean, boots[-1].last_alive = False, now
    else:
        boots.append(Boot(bid, now - uptime_s, now, False))
    _save(state_dir, boots)


def record_alive(state_dir: str, now: float) -> None:
    """A sign of life (a heartbeat) in the current boot."""
    boots = load(state_dir)
    if boots:
        boots[-1].last_alive = max(boots[-1].last_alive, now)
        _save(state_dir, boots)


def record_stop(state_dir: str, now: float) -> None:
    """The agent stops cleanly (SIGTERM: a shutdown, or systemctl stop)."""
    boots = load(state_dir)
    if boots:
        boots[-1].last_alive, boots[-1].clean = max(boots[-1].last_alive, now), True
        _save(state_dir, boots)


def summary(boots: list[Boot], now: float) -> PowerSummary:
    """The figures of the current (last) boot; see the module doc."""
    since = now - DAY
    recent = [b for b in boots if b.booted_at >= since]
    earlier = boots[:-1]
    unclean = sum(1 for b in earlier if not b.clean and b.last_alive >= since)
    last_off = None
    if len(boots) >= 2:
        last_off = round(max(0.0, boots[-1].booted_at - boots[-2].last_alive), 1)
    return PowerSummary(len(recent), unclean, last_off)
