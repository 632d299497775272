"""A wake-up a signal handler may give: the daemon's main loop waits on it.

Why not ``threading.Event``: ``Event.set()`` takes the Event's lock, and a Python signal
handler runs in the main thread between any two bytecodes, also while the main thread
itself holds that very lock (inside ``clear()`` or ``wait()``). ``set()`` then waits for
a lock its own thread holds: the daemon hangs on SIGTERM or SIGHUP, until systemd kills
it. Rare (a few bytecodes a loop turn), but a fleet sends a lot of signals; a daemon in
this project's test suite once did not stop on SIGTERM, and a signal storm against an
Event hangs every time (tests/unit/core/test_waker.py).

``Waker`` is the self-pipe of C daemons instead: ``set()`` writes a byte without taking
any lock (a full pipe is already set), ``clear()`` drains it, ``wait()`` polls the read
end. Other threads use it the same way. Same meaning as an Event's set/clear/wait. The
pipe is closed when the last reference goes (a daemon's lifetime).
"""

from __future__ import annotations

import os
import select

#: Bytes read per drain; a drain reads until the pipe is empty, at most this many rounds
#: (the pipe holds 64 KiB on Linux, so a few rounds always empty it).
_CHUNK = 4096
_ROUNDS = 64


class Waker:
    __slots__ = ("_poll", "_r", "_w")

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._r, select.POLLIN)

    def set(self) -> None:
        """Wake the waiter (safe in a signal handler: one write(2), no lock)."""
        try:
            os.write(self._w, b"\0")
        except BlockingIOError:  # full: already set
            pass
        except OSError:  # closed: nobody waits any more
            pass

    def clear(self) -> None:
        for _ in range(_ROUNDS):
            try:
                if len(os.read(self._r, _CHUNK)) < _CHUNK:
                    return
            except (BlockingIOError, OSError):
                return

    def wait(self, timeout: float | None = None) -> bool:
        """True when set (now or within ``timeout`` seconds; None: however long); it stays set."""
        ms = None if timeout is None else max(0, int(timeout * 1000.0 + 0.999))
        return bool(self._poll.poll(ms))

    def __del__(self) -> None:
        # Only here, never while anyone holds it: an abandoned thread's late set() must not
        # write into a file that reused a closed descriptor's number.
        self._close()

    def _close(self) -> None:
        for fd in (getattr(self, "_r", -1), getattr(self, "_w", -1)):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
