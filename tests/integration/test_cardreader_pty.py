"""The card-reader driver over real pseudo-terminals against the reader simulator: a
healthy echo passes, NAK / bad LRC / silence / garbage are named, the vendor profiles'
version commands work, and loopback-plug mode verifies bytes and reports throughput."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.core.base import CheckContext, Result, Status
from posagent.drivers.cardreader import CardReaderDriver
from posagent.drivers.cardreader.frames import PROFILES, decode
from posagent.drivers.cardreader.sim import CardReaderSim
from posagent.selftest.runner import call_with_timeout
from tests.conftest import DriverBuilder, run_cli


@pytest.fixture
def make(build_driver: DriverBuilder) -> Callable[..., CardReaderDriver]:
    """make(url, **options) -> a CardReaderDriver built through the config loader."""
    return build_driver.maker(CardReaderDriver, "reader", "card-reader", timeout="8s")


@pytest.fixture
def sim() -> Iterator[Any]:
    """sim(**knobs) -> (simulator, serial URL of its pty); stopped at the end."""
    handles = []

    def start(**knobs: Any) -> tuple[CardReaderSim, str]:
        s = CardReaderSim(**knobs)
        h = s.start()
        handles.append(h)
        assert h.url.startswith("serial:///dev/pts/")
        return s, h.url

    yield start
    for h in handles:
        h.stop()


def run_check(driver: CardReaderDriver, name: str) -> Result:
    check = next(c for c in driver.checks() if c.name == name)
    timeout = check.timeout or driver.timeout
    ctx = CheckContext(deadline=time.monotonic() + timeout)
    return call_with_timeout(lambda: check.run(ctx), timeout, name)


def echo_frames(s: CardReaderSim) -> list[bytes]:
    p = PROFILES["generic-len"]
    out, data = [], bytes(s.received)
    while data:
        n = data[1] + 4
        out.append(decode(data[:n], p))
        data = data[n:]
    return out


def test_healthy_echo_passes_with_random_payload_each_run(make: Any, sim: Any) -> None:
    s, url = sim()
    driver = make(url)
    first, second = run_check(driver, "echo"), run_check(driver, "echo")
    for r in (first, second):
        assert (r.status, r.code) == (Status.OK, "READER_OK"), r
        assert r.measurements["tries"] == 1 and r.measurements["echo_bytes"] == 8
        assert r.measurements["reply_ms"] > 0
    payloads = echo_frames(s)
    assert len(payloads) == 2 and payloads[0] != payloads[1]
    assert all(p.startswith(b"E") and len(p) == 9 for p in payloads)


def test_nak_once_is_retried(make: Any, sim: Any) -> None:
    _, url = sim(nak_once=True)
    r = run_check(make(url), "echo")
    assert (r.status, r.code) == (Status.OK, "READER_OK")
    assert r.measurements["naks"] == 1 and r.measurements["tries"] == 2
    assert "after 1 NAK" in r.message


def test_nak_every_try_fails(make: Any, sim: Any) -> None:
    s, url = sim(nak_always=True)
    r = run_check(make(url, retries_on_nak=2), "echo")
    assert (r.status, r.code) == (Status.FAIL, "READER_NAK")
    assert "all 3 tries" in r.message and s.frames == 3


def test_bad_lrc_is_named(make: Any, sim: Any) -> None:
    _, url = sim(bad_lrc=True)
    r = run_check(make(url), "echo")
    assert (r.status, r.code) == (Status.FAIL, "READER_BAD_CHECKSUM")


def test_silence_is_unknown_after_one_resend(make: Any, sim: Any) -> None:
    s, url = sim(no_answer=True)
    r = run_check(make(url, reply_timeout="200ms"), "echo")
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_NO_RESPONSE")
    assert s.frames == 2  # sent, silence, resent once, silence


def test_garbage_is_a_protocol_error(make: Any, sim: Any) -> None:
    _, url = sim(garbage=True)
    r = run_check(make(url), "echo")
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_PROTOCOL_ERROR")


def test_slow_reader_within_and_beyond_the_timeout(make: Any, sim: Any) -> None:
    _, url = sim(latency_ms=60)
    r = run_check(make(url, reply_timeout="2s"), "echo")
    assert r.status == Status.OK and r.measurements["reply_ms"] >= 60
    _, url = sim(latency_ms=400)
    r = run_check(make(url, reply_timeout="100ms", command="echo"), "echo")
    assert r.code == "READER_NO_RESPONSE"


def test_link_dropped_mid_exchange(make: Any, sim: Any) -> None:
    _, url = sim(drop_after_bytes=3)
    r = run_check(make(url, reply_timeout="300ms"), "echo")
    assert (r.status, r.code) == (Status.UNKNOWN, "DEVICE_IO_ERROR"), r


@pytest.mark.parametrize("profile", ["idtech", "star"])
def test_vendor_profiles_version_command(make: Any, sim: Any, profile: str) -> None:
    s, url = sim(profile=profile, version="ACME MSR 2.1")
    r = run_check(make(url, profile=profile), "echo")
    assert (r.status, r.code) == (Status.OK, "READER_OK"), r
    assert r.fields["firmware"] == "ACME MSR 2.1"
    sent = {"idtech": "0252220371", "star": "0258035b"}[profile]  # protocols.md section 4
    assert bytes(s.received).hex() == sent


def test_profile_mismatch_is_nak(make: Any, sim: Any) -> None:
    _, url = sim(profile="star")  # the reader speaks Star framing, the config says generic-len
    r = run_check(make(url), "echo")
    assert (r.status, r.code) == (Status.FAIL, "READER_NAK")


def test_sim_url_carries_overridden_framing(make: Any) -> None:
    driver = make("sim://card-reader", profile="idtech", command="echo", echo_command="45 43", length_byte=True)
    r = run_check(driver, "echo")
    assert (r.status, r.code) == (Status.OK, "READER_OK"), r


def test_unplugged_port_is_not_present(make: Any, tmp_path: Path) -> None:
    r = run_check(make(f"serial://{tmp_path}/ttyUSB9"), "echo")
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_NOT_PRESENT")


# -- loopback plug ----------------------------------------------------------------------
def test_loopback_verifies_bytes_and_reports_throughput(make: Any, sim: Any) -> None:
    s, url = sim(loopback=True)
    driver = make(url + "?baudrate=115200", loopback_plug=True, loopback_bytes=4096, loopback_block=256)
    assert [c.name for c in driver.checks()] == ["loopback"]
    r = run_check(driver, "loopback")
    assert (r.status, r.code) == (Status.OK, "READER_LOOPBACK_OK"), r
    m = r.measurements
    assert m["bytes_checked"] == 4096 and m["byte_errors"] == 0
    assert m["throughput_bytes_per_s"] > 0 and m["wire_limit_bytes_per_s"] == 11520.0
    assert m["baudrate"] == 115200 and m["wire_efficiency_pct"] > 0
    assert len(s.received) == 4096
    assert "11520 B/s at 115200 baud" in r.message


def test_loopback_corruption_is_counted(make: Any, sim: Any) -> None:
    _, url = sim(loopback=True, garbage=True)
    r = run_check(make(url, loopback_plug=True, loopback_bytes=512), "loopback")
    assert (r.status, r.code) == (Status.FAIL, "READER_LOOPBACK_ERRORS")
    assert r.measurements["byte_errors"] > 0


def test_loopback_without_a_plug_is_unknown(make: Any, sim: Any) -> None:
    _, url = sim(loopback=True, no_answer=True)
    r = run_check(make(url, loopback_plug=True, loopback_bytes=256), "loopback")
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_NO_RESPONSE")
    assert r.measurements["bytes_checked"] == 0


def test_status_uses_the_same_exchange(make: Any, sim: Any) -> None:
    _, url = sim()
    assert make(url).status().code == "READER_OK"
    _, url = sim(loopback=True)
    r = make(url, loopback_plug=True).status()
    assert r.code == "READER_LOOPBACK_OK" and r.measurements["bytes_checked"] == 64


def test_cli_names_the_fault(write_config: Any) -> None:
    cfg = write_config('[[device]]\nname = "reader"\ndriver = "card-reader"\n'
                       'url = "sim://card-reader?nak_always=true"\n')
    proc = run_cli("selftest", "--config", str(cfg), "--json", "--level", "internal")
    assert proc.returncode == 2, proc.stderr
    check = json.loads(proc.stdout)["checks"][0]
    assert (check["status"], check["code"]) == ("fail", "READER_NAK")
    assert check["hint"]


def test_reader_unplugged_between_checks(make: Any) -> None:
    s = CardReaderSim()
    handle = s.start()
    driver = make(handle.url)
    try:
        assert run_check(driver, "echo").code == "READER_OK"
    finally:
        handle.stop()  # the pty goes away, as a USB-serial adapter pulled out
    r = run_check(driver, "echo")  # the old link fails, one reopen finds nothing
    assert (r.status, r.code) == (Status.UNKNOWN, "READER_NOT_PRESENT"), r
