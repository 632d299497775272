"""The wall clock of a process under test, stepped by the test (``tests/faults``).

Put on ``PYTHONPATH`` with ``POSAGENT_TEST_CLOCK_FILE`` naming a file that holds a number
of seconds: ``time.time()`` and ``datetime.datetime.now()`` of that process read the real
clock plus that offset, read afresh on every call, so the test steps the clock of a running
agent by rewriting the file, as NTP steps CLOCK_REALTIME. The clocks that cannot step
(``time.monotonic()``, CLOCK_BOOTTIME) are left alone, as they are on a real terminal.
(libfaketime does the same from C, but with it Python's waits fail with EINVAL.)
"""

from __future__ import annotations

import datetime as _dt
import os
import time as _time

_FILE = os.environ.get("POSAGENT_TEST_CLOCK_FILE")

if _FILE:
    _real_time = _time.time

    def _offset() -> float:
        try:
            with open(_FILE, encoding="ascii") as fh:
                return float(fh.read().strip() or 0.0)
        except (OSError, ValueError):
            return 0.0

    def _fake_time() -> float:
        return _real_time() + _offset()

    def _fake_time_ns() -> int:
        return int(_fake_time() * 1e9)

    _time.time = _fake_time
    _time.time_ns = _fake_time_ns

    class _SteppedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:  # type: ignore[override]
            return _dt.datetime.fromtimestamp(_fake_time(), tz)

    _dt.datetime = _SteppedDatetime  # type: ignore[misc]
