"""``sim://keypad``: a POS keypad that writes raw ``struct input_event`` records into a pipe.

This machine class has no /dev/input and no /dev/uinput, so the simulator feeds the
driver's event seam (evdev_io.EventReader) with the exact binary records a kernel event
device returns from read(2). The device it offers (``device(handle)``) stands in for
python-evdev's InputDevice: name, key capabilities, held keys (EVIOCGKEY), grab.

Grabbing it is "the technician starts pressing keys": it writes the scripted key
sequence (each key of the keypad pressed once, in order, timestamps 350 ms apart) into a
fresh pipe and closes it. Knobs:

    keys         comma-separated labels the keypad has (default: the standard POS set)
    layout       kp (KEY_KP0-9, KEY_KPENTER, KEY_KPDOT) or main (KEY_0-9, KEY_ENTER, KEY_DOT)
    name         the device name
    missing      keys absent from its capabilities (internal check: KEYPAD_MISSING_KEYS)
    dead         keys that send nothing during the scan
    stuck        a key that goes down, autorepeats for 3 s and never comes up (also held now)
    bounce       a key whose press comes out as two presses 12 ms apart
    wrong        a key that sends KEY_F24 instead of its own code
    syn_dropped  the kernel buffer overflows once mid-scan (SYN_DROPPED)
    swipe        type a test card's tracks like a keyboard-wedge card reader, then Enter
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from posagent.drivers.cardreader.sim import TEST_CARDS
from posagent.drivers.keypad.keyscan import DEFAULT_KEYS, LABELS, parse_key
from posagent.drivers.simulator import KnobSpec, SimHandle, Simulator
from posagent.drivers.transport.evdev import (
    CHAR_KEYS,
    EV_KEY,
    EV_MSC,
    EV_SYN,
    KEY_PRESS,
    KEY_RELEASE,
    KEY_REPEAT,
    KEYS,
    MSC_SCAN,
    SYN_DROPPED,
    SYN_REPORT,
    pack_event,
)


def _labels(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class KeypadSim(Simulator):
    family = "keypad"
    knobs: ClassVar[dict[str, KnobSpec]] = {
        "keys": KnobSpec(str, "", help="comma-separated key labels (default: standard POS keypad)"),
        "layout": KnobSpec(str, "kp", ("kp", "main"), "numeric-keypad or main-keyboard codes"),
        "name": KnobSpec(str, "POSAGENT Sim Keypad", help="device name"),
        "missing": KnobSpec(str, "", help="keys absent from the capabilities"),
        "dead": KnobSpec(str, "", help="keys that never send anything"),
        "stuck": KnobSpec(str, "", help="key held down, never released"),
        "bounce": KnobSpec(str, "", help="key that bounces (double press)"),
        "wrong": KnobSpec(str, "", help="key that sends KEY_F24 instead"),
        "syn_dropped": KnobSpec(bool, False, help="one SYN_DROPPED mid-scan"),
        "swipe": KnobSpec(str, "none", (*TEST_CARDS, "none"), "type a test card like a wedge reader"),
    }

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.labels = _labels(self.k["keys"]) or list(DEFAULT_KEYS)
        for group in ("keys", "missing", "dead", "stuck", "bounce", "wrong"):
            for label in _labels(self.k[group]):
                if label not in LABELS:
                    raise ValueError(f"knob {group}: unknown key '{label}' (labels: {', '.join(LABELS)})")
        self.grabs = 0

    def code(self, label: str) -> int:
        names = LABELS[label]
        if self.k["layout"] == "main" and len(names) > 1:
            return KEYS.get(names[1]) or parse_key(label).codes[-1]
        return parse_key(label).codes[0]

    def capabilities(self) -> set[int]:
        missing = set(_labels(self.k["missing"]))
        caps = {self.code(lb) for lb in self.labels if lb not in missing}
        if self.k["swipe"] != "none":
            caps |= {code for code, _ in CHAR_KEYS.values()} | {KEYS["KEY_LEFTSHIFT"], KEYS["KEY_ENTER"]}
        return caps

    def held(self) -> set[int]:
        return {self.code(lb) for lb in _labels(self.k["stuck"])}

    # -- the script ------------------------------------------------------------
    def script(self, t0: float | None = None) -> bytes:
        """The records a technician's key presses (or a wedge swipe) produce."""
        t = time.time() if t0 is None else t0
        out = bytearray()

        def ev(dt: float, type_: int, code: int, value: int) -> None:
            out.extend(pack_event(t + dt, type_, code, value))

        def key(dt: float, code: int, value: int) -> None:
            if value == KEY_PRESS:
                ev(dt, EV_MSC, MSC_SCAN, 0x70000 + code)
            ev(dt, EV_KEY, code, value)
            ev(dt, EV_SYN, SYN_REPORT, 0)

        if self.k["swipe"] != "none":
            return self._typed(TEST_CARDS[self.k["swipe"]], t)
        dead, stuck = set(_labels(self.k["dead"])), set(_labels(self.k["stuck"]))
        bounce, wrong = set(_labels(self.k["bounce"])), set(_labels(self.k["wrong"]))
        for i, label in enumerate(self.labels):
            if self.k["syn_dropped"] and i == 3:
                # Overflow: the kernel drops a press and reports SYN_DROPPED; the release
                # after the resync is of a key the reader never saw go down.
                ev(0.0, EV_SYN, SYN_DROPPED, 0)
                ev(0.0, EV_KEY, self.code(label), KEY_PRESS)
                ev(0.0, EV_SYN, SYN_REPORT, 0)
                key(0.05, self.code(label), KEY_RELEASE)
                t += 0.2
            if label in dead:
                continue
            code = KEYS["KEY_F24"] if label in wrong else self.code(label)
            key(0.0, code, KEY_PRESS)
            if label in stuck:
                for r in range(90):  # autorepeat from 500 ms, every 33 ms: 3.5 s held
                    key(0.5 + r * 0.033, code, KEY_REPEAT)
                t += 3.6
            elif label in bounce:
                key(0.004, code, KEY_RELEASE)
                key(0.012, code, KEY_PRESS)
                key(0.09, code, KEY_RELEASE)
            else:
                key(0.09, code, KEY_RELEASE)
            t += 0.35
        return bytes(out)

    def _typed(self, text: bytes, t: float) -> bytes:
        out = bytearray()
        shift = KEYS["KEY_LEFTSHIFT"]
        for i, ch in enumerate(text):
            code, shifted = CHAR_KEYS[ch]
            at = t + i * 0.008
            if shifted:
                out += pack_event(at, EV_KEY, shift, KEY_PRESS)
            out += pack_event(at, EV_KEY, code, KEY_PRESS) + pack_event(at, EV_SYN, SYN_REPORT, 0)
            out += pack_event(at + 0.002, EV_KEY, code, KEY_RELEASE)
            if shifted:
                out += pack_event(at + 0.002, EV_KEY, shift, KEY_RELEASE)
            out += pack_event(at + 0.002, EV_SYN, SYN_REPORT, 0)
        end = t + len(text) * 0.008
        out += pack_event(end, EV_KEY, KEYS["KEY_ENTER"], KEY_PRESS) + pack_event(end, EV_SYN, SYN_REPORT, 0)
        out += pack_event(end, EV_KEY, KEYS["KEY_ENTER"], KEY_RELEASE) + pack_event(end, EV_SYN, SYN_REPORT, 0)
        return bytes(out)

    # -- running ---------------------------------------------------------------
    def start(self) -> SimHandle:
        return SimHandle(self, "pipe:sim-keypad (in-process only: use sim://keypad URLs)", lambda: None)

    def device(self, handle: SimHandle) -> SimKeyDevice:
        return SimKeyDevice(self, handle)


class SimKeyDevice:
    """The simulated keypad as the driver sees an input device (see evdev_io.KeyDevice)."""

    #: A pipe holds 64 KiB on Linux; a script fits, so it is written whole without a thread.
    MAX_SCRIPT = 60_000

    def __init__(self, sim: KeypadSim, handle: SimHandle | None = None) -> None:
        self.sim = sim
        self.handle = handle
        self.name = sim.k["name"]
        self.path = "sim://keypad"
        self._rfd, wfd = os.pipe()
        self._wfd: int | None = wfd  # kept open until grabbed: no events, no EOF
        self.grabbed = False

    def fileno(self) -> int:
        return self._rfd

    def key_capabilities(self) -> set[int]:
        return self.sim.capabilities()

    def active_keys(self) -> set[int]:
        return self.sim.held()

    def grab(self) -> None:
        """The technician starts pressing keys: the whole script goes into a fresh pipe,
        which is then closed (the reader sees EOF after the last record)."""
        data = self.sim.script()
        if len(data) > self.MAX_SCRIPT:
            raise ValueError(f"simulated key script of {len(data)} bytes exceeds a pipe's capacity")
        self._close_pipe()
        self._rfd, wfd = os.pipe()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(wfd, view):]
        finally:
            os.close(wfd)
        self.grabbed = True
        self.sim.grabs += 1

    def ungrab(self) -> None:
        self.grabbed = False

    def _close_pipe(self) -> None:
        for fd in (self._rfd, self._wfd):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd, self._wfd = -1, None

    def close(self) -> None:
        self._close_pipe()
        if self.handle is not None:
            self.handle.stop()
