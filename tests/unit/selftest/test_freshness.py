"""A busy device keeps its last fresh reading until stale_after (selftest/freshness.py)."""

from __future__ import annotations

from posagent.core.base import Result
from posagent.core.status import Status
from posagent.selftest.freshness import Freshness

OK = Result.ok("PRINTER_OK", "ready", fields={"paper": "ok"}, measurements={"status_ms": 1.5})
BUSY = Result.unknown("DEVICE_BUSY", "Busy: /dev/ttyS0 is locked by another program (flock)",
                      facts={"path": "/dev/ttyS0", "reason": "flock"})


def test_a_fresh_reading_passes_unchanged() -> None:
    f = Freshness()
    assert f.apply("receipt", OK, 600, now=0.0) is OK


def test_busy_keeps_the_last_reading_with_its_age() -> None:
    f = Freshness()
    f.apply("receipt", OK, 600, now=100.0)
    r = f.apply("receipt", BUSY, 600, now=130.0)
    assert (r.status, r.code, r.message) == (Status.OK, "PRINTER_OK", "ready")
    assert r.fields == {"paper": "ok", "busy": True, "status_age_s": 30.0}
    assert r.measurements == {"status_ms": 1.5}


def test_busy_past_stale_after_is_unknown_device_busy() -> None:
    f = Freshness()
    f.apply("receipt", OK, 60, now=0.0)
    r = f.apply("receipt", BUSY, 60, now=61.0)
    assert (r.status, r.code) == (Status.UNKNOWN, "DEVICE_BUSY")
    assert r.fields == {"paper": "ok", "busy": True, "status_age_s": 61.0}
    assert "last reading 61 s ago" in r.message


def test_busy_with_nothing_known_is_unknown_and_never_fail() -> None:
    r = Freshness().apply("receipt", BUSY, 600, now=5.0)
    assert (r.status, r.code) == (Status.UNKNOWN, "DEVICE_BUSY")
    assert r.fields == {"busy": True, "status_age_s": None}


def test_devices_are_kept_apart_and_a_fresh_reading_ends_the_busy_spell() -> None:
    f = Freshness()
    f.apply("receipt", OK, 600, now=0.0)
    assert f.apply("reader", BUSY, 600, now=1.0).code == "DEVICE_BUSY"
    f.apply("receipt", BUSY, 600, now=2.0)
    assert f.apply("receipt", OK, 600, now=3.0) is OK
    assert f.apply("receipt", BUSY, 600, now=4.0).fields["status_age_s"] == 1.0
