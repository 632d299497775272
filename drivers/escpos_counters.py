"""Printer consumables counters, persisted in the state dir as ``printer-<name>.json``.

No ESC/POS status byte reports the ribbon of an impact printer, and none reports how much
paper is left beyond near-end, so the agent counts what it prints itself:

- ``ribbon_lines``: lines printed since the last ribbon change (impact printers; reset by
  ``posagent printer ribbon-changed NAME``);
- ``paper_mm``: printed length since the last paper-end event (thermal printers);
- ``lines_total`` / ``cuts_total``: lifetime counts through this agent.

Every update is a read-modify-write under an ``flock`` on a lock file beside the JSON, and
the JSON is replaced atomically (temp file, fsync, rename), so the daemon and the CLI
never lose each other's changes and a power cut leaves the old or the new file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEMA = 1


@dataclass
class Counters:
    ribbon_lines: int = 0
    ribbon_changed_at: str | None = None
    paper_mm: float = 0.0
    paper_end_at: str | None = None
    paper_end_active: bool = False
    lines_total: int = 0
    cuts_total: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> Counters:
        """Tolerant load: unknown keys and wrong types fall back to defaults."""
        out = cls()
        if not isinstance(raw, dict):
            return out
        for f in fields(cls):
            value = raw.get(f.name)
            default = getattr(out, f.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
                if isinstance(value, int | float):
                    value = float(value)
            else:
                ok = value is None or isinstance(value, str)
            if ok:
                setattr(out, f.name, value)
        return out


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def counter_path(state_dir: str, device_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device_name) or "printer"
    return os.path.join(state_dir, f"printer-{safe}.json")


class CounterStore:
    """One printer's counters file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> Counters:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return Counters.from_json(json.load(fh))
        except FileNotFoundError:
            return Counters()
        except (OSError, ValueError):
            return Counters()  # unreadable or corrupt: start over rather than fail the printer

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, c: Counters) -> None:
        directory = os.path.dirname(self.path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".printer-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"schema": SCHEMA, **asdict(c)}, fh, indent=1, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def update(self, change: Callable[[Counters], bool]) -> Counters:
        """Apply ``change`` under the lock; write only when it returns True. Raises OSError."""
        with self._locked():
            c = self.read()
            if change(c):
                self._write(c)
            return c

    # -- the events ------------------------------------------------------------
    def add_printed(self, lines: int, mm: float, cuts: int) -> Counters:
        def change(c: Counters) -> bool:
            c.ribbon_lines += lines
            c.lines_total += lines
            c.cuts_total += cuts
            c.paper_mm = round(c.paper_mm + mm, 1)
            return True

        return self.update(change)

    def paper_state(self, paper_end: bool) -> Counters:
        """Record the paper sensor; a new paper-end event restarts the paper count."""

        def change(c: Counters) -> bool:
            if paper_end and not c.paper_end_active:
                c.paper_end_active, c.paper_end_at, c.paper_mm = True, _now(), 0.0
                return True
            if not paper_end and c.paper_end_active:
                c.paper_end_active = False
                return True
            return False

        return self.update(change)

    def ribbon_changed(self) -> tuple[Counters, int]:
        """Reset the ribbon counter; returns the new counters and the old line count."""
        old: list[int] = []

        def change(c: Counters) -> bool:
            old.append(c.ribbon_lines)
            c.ribbon_lines, c.ribbon_changed_at = 0, _now()
            return True

        return self.update(change), old[0]


def ribbon_grade(lines: int, life_lines: int, warn_pct: float) -> tuple[str, float | None]:
    """Ribbon field (ok | near_end | end | unknown) and percent of rated life used."""
    if life_lines <= 0:
        return "unknown", None
    pct = round(100.0 * lines / life_lines, 1)
    if pct >= 100.0:
        return "end", pct
    if pct >= warn_pct:
        return "near_end", pct
    return "ok", pct
