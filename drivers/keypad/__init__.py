"""Driver ``evdev-keypad``: a USB/PS2 numeric POS keypad seen as a Linux input device.

URL: ``evdev:///dev/input/by-id/usb-XYZ-event-kbd`` (by path), ``evdev://?name=Keypad``
(by name, exact first, else case-insensitive substring, among the readable devices), or
``sim://keypad?...`` (the simulator's event pipe).

- status (heartbeat): present, and no key held down (EVIOCGKEY). A key down at the first
  look (a one-shot ``posagent status``) is KEYPAD_KEY_HELD (warn) at once, and stays so
  while it is down; a key held across status calls ``stuck_after`` apart is
  KEYPAD_KEY_STUCK. Either names the key.
- internal check ``keys``: present; capabilities include every configured key
  (KEYPAD_MISSING_KEYS); a key down right now must come up within ``stuck_after``.
- interactive check ``scan``: grabs the device (key presses do not reach the POS
  application), prompts for each key in turn with a countdown, accepts them in any
  order, and reports dead, stuck and bouncing keys and codes outside the key list; the
  grab is released on every exit path.

Codes: KEYPAD_OK, KEYPAD_NOT_PRESENT (unknown), KEYPAD_MISSING_KEYS, KEYPAD_KEY_STUCK,
KEYPAD_KEY_DEAD (fail), KEYPAD_KEY_HELD, KEYPAD_KEY_BOUNCE, KEYPAD_KEY_WRONG_CODE (warn), KEYPAD_BUSY,
KEYPAD_SCAN_SKIPPED, KEYPAD_SCAN_ABORTED (unknown), KEYPAD_SCAN_INCOMPLETE (warn).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from posagent.core.base import Check, CheckContext, Driver, Level, Result, Status
from posagent.core.errors import DeviceIOError
from posagent.core.i18n import _
from posagent.core.values import Duration
from posagent.drivers import transport
from posagent.drivers.keypad.codes import CODES
from posagent.drivers.keypad.keyscan import DEFAULT_KEYS, KeySpec, ScanOutcome, ScanState, parse_keys, run_scan
from posagent.drivers.transport.evdev import EventReader, KeyDevice, key_name


@dataclass(frozen=True)
class KeypadOptions:
    keys: list[str] = field(default_factory=lambda: list(DEFAULT_KEYS))
    stuck_after: Duration = Duration(2.0)  # a key down longer than this is stuck
    debounce: Duration = Duration(0.08)  # a second press sooner than this is a bounce
    key_timeout: Duration = Duration(15.0)  # per prompted key in the scan
    scan_timeout: Duration = Duration(180.0)  # the whole scan
    grab: bool = True  # exclusive access during the scan

    def __post_init__(self) -> None:
        parse_keys(self.keys)
        if not 0.1 <= self.stuck_after <= 60:
            raise ValueError("stuck_after must be between 100ms and 60s")
        if not 0.001 <= self.debounce <= 1.0:
            raise ValueError("debounce must be between 1ms and 1s")
        if not 1 <= self.key_timeout <= self.scan_timeout:
            raise ValueError("key_timeout must be at least 1s and at most scan_timeout")


_FINDING_CODES = {"stuck": ("KEYPAD_KEY_STUCK", Status.FAIL), "dead": ("KEYPAD_KEY_DEAD", Status.FAIL),
                  "bounce": ("KEYPAD_KEY_BOUNCE", Status.WARN), "wrong": ("KEYPAD_KEY_WRONG_CODE", Status.WARN),
                  "skipped": ("KEYPAD_SCAN_INCOMPLETE", Status.WARN)}
_FINDING_WORDS = {"stuck": "stuck", "dead": "dead", "bounce": "bouncing", "wrong": "unexpected code",
                  "skipped": "skipped"}


#: Python modules this driver needs, per URL scheme (Driver.needs).
NEEDS = {"evdev": ("evdev", "python-evdev", "pip install evdev (Debian: apt-get install python3-evdev)")}


class KeypadDriver(Driver):
    name = "evdev-keypad"
    family = "keypad"
    description = "numeric POS keypad (Linux evdev): keys present, stuck keys, interactive key scan"
    schemes = ("evdev", "sim")
    shares = ("guest",)  # read without a grab; the interactive scan grabs only while it runs
    needs = NEEDS
    sim_family = "keypad"
    url_example = "evdev://?name=POS Keypad"
    Options = KeypadOptions
    codes = CODES

    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        self._specs: list[KeySpec] = parse_keys(self.options.keys)
        self._dev: KeyDevice | None = None
        self._held_since: dict[int, float] = {}
        self._first_look: float | None = None  # when status() first read the held keys
        self._clock = time.monotonic  # status() compares held keys across calls by this clock

    # -- device ----------------------------------------------------------------
    def _device(self) -> KeyDevice:
        if self._dev is None:
            assert self.device.url is not None
            self._dev = transport.open(self.device.url, kind="input", not_found_code="KEYPAD_NOT_PRESENT")
        return self._dev

    def _drop_device(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None:
            dev.close()

    def _held(self, dev: KeyDevice) -> set[int]:
        try:
            return dev.active_keys()
        except DeviceIOError:
            self._drop_device()
            raise

    def _label(self, code: int) -> str:
        for s in self._specs:
            if code in s.codes:
                return s.label
        return key_name(code)

    # -- status ----------------------------------------------------------------
    def status(self) -> Result:
        dev = self._device()
        held = self._held(dev)
        now = self._clock()
        self._held_since = {c: self._held_since.get(c, now) for c in held}
        first = self._first_look = now if self._first_look is None else self._first_look
        stuck = sorted(c for c, since in self._held_since.items() if now - since >= self.options.stuck_after)
        fields = {"model": dev.name}
        if stuck:
            names = ", ".join(self._label(c) for c in stuck)
            return Result.fail("KEYPAD_KEY_STUCK", f"key {names} held down for over "
                               f"{now - min(self._held_since[c] for c in stuck):.0f} s",
                               measurements={"stuck_keys": names}, fields=fields)
        # Down since the first look: a one-shot status cannot wait stuck_after to tell a
        # press from a stuck key, so it says what it sees. Keys pressed later are typing.
        held_now = sorted(c for c, since in self._held_since.items() if since == first)
        if held_now:
            names = ", ".join(self._label(c) for c in held_now)
            return Result.warn("KEYPAD_KEY_HELD", f"key {names} is held down right now (stuck if it is still "
                               f"down {self.options.stuck_after:g} s after it was first seen)",
                               measurements={"held_keys": names}, fields=fields)
        return Result.ok("KEYPAD_OK", f"{dev.name} present", fields=fields)

    def checks(self) -> list[Check]:
        opts: KeypadOptions = self.options
        return [
            Check("keys", Level.INTERNAL, self._check_keys, "device present, every key reported, none stuck",
                  timeout=max(self.timeout, opts.stuck_after + 3.0)),
            Check("scan", Level.INTERACTIVE, self._check_scan, "press every key once",
                  timeout=opts.scan_timeout + opts.stuck_after + 10.0),
        ]

    # -- internal --------------------------------------------------------------
    def _check_keys(self, ctx: CheckContext) -> Result:
        dev = self._device()
        caps = dev.key_capabilities()
        missing = [s.label for s in self._specs if not caps.intersection(s.codes)]
        m: dict[str, Any] = {"keys_expected": len(self._specs), "keys_reported": len(self._specs) - len(missing)}
        fields = {"model": dev.name}
        stuck = self._still_down(dev, ctx)
        if stuck:
            names = ", ".join(self._label(c) for c in sorted(stuck))
            m["stuck_keys"] = names
            return Result.fail("KEYPAD_KEY_STUCK", f"key {names} stayed down for over {self.options.stuck_after:g} s",
                               measurements=m, fields=fields)
        if missing:
            m["missing_keys"] = " ".join(missing)
            return Result.fail("KEYPAD_MISSING_KEYS", f"{dev.name} does not report key(s): {', '.join(missing)}",
                               measurements=m, fields=fields)
        return Result.ok("KEYPAD_OK", f"{dev.name}: all {len(self._specs)} keys reported, none held",
                         measurements=m, fields=fields)

    def _still_down(self, dev: KeyDevice, ctx: CheckContext) -> set[int]:
        """Keys down now that do not come up within ``stuck_after`` (reads with a deadline)."""
        held = self._held(dev)
        if not held:
            return set()
        reader = EventReader(dev.fileno())
        until = time.monotonic() + min(self.options.stuck_after, max(0.0, ctx.remaining() - 0.5))
        for _round in range(100_000):
            left = until - time.monotonic()
            if left <= 0:
                break
            try:
                reader.read(left)
            except EOFError:
                break
            held &= self._held(dev)
            if not held:
                break
        return held

    # -- interactive -----------------------------------------------------------
    def _check_scan(self, ctx: CheckContext) -> Result:
        opts: KeypadOptions = self.options
        dev = self._device()
        if ctx.prompt is not None:
            answer = ctx.prompt(_("Keypad {name}: press every key once when asked. Enter = start, s = skip:")
                                .format(name=dev.name))
            if answer.strip().lower() in ("s", "skip"):
                return Result.unknown("KEYPAD_SCAN_SKIPPED", "key scan skipped by the technician")
        control = 0 if ctx.prompt is not None and _stdin_is_terminal() else None
        state = ScanState(self._specs, stuck_after=opts.stuck_after, debounce=opts.debounce)
        deadline = time.monotonic() + min(opts.scan_timeout, max(1.0, ctx.remaining() - opts.stuck_after - 1.0))
        _drain(dev)
        if opts.grab:
            dev.grab()
        try:
            reader = EventReader(dev.fileno())
            outcome = run_scan(reader, state, deadline=deadline, key_timeout=opts.key_timeout, say=ctx.say,
                               control_fd=control, active=dev.active_keys)
        except DeviceIOError:
            self._drop_device()
            raise
        finally:
            if opts.grab and self._dev is not None:
                dev.ungrab()
        return self._scan_result(outcome)

    def _scan_result(self, outcome: ScanOutcome) -> Result:
        n = len(self._specs)
        m: dict[str, Any] = {"keys_expected": n, "keys_pressed": outcome.tested}
        groups: dict[str, list[str]] = {}
        for f in outcome.findings:
            groups.setdefault(f.kind, []).append(f"{f.key} ({f.detail})" if f.detail else f.key)
            m.setdefault(f"{f.kind}_keys", "")
            m[f"{f.kind}_keys"] = (m[f"{f.kind}_keys"] + " " + f.key).strip()
        detail = "; ".join(f"{_FINDING_WORDS[k]}: {', '.join(v)}" for k, v in groups.items())
        if outcome.aborted:
            return Result.unknown("KEYPAD_SCAN_ABORTED", f"scan aborted after {outcome.tested} of {n} keys"
                                  + (f"; so far {detail}" if detail else ""), measurements=m)
        if not groups:
            return Result.ok("KEYPAD_OK", f"all {n} keys pressed once, none stuck or bouncing", measurements=m)
        worst = max(groups, key=lambda k: (_FINDING_CODES[k][1], -list(_FINDING_CODES).index(k)))
        code, status = _FINDING_CODES[worst]
        return Result(status, code, f"{outcome.tested} of {n} keys pressed; {detail}", measurements=m)

    def close(self) -> None:
        try:
            self._drop_device()
        except Exception:
            pass


def _drain(dev: KeyDevice) -> None:
    """Forget events queued before the scan (normal typing since the device was opened)."""
    reader = EventReader(dev.fileno())
    for _round in range(1000):
        try:
            if not reader.read(0):
                return
        except EOFError:
            return


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False
