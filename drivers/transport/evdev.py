"""Linux input devices: the raw ``struct input_event`` seam, device lookup through
python-evdev, key names, and US-layout keystroke decoding for keyboard-wedge readers.

The seam: ``EventReader`` reads 24-byte ``struct input_event`` records (native ``llHHi``)
from any file descriptor, exactly as read(2) returns them from ``/dev/input/eventN``; it
keeps partial records across reads and handles SYN_DROPPED (drop events up to the next
SYN_REPORT, then tell the consumer to re-read the key state). Real devices give it the fd
of python-evdev's ``InputDevice``; the simulator gives it the read end of a pipe.

``open_device`` is the ``evdev:`` opener of the transport seam (``transport.open``);
``sim://keypad`` devices come from the ``sim:`` opener. python-evdev is imported only
inside the functions that need it (the real hardware path).
"""

from __future__ import annotations

import errno
import math
import os
import select
import struct
from typing import Any, NamedTuple, Protocol

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound

EVENT = struct.Struct("llHHi")
EVENT_SIZE = EVENT.size  # 24 on 64-bit Linux, 16 on 32-bit user space

EV_SYN, EV_KEY, EV_MSC, EV_REP = 0, 1, 4, 20
SYN_REPORT, SYN_DROPPED = 0, 3
MSC_SCAN = 4
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = 0, 1, 2


class InputEvent(NamedTuple):
    time: float  # seconds, from the record's timeval
    type: int
    code: int
    value: int


def pack_event(t: float, type_: int, code: int, value: int) -> bytes:
    sec = int(t)
    return EVENT.pack(sec, round((t - sec) * 1_000_000), type_, code, value)


# -- key names -------------------------------------------------------------------
_ROWS = {
    2: "1 2 3 4 5 6 7 8 9 0 MINUS EQUAL BACKSPACE TAB Q W E R T Y U I O P LEFTBRACE RIGHTBRACE ENTER LEFTCTRL "
       "A S D F G H J K L SEMICOLON APOSTROPHE GRAVE LEFTSHIFT BACKSLASH Z X C V B N M COMMA DOT SLASH RIGHTSHIFT "
       "KPASTERISK LEFTALT SPACE CAPSLOCK F1 F2 F3 F4 F5 F6 F7 F8 F9 F10 NUMLOCK SCROLLLOCK KP7 KP8 KP9 KPMINUS "
       "KP4 KP5 KP6 KPPLUS KP1 KP2 KP3 KP0 KPDOT",
    87: "F11 F12",
    96: "KPENTER RIGHTCTRL KPSLASH",
    111: "DELETE",
    117: "KPEQUAL",
    121: "KPCOMMA",
    183: "F13 F14 F15 F16 F17 F18 F19 F20 F21 F22 F23 F24",
    355: "CLEAR",
}
KEYS: dict[str, int] = {"KEY_ESC": 1}
for _first, _names in _ROWS.items():
    for _i, _n in enumerate(_names.split()):
        KEYS["KEY_" + _n] = _first + _i
_NAMES = {code: name for name, code in KEYS.items()}


def key_code(name: str) -> int:
    """The code of a key name like KEY_KP7 (built-in table, then python-evdev's)."""
    name = name.strip().upper()
    if not name.startswith(("KEY_", "BTN_")):
        name = "KEY_" + name
    if name in KEYS:
        return KEYS[name]
    try:
        from evdev import ecodes  # deferred: python-evdev only for names beyond the built-in table

        code = ecodes.ecodes[name]
    except (ImportError, KeyError):
        raise ValueError(f"unknown key name '{name}' (write it like KEY_KP7 or KEY_F1)") from None
    return int(code)


def key_name(code: int) -> str:
    if code in _NAMES:
        return _NAMES[code]
    try:
        from evdev import ecodes  # deferred: python-evdev only for codes beyond the built-in table

        name = ecodes.KEY.get(code) or ecodes.BTN.get(code)
    except ImportError:
        name = None
    if isinstance(name, list | tuple):
        name = name[0]
    return str(name) if name else f"KEY_{code}"


# -- the seam --------------------------------------------------------------------
class EventReader:
    """``struct input_event`` records from a file descriptor, with a deadline per read.

    ``read()`` returns the complete events that arrived (keeping a partial record for the
    next call), ``[]`` when nothing came in time, raises EOFError when the writer closed
    (a pipe) and DeviceIOError when the device went away (ENODEV). After SYN_DROPPED it
    drops events through the next SYN_REPORT and then returns one event
    ``(t, EV_SYN, SYN_DROPPED, 0)`` so the consumer re-reads the key state. Consumed
    bytes are zeroed: a wedge reader's records encode card data.
    """

    def __init__(self, fd: int, record_size: int = EVENT_SIZE) -> None:
        self.fd = fd
        self._buf = bytearray(max(4096, record_size * 64))
        self._have = 0
        self._dropping = False
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN | select.POLLPRI)
        self.dropped_reports = 0

    def read(self, timeout: float) -> list[InputEvent]:
        if not self._poll.poll(max(0, math.ceil(timeout * 1000))):
            return []
        view = memoryview(self._buf)
        try:
            n = os.readv(self.fd, [view[self._have:]])
        except BlockingIOError:
            return []
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.EIO, errno.EBADF):
                raise DeviceIOError(f"input device went away ({os.strerror(e.errno)})",
                                    measurements={"reason": "gone"}) from None
            raise DeviceIOError(f"reading the input device failed: {os.strerror(e.errno or 0)}",
                                measurements={"reason": "read_failed"}) from None
        if n == 0:
            raise EOFError("input closed")
        self._have += n
        whole = self._have - self._have % EVENT_SIZE
        events: list[InputEvent] = []
        for off in range(0, whole, EVENT_SIZE):
            sec, usec, type_, code, value = EVENT.unpack_from(self._buf, off)
            ev = InputEvent(sec + usec / 1_000_000, type_, code, value)
            if self._dropping:
                if type_ == EV_SYN and code == SYN_REPORT:
                    self._dropping = False
                    events.append(InputEvent(ev.time, EV_SYN, SYN_DROPPED, 0))
                continue
            if type_ == EV_SYN and code == SYN_DROPPED:
                self._dropping = True
                self.dropped_reports += 1
                continue
            events.append(ev)
        rest = self._have - whole
        view[:rest] = view[whole:self._have]
        view[rest:self._have] = bytes(self._have - rest)
        self._have = rest
        return events

    def wipe(self) -> None:
        self._buf[:] = bytes(len(self._buf))
        self._have = 0


# -- devices ---------------------------------------------------------------------
class KeyDevice(Protocol):
    """What the keypad and wedge code need from an input device (real or simulated)."""

    name: str
    path: str

    def fileno(self) -> int: ...
    def key_capabilities(self) -> set[int]: ...
    def active_keys(self) -> set[int]: ...
    def grab(self) -> None: ...
    def ungrab(self) -> None: ...
    def close(self) -> None: ...


class EvdevDevice:
    """A real /dev/input/eventN node through python-evdev."""

    def __init__(self, dev: Any) -> None:
        self._dev = dev
        self.name = str(dev.name)
        self.path = str(dev.path)
        self._grabbed = False

    def fileno(self) -> int:
        return int(self._dev.fd)

    def key_capabilities(self) -> set[int]:
        try:
            caps = self._dev.capabilities(verbose=False, absinfo=False)
        except OSError as e:
            raise DeviceIOError(f"{self.path}: cannot read capabilities ({e.strerror or e})",
                                measurements={"path": self.path, "reason": "read_failed"}) from None
        return {int(c) for c in caps.get(EV_KEY, [])}

    def active_keys(self) -> set[int]:
        try:
            return {int(c) for c in self._dev.active_keys()}
        except OSError as e:
            raise DeviceIOError(f"{self.path}: device stopped answering ({e.strerror or e})",
                                measurements={"path": self.path, "reason": "no_answer"}) from None

    def grab(self) -> None:
        try:
            self._dev.grab()
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise DeviceError(f"{self.path} is grabbed by another program", code="KEYPAD_BUSY",
                                  measurements={"path": self.path}) from None
            raise DeviceIOError(f"{self.path}: grab failed ({e.strerror or e})",
                                measurements={"path": self.path, "reason": "grab_failed"}) from None
        self._grabbed = True

    def ungrab(self) -> None:
        if not self._grabbed:
            return
        self._grabbed = False
        try:
            self._dev.ungrab()
        except OSError:
            pass  # device gone: nothing left to release

    def close(self) -> None:
        self.ungrab()
        try:
            self._dev.close()
        except Exception:
            pass


def open_device(url: DeviceURL, not_found_code: str = "KEYPAD_NOT_PRESENT", **_: Any) -> KeyDevice:
    """The ``evdev:`` opener: the input device the URL names (by path, or by ``?name=``)."""
    try:
        import evdev  # deferred: python-evdev (C extension) only on the real hardware path
    except ImportError as e:
        raise DeviceError(f"python-evdev is not installed ({e})", code="DRIVER_UNAVAILABLE",
                          measurements={"package": "python-evdev", "install": "pip install evdev"}) from None
    if url.path:
        return EvdevDevice(_input_device(evdev, url.path, not_found_code))
    wanted = str(url.params.get("name", ""))
    paths = evdev.list_devices(writable=False)
    exact: Any = None
    partial: Any = None
    for path in paths:
        try:
            dev = evdev.InputDevice(path)
        except OSError:
            continue  # vanished or unreadable meanwhile
        if exact is None and dev.name == wanted:
            exact = dev
        elif partial is None and wanted.lower() in str(dev.name).lower():
            partial = dev
        else:
            dev.close()
    chosen = exact or partial
    for other in (exact, partial):
        if other is not None and other is not chosen:
            other.close()
    if chosen is None:
        raise DeviceNotFound(f"no input device named '{wanted}' among {len(paths)} readable device(s)",
                             code=not_found_code, measurements={"input_name": wanted, "reason": "no_such_name"})
    return EvdevDevice(chosen)


def _input_device(evdev: Any, path: str, not_found_code: str) -> Any:
    try:
        return evdev.InputDevice(path)
    except FileNotFoundError:
        raise DeviceNotFound(f"{path} does not exist (keypad unplugged?)", code=not_found_code,
                             measurements={"path": path, "reason": "absent"}) from None
    except PermissionError:
        raise DeviceError(f"no access to {path} (add the posagent user to group input)",
                          code="DEVICE_PERMISSION_DENIED", measurements={"path": path, "group": "input"}) from None
    except OSError as e:
        raise DeviceIOError(f"cannot open {path}: {e.strerror or e}",
                            measurements={"path": path, "reason": "open_failed"}) from None


# -- keyboard-wedge text (US layout) -------------------------------------------------
_SHIFTED = dict(zip("1234567890-=[];'`\\,./", "!@#$%^&*()_+{}:\"~|<>?", strict=True))
_PUNCT = {"MINUS": "-", "EQUAL": "=", "LEFTBRACE": "[", "RIGHTBRACE": "]", "SEMICOLON": ";",
          "APOSTROPHE": "'", "GRAVE": "`", "BACKSLASH": "\\", "COMMA": ",", "DOT": ".", "SLASH": "/",
          "SPACE": " "}
#: key code -> (character, character with shift)
KEYMAP: dict[int, tuple[int, int]] = {}
for _name, _code in KEYS.items():
    _k = _name[4:]
    _ch = _k.lower() if len(_k) == 1 else _PUNCT.get(_k, _k[2:] if _k.startswith("KP") and len(_k) == 3 else "")
    if len(_ch) == 1:
        _up = _SHIFTED.get(_ch, _ch.upper())
        KEYMAP[_code] = (ord(_ch), ord(_up) if not _k.startswith("KP") else ord(_ch))
CHAR_KEYS: dict[int, tuple[int, bool]] = {}
for _code, (_lo, _hi) in sorted(KEYMAP.items(), reverse=True):  # main-keyboard codes win over KP
    CHAR_KEYS[_lo] = (_code, False)
    if _hi != _lo:
        CHAR_KEYS[_hi] = (_code, True)
SHIFT_KEYS = (KEYS["KEY_LEFTSHIFT"], KEYS["KEY_RIGHTSHIFT"])
ENTER_KEYS = (KEYS["KEY_ENTER"], KEYS["KEY_KPENTER"])


class WedgeDecoder:
    """Turns a keyboard-wedge reader's key events into ASCII in a caller's bytearray."""

    def __init__(self, out: bytearray) -> None:
        self.out = out
        self.length = 0
        self.done = False  # Enter seen: the reader finished the swipe
        self._shift = 0

    def feed(self, ev: InputEvent) -> None:
        if ev.type != EV_KEY or self.done:
            return
        if ev.code in SHIFT_KEYS:
            self._shift += 1 if ev.value == KEY_PRESS else (-1 if ev.value == KEY_RELEASE else 0)
            self._shift = max(0, self._shift)
            return
        if ev.value != KEY_PRESS:
            return
        if ev.code in ENTER_KEYS:
            self.done = True
            return
        chars = KEYMAP.get(ev.code)
        if chars is not None and self.length < len(self.out):
            self.out[self.length] = chars[1] if self._shift else chars[0]
            self.length += 1
