"""Key lists and the interactive key scan of a POS keypad (pure logic over input events).

A key in the config is a label from ``LABELS`` ("7", "enter", "clear" ...), an evdev key
name ("KEY_F1"), or ``label=KEY_A|KEY_B`` naming the codes a keypad sends for it (a
"00" key has no standard code: write ``00=KEY_...``). A label is satisfied by any of its
codes: numeric keypads send KEY_KP0-9, keypads that emulate a main keyboard KEY_0-9.

The scan grades, from the events' own timestamps:

    dead      never pressed during the scan
    stuck     held or autorepeating longer than ``stuck_after``, or still down at the end
    bounce    pressed again within ``debounce`` of its previous press (one touch, two presses)
    wrong     a code that belongs to no key in the list (asked for one key, got another code)
    skipped   the technician skipped it (not tested, no verdict)
"""

from __future__ import annotations

import math
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from posagent.core.i18n import _
from posagent.drivers.transport.evdev import (
    EV_KEY,
    EV_SYN,
    KEY_PRESS,
    KEY_RELEASE,
    KEY_REPEAT,
    SYN_DROPPED,
    EventReader,
    InputEvent,
    key_code,
    key_name,
)

LABELS: dict[str, tuple[str, ...]] = {
    **{str(d): (f"KEY_KP{d}", f"KEY_{d}") for d in range(10)},
    "dot": ("KEY_KPDOT", "KEY_DOT"),
    "enter": ("KEY_KPENTER", "KEY_ENTER"),
    "cancel": ("KEY_ESC",),
    "clear": ("KEY_CLEAR", "KEY_DELETE"),
    "backspace": ("KEY_BACKSPACE",),
    "plus": ("KEY_KPPLUS",),
    "minus": ("KEY_KPMINUS", "KEY_MINUS"),
    "star": ("KEY_KPASTERISK",),
    "slash": ("KEY_KPSLASH", "KEY_SLASH"),
    "tab": ("KEY_TAB",),
    "numlock": ("KEY_NUMLOCK",),
    **{f"f{n}": (f"KEY_F{n}",) for n in range(1, 25)},
}
DEFAULT_KEYS = [*(str(d) for d in range(10)), "dot", "enter", "cancel", "clear", "backspace"]


@dataclass(frozen=True)
class KeySpec:
    label: str
    codes: tuple[int, ...]


def parse_key(text: str) -> KeySpec:
    raw = text.strip()
    if "=" in raw:
        label, _, names = raw.partition("=")
        label = label.strip()
        if not label or not names.strip():
            raise ValueError(f"key '{raw}': write it as label=KEY_NAME (e.g. 00=KEY_F13)")
        return KeySpec(label, tuple(key_code(n) for n in names.split("|") if n.strip()))
    if raw.lower() in LABELS:
        return KeySpec(raw.lower(), tuple(key_code(n) for n in LABELS[raw.lower()]))
    if raw == "00":
        raise ValueError("key '00' has no standard code: write 00=KEY_... with the code your keypad sends")
    if raw.upper().startswith("KEY_"):
        return KeySpec(raw.upper(), (key_code(raw),))
    raise ValueError(f"unknown key '{raw}' (labels: {', '.join(LABELS)}; or KEY_ names; or label=KEY_NAME)")


def parse_keys(items: list[str]) -> list[KeySpec]:
    specs = [parse_key(i) for i in items]
    if not specs:
        raise ValueError("the key list is empty")
    seen: set[str] = set()
    for s in specs:
        if s.label in seen:
            raise ValueError(f"key '{s.label}' is listed twice")
        seen.add(s.label)
    return specs


@dataclass
class Finding:
    kind: str  # dead | stuck | bounce | wrong | skipped
    key: str
    detail: str = ""


@dataclass
class _Key:
    spec: KeySpec
    presses: int = 0
    bounces: int = 0
    shortest_gap: float | None = None
    last_press: float | None = None
    down_since: float | None = None
    longest_hold: float = 0.0
    skipped: bool = False


@dataclass
class ScanState:
    """Feeds on input events; knows which keys were seen and how they behaved."""

    specs: list[KeySpec]
    stuck_after: float = 2.0
    debounce: float = 0.08
    asking: str = ""  # label being prompted for, to name it in a wrong-code finding
    keys: dict[str, _Key] = field(init=False)
    wrong: dict[int, str] = field(init=False, default_factory=dict)
    last_time: float = 0.0
    resyncs: int = 0

    def __post_init__(self) -> None:
        self.keys = {s.label: _Key(s) for s in self.specs}
        self._by_code: dict[int, str] = {}
        for s in self.specs:
            for c in s.codes:
                self._by_code.setdefault(c, s.label)

    def feed(self, ev: InputEvent, active: Callable[[], set[int]] | None = None) -> str | None:
        """Account for one event; returns the label of a key pressed for the first time."""
        self.last_time = max(self.last_time, ev.time)
        if ev.type == EV_SYN and ev.code == SYN_DROPPED:
            return self._resync(ev.time, active)
        if ev.type != EV_KEY:
            return None
        label = self._by_code.get(ev.code)
        if label is None:
            if ev.value == KEY_PRESS and ev.code not in self.wrong:
                self.wrong[ev.code] = self.asking
            return None
        k = self.keys[label]
        if ev.value == KEY_PRESS:
            first = k.presses == 0
            if k.last_press is not None:
                gap = ev.time - k.last_press
                if gap < self.debounce:
                    k.bounces += 1
                    k.shortest_gap = gap if k.shortest_gap is None else min(k.shortest_gap, gap)
            k.presses += 1
            k.last_press = ev.time
            k.down_since = ev.time
            return label if first else None
        if k.down_since is not None:
            k.longest_hold = max(k.longest_hold, ev.time - k.down_since)
            if ev.value == KEY_RELEASE:
                k.down_since = None
        elif ev.value == KEY_REPEAT:  # down before the scan began (or lost in SYN_DROPPED)
            k.down_since = ev.time
        return None

    def _resync(self, t: float, active: Callable[[], set[int]] | None) -> str | None:
        """After SYN_DROPPED: take the key state from the device (EVIOCGKEY)."""
        self.resyncs += 1
        held = active() if active is not None else set()
        newly = None
        for k in self.keys.values():
            down = any(c in held for c in k.spec.codes)
            if k.down_since is not None and not down:
                k.down_since = None  # released while events were lost; hold time unknown
            elif down and k.down_since is None:
                k.down_since = t
                if k.presses == 0:
                    newly = k.spec.label
                k.presses += 1
        return newly

    def done(self, label: str) -> bool:
        k = self.keys[label]
        return k.presses > 0 or k.skipped

    def any_down(self) -> bool:
        return any(k.down_since is not None for k in self.keys.values())

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for label, k in self.keys.items():
            if k.skipped and k.presses == 0:
                out.append(Finding("skipped", label))
                continue
            if k.presses == 0:
                out.append(Finding("dead", label, "never pressed"))
                continue
            if k.down_since is not None:
                out.append(Finding("stuck", label, "still down, never released"))
            elif k.longest_hold > self.stuck_after:
                out.append(Finding("stuck", label, f"held {k.longest_hold:.1f} s"))
            if k.bounces:
                gap_ms = (k.shortest_gap or 0.0) * 1000
                out.append(Finding("bounce", label, f"{k.bounces + 1} presses, {gap_ms:.0f} ms apart"))
        for code, asked in self.wrong.items():
            out.append(Finding("wrong", key_name(code), f"while asking for {asked}" if asked else ""))
        return out


@dataclass
class ScanOutcome:
    findings: list[Finding]
    aborted: bool = False
    ended: str = "complete"  # complete | timeout | input_closed | aborted
    tested: int = 0


def run_scan(reader: EventReader, state: ScanState, *, deadline: float, key_timeout: float,
             say: Callable[[str], None] | None = None, control_fd: int | None = None,
             active: Callable[[], set[int]] | None = None,
             clock: Callable[[], float] = time.monotonic) -> ScanOutcome:
    """Prompt for each key in turn (any order accepted) until every key is done, the time
    is up, the technician aborts, or the event input closes. ``control_fd`` (a terminal)
    takes "Enter" = skip the prompted key and "q Enter" = abort."""
    tell = say or (lambda _text: None)
    order = [s.label for s in state.specs]
    passed: set[str] = set()
    ended = "complete"
    current, asked_at, told_at = "", 0.0, 0.0
    poll = select.poll()
    poll.register(reader.fd, select.POLLIN | select.POLLPRI)
    if control_fd is not None:
        poll.register(control_fd, select.POLLIN)
    for _round in range(1_000_000):  # bounded; each pass waits on poll or ends the scan
        now = clock()
        todo = [lb for lb in order if not state.done(lb) and lb not in passed]
        if current and (state.done(current) or now - asked_at >= key_timeout):
            if not state.done(current):
                passed.add(current)  # out of time for this prompt; still accepted later
            current = ""
            todo = [lb for lb in order if not state.done(lb) and lb not in passed]
        if not todo:
            ended = "complete" if all(state.done(lb) for lb in order) else "timeout"
            break
        if now >= deadline:
            ended = "timeout"
            break
        if not current:
            current, asked_at, told_at = todo[0], now, now
            state.asking = current
            tell(_prompt_line(state, order, current, key_timeout, deadline - now))
        elif now - told_at >= 5.0:
            told_at = now
            tell(_prompt_line(state, order, current, key_timeout - (now - asked_at), deadline - now))
        wait = min(deadline, asked_at + key_timeout, told_at + 5.0) - now
        ready = {fd for fd, _ in poll.poll(max(0, math.ceil(wait * 1000)))}
        if control_fd is not None and control_fd in ready:
            raw = os.read(control_fd, 256)
            if not raw:  # the terminal closed: no more skip/abort commands
                poll.unregister(control_fd)
                control_fd = None
            elif raw.strip().lower() in (b"q", b"quit", b"a", b"abort"):
                ended = "aborted"
                break
            else:
                state.keys[current].skipped = True
                tell(_("Keypad: skipped [{key}]").format(key=current))
        if reader.fd in ready:
            try:
                for ev in reader.read(0):
                    state.feed(ev, active)
            except EOFError:
                ended = "input_closed"
                break
    if ended in ("complete", "timeout") and state.any_down():
        _await_releases(reader, state, min(deadline, clock() + state.stuck_after), active, clock)
    tested = sum(1 for k in state.keys.values() if k.presses)
    return ScanOutcome(state.findings(), ended == "aborted", ended, tested)


def _await_releases(reader: EventReader, state: ScanState, until: float,
                    active: Callable[[], set[int]] | None, clock: Callable[[], float]) -> None:
    """The last keys may still be going up: read until none is down or ``until``."""
    for _round in range(100_000):
        left = until - clock()
        if left <= 0 or not state.any_down():
            return
        try:
            for ev in reader.read(left):
                state.feed(ev, active)
        except EOFError:
            return


def _prompt_line(state: ScanState, order: list[str], current: str, key_left: float, total_left: float) -> str:
    done = [lb for lb in order if state.keys[lb].presses]
    return _("Keypad: press [{key}]  ({done} of {total} done: {done_keys}; {key_seconds} s for this key, "
             "{total_seconds} s in all; Enter = skip key, q Enter = abort)").format(
        key=current, done=len(done), total=len(order), done_keys=" ".join(done) or "-",
        key_seconds=f"{max(0, key_left):.0f}", total_seconds=f"{max(0, total_left):.0f}")
