"""Printer consumables counters, persisted in the state dir as ``printer-<name>.json``.

No ESC/POS status byte reports the ribbon of an impact printer, and none reports how much
paper is left beyond near-end, so the agent counts what it prints itself:

- ``ribbon_lines``: lines printed since the last ribbon change (impact printers; reset by
  ``posagent printer ribbon-changed NAME``);
- ``paper_mm``: printed length since the last paper-end event (thermal printers);
- ``lines_total`` / ``cuts_total``: lifetime counts through this agent.

The same file remembers what the printer said to ``GS I`` when it was last asked
(``identity``: the answers, or none for a model that ignores ``GS I``, and when), so a
status read or a heartbeat can carry ``model``/``firmware`` without asking again.

Every update is a read-modify-write under an ``flock`` on a lock file beside the JSON, and
the JSON is replaced atomically (temp file, fsync, rename), so the daemon and the CLI
never lose each other's changes and a power cut leaves the old or the new file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from posagent.core.statefile import give_to_dir_owner, read_json, state_path, write_json

log = logging.getLogger("posagent.drivers.escpos")

SCHEMA = 1
DAYS_KEPT = 30  # days of daily paper (and line) usage kept for the forecast
_ID_STRING_MAX = 80
_WRITE_ERRORS: dict[str, str] = {}  # state file -> the last error logged: each is logged once per process


@dataclass
class Counters:
    ribbon_lines: int = 0
    ribbon_changed_at: str | None = None
    paper_mm: float = 0.0
    paper_end_at: str | None = None
    paper_end_active: bool = False
    lines_total: int = 0
    cuts_total: int = 0
    #: paper printed per local day ("2026-12-05" -> mm), the last DAYS_KEPT days: the usage
    #: the forecast of the roll's end is made from (escpos.forecast)
    daily_mm: dict[str, float] = field(default_factory=dict)
    #: lines printed per local day, the last DAYS_KEPT days: the ribbon's forecast (impact printers)
    daily_lines: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any) -> Counters:
        """Tolerant load: unknown keys and wrong types fall back to defaults."""
        out = cls()
        if not isinstance(raw, dict):
            return out
        for f in fields(cls):
            value = raw.get(f.name)
            default = getattr(out, f.name)
            if isinstance(default, dict):
                ok = isinstance(value, dict) and all(
                    isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                    for k, v in value.items())
                if ok and isinstance(value, dict):
                    value = {k: float(v) for k, v in value.items()}
            elif isinstance(default, bool):
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


@dataclass(frozen=True)
class IdentityMemo:
    """The ``GS I`` answers when last asked (n -> value); both empty: the printer ignored it."""

    ids: dict[int, int]
    strings: dict[int, str]
    asked_unix: float  # wall clock: it is compared across processes

    @property
    def answered(self) -> bool:
        return bool(self.ids or self.strings)

    def age(self, now: float) -> float:
        """Seconds since it was asked; infinite when the clock went back (ask again)."""
        age = now - self.asked_unix
        return age if age >= 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        return {"asked_at": dt.datetime.fromtimestamp(self.asked_unix).astimezone().isoformat(timespec="seconds"),
                "asked_unix": round(self.asked_unix, 3), "ids": {str(n): v for n, v in sorted(self.ids.items())},
                "strings": {str(n): v for n, v in sorted(self.strings.items())}}

    @classmethod
    def from_json(cls, raw: Any) -> IdentityMemo | None:
        """Strict load: anything malformed is forgotten (the printer is asked again)."""
        if not isinstance(raw, dict):
            return None
        when, ids, strings = raw.get("asked_unix"), raw.get("ids"), raw.get("strings")
        if not isinstance(when, int | float) or isinstance(when, bool) or not math.isfinite(when) \
                or not isinstance(ids, dict) or not isinstance(strings, dict):
            return None
        try:
            out_ids = {int(n): v for n, v in ids.items()}
            out_strings = {int(n): v for n, v in strings.items()}
        except ValueError:
            return None
        if any(not 1 <= n <= 255 or not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255
               for n, v in out_ids.items()):
            return None
        if any(not 1 <= n <= 255 or not isinstance(v, str) or len(v) > _ID_STRING_MAX or not v.isprintable()
               for n, v in out_strings.items()):
            return None
        return cls(out_ids, out_strings, float(when))


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def counter_path(state_dir: str, device_name: str) -> str:
    return state_path(state_dir, "printer", device_name)


class CounterStore:
    """One printer's counters file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        return read_json(self.path)  # absent or corrupt: start over rather than fail the printer

    def read(self) -> Counters:
        return Counters.from_json(self._load())

    def read_state(self) -> tuple[Counters, IdentityMemo | None]:
        """The counters and the remembered identity, from one read of the file."""
        raw = self._load()
        return Counters.from_json(raw), IdentityMemo.from_json(raw.get("identity"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        give_to_dir_owner([self.path + ".lock"], os.path.dirname(self.path) or ".")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, c: Counters, memo: IdentityMemo | None) -> None:
        data: dict[str, Any] = {"schema": SCHEMA, **asdict(c)}
        if memo is not None:
            data["identity"] = memo.to_json()
        write_json(self.path, data, indent=1)

    def update(self, change: Callable[[Counters], bool]) -> Counters:
        """Apply ``change`` under the lock; write only when it returns True. Raises OSError."""
        with self._locked():
            c, memo = self.read_state()
            if change(c):
                self._write(c, memo)
            return c

    def remember_identity(self, memo: IdentityMemo) -> None:
        """Store what GS I gave, keeping the counters. Raises OSError."""
        with self._locked():
            self._write(self.read(), memo)

    # -- the events ------------------------------------------------------------
    def add_printed(self, lines: int, mm: float, cuts: int) -> Counters:
        def change(c: Counters) -> bool:
            c.ribbon_lines += lines
            c.lines_total += lines
            c.cuts_total += cuts
            c.paper_mm = round(c.paper_mm + mm, 1)
            today = dt.date.today().isoformat()
            c.daily_mm[today] = round(c.daily_mm.get(today, 0.0) + mm, 1)
            c.daily_lines[today] = c.daily_lines.get(today, 0.0) + lines
            for daily in (c.daily_mm, c.daily_lines):
                for day in sorted(daily)[:-DAYS_KEPT]:
                    del daily[day]
            return True

        return self.update(change)

    def paper_state(self, paper_end: bool) -> Counters:
        """Record the paper sensor; a new paper-end event restarts the paper count."""

        current = self.read()
        if current.paper_end_active == paper_end:
            return current  # nothing to record: no lock, no write (the common case, every status)

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


class PrinterState:
    """The driver's side of its state file: the counters, the identity the file remembers
    (``memo``, refreshed by every read), and updates whose failure is logged once per
    process and error, not per call (a read-only state dir must not flood the journal)."""

    def __init__(self, store: CounterStore | None, where: str) -> None:
        self.store = store
        self.where = where
        self.memo: IdentityMemo | None = None  # GS I as remembered in the state file

    def counters(self) -> Counters | None:
        """The counters, and (as a side effect) the identity the state file remembers."""
        if self.store is None:
            return None
        counters, self.memo = self.store.read_state()
        return counters

    def update(self, change: Callable[[CounterStore], object]) -> None:
        """Update the state file; a failure is logged once per process and error."""
        store = self.store
        if store is None:
            return
        try:
            change(store)
        except OSError as e:
            if _WRITE_ERRORS.get(store.path) != str(e):
                _WRITE_ERRORS[store.path] = str(e)
                log.warning("%s: cannot update %s: %s (logged once; counters and identity are not kept "
                            "while it cannot be written)", self.where, store.path, e)
