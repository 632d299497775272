"""The replay cache of remote commands: every ``jti`` whose signature checked out, kept
until its command could no longer be accepted (its ``exp`` plus the clock-skew allowance).

It lives in the state dir as one small JSON object (``commands-seen.json``, mode 0600),
``{"version": 1, "seen": {jti: forget_after_epoch_s}}``, written atomically (temp file,
fsync, rename) after every new entry, so a replay is refused after an agent restart or a
power cut too. Its size is bounded (``MAX_ENTRIES``): expired entries are dropped first; a
cache full of live entries refuses new commands rather than forget one (forgetting would
let that one be replayed). A file that cannot be read starts an empty cache and says so in
the log; one that cannot be written keeps the entry in memory (still refused until the
agent restarts) and says so.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

from posagent.core.statefile import write_atomic

log = logging.getLogger(__name__)
__all__ = ["FILE_NAME", "MAX_ENTRIES", "ReplayCache"]

FILE_NAME = "commands-seen.json"
#: The most jtis kept. A command lives at most 15 min + 2 x 2 min skew: this is over four
#: commands a second for that long, far beyond what a fleet sends one terminal.
MAX_ENTRIES = 4096


class ReplayCache:
    """The jtis seen (``seen``) and recorded (``add``) in ``state_dir``."""

    def __init__(self, state_dir: str, *, clock: Callable[[], float] = time.time,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)
        self._clock = clock
        self._max = max_entries
        self.unreadable: str | None = None  # why the file could not be read (then the cache starts empty)
        self._seen: dict[str, float] = self._load()

    def _load(self) -> dict[str, float]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self.unreadable = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            log.warning("replay cache %s unreadable (%s): starting empty", os.path.basename(self.path),
                        type(e).__name__)
            return {}
        seen = raw.get("seen") if isinstance(raw, dict) else None
        if not isinstance(seen, dict):
            return {}
        now = self._clock()
        out = {k: float(v) for k, v in seen.items()
               if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > now}
        if len(out) > self._max:  # a file written with a larger bound: keep the longest-lived
            out = dict(sorted(out.items(), key=lambda kv: kv[1])[-self._max:])
        return out

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, jti: str) -> bool:
        """True if ``jti`` was recorded and its command could still be accepted."""
        until = self._seen.get(jti)
        return until is not None and until > self._clock()

    def full(self) -> bool:
        """True if no new jti can be recorded (after expired ones are dropped)."""
        self._prune()
        return len(self._seen) >= self._max

    def add(self, jti: str, forget_after: float) -> bool:
        """Record ``jti`` until ``forget_after`` (epoch seconds); False if the cache is full
        of live entries (the caller refuses the command). Persisted at once."""
        self._prune()
        if jti not in self._seen and len(self._seen) >= self._max:
            return False
        self._seen[jti] = max(forget_after, self._seen.get(jti, 0.0))
        self._save()
        return True

    def _prune(self) -> None:
        now = self._clock()
        if any(until <= now for until in self._seen.values()):
            self._seen = {k: v for k, v in self._seen.items() if v > now}

    def _save(self) -> None:
        text = json.dumps({"version": 1, "seen": self._seen}, sort_keys=True, separators=(",", ":"))
        try:
            write_atomic(self.path, text + "\n", mode=0o600)
        except OSError as e:
            log.error("replay cache %s not written (%s): the commands seen are kept in memory only",
                      os.path.basename(self.path), e.strerror or type(e).__name__)
