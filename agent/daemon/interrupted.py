"""A self-test the agent did not live to finish (a crash, a power cut, a kill midway).

A marker file in the state dir is written when a self-test starts and removed when its
report is committed; found at the next start, it is reported once (the event
SELFTEST_INTERRUPTED) and removed. The self-test is not run again that day: the schedule
stamped the day when the test started (``schedule.record_run``), so a test that crashes
the agent does not crash it again at every restart.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os

from posagent.core.base import Result
from posagent.core.statefile import read_json, write_atomic

log = logging.getLogger(__name__)

MARKER = "selftest.running"


def _path(state_dir: str) -> str:
    return os.path.join(state_dir, MARKER)


def begin(state_dir: str, trigger: str, level: str, now: dt.datetime) -> None:
    """A self-test starts: leave the marker (never raises: a read-only state dir only
    costs the report of an interruption)."""
    text = json.dumps({"started_at": now.isoformat(timespec="seconds"), "trigger": trigger, "level": level}) + "\n"
    try:
        write_atomic(_path(state_dir), text, mode=0o600)
    except OSError as e:
        log.debug("self-test marker not written: %s", e)


def end(state_dir: str) -> None:
    """The self-test's report is committed: remove the marker."""
    try:
        os.unlink(_path(state_dir))
    except FileNotFoundError:
        pass
    except OSError as e:
        log.debug("self-test marker not removed: %s", e)


def take(state_dir: str) -> Result | None:
    """What a marker left by the previous run says, as the event to report (once: the
    marker is removed); None when the last self-test finished."""
    path = _path(state_dir)
    if not os.path.exists(path):
        return None
    found = read_json(path)
    end(state_dir)
    facts = {k: str(found.get(k, ""))[:40] for k in ("started_at", "trigger", "level")}
    log.warning("the last self-test did not finish (started %s): the agent stopped during it; "
                "it is not run again today", facts.get("started_at") or "at an unknown time")
    return Result.warn("SELFTEST_INTERRUPTED",
                       f"the last self-test did not finish (started {facts.get('started_at') or '?'})",
                       facts={**facts, "reason": "interrupted"})
