"""The daemon loop's wake-up (core/waker.py): an Event's meaning, and safe to set from a
signal handler that interrupts the main thread anywhere, even inside clear() or wait()."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from posagent.core.waker import Waker


def test_set_clear_wait_mean_what_an_events_do() -> None:
    w = Waker()
    assert not w.wait(0)
    w.set()
    assert w.wait(0) and w.wait(0)  # it stays set
    w.clear()
    assert not w.wait(0.01)
    for _ in range(200_000):  # more than the pipe holds: set() never blocks, one clear() drains
        w.set()
    assert w.wait(0)
    w.clear()
    assert not w.wait(0)


def test_another_thread_wakes_a_waiter() -> None:
    w = Waker()
    go = threading.Event()

    def later() -> None:
        go.wait(5.0)
        w.set()

    t = threading.Thread(target=later, daemon=True)
    t.start()
    began = time.monotonic()
    go.set()
    assert w.wait(30.0)  # woken, not timed out
    assert time.monotonic() - began < 30.0
    t.join(5.0)


# A signal every half millisecond, its handler setting the waker, while the main thread
# clears and waits as the daemon's loop does. With a threading.Event in its place this
# hangs (the handler waits for the Event's lock, which the interrupted main thread holds),
# as a daemon may on SIGTERM.
STORM = """
import signal, sys
from posagent.core.waker import Waker
w = Waker()
hits = [0]
def handler(signum, frame):
    hits[0] += 1
    w.set()
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
for _ in range(300_000):
    w.clear()
    w.wait(0)
    if hits[0] >= 400:
        break
signal.setitimer(signal.ITIMER_REAL, 0)
print(hits[0])
"""


def test_a_signal_handler_may_set_it_while_the_main_thread_clears_and_waits() -> None:
    proc = subprocess.run([sys.executable, "-c", STORM], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) >= 100  # the signals did come, hundreds of them, mid-loop
