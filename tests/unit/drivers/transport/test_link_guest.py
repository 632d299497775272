"""A guest Link (share = "guest"): nothing held between exchanges, the simulator kept
running between opens, a busy device waited for only when asked to. Real ptys, a real
process holding flock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from posagent.config.urls import parse_url
from posagent.core.errors import DeviceBusy
from posagent.drivers.simulator import start_sim
from posagent.drivers.transport.link import Link

EOT1 = b"\x10\x04\x01"


def ask(s: object) -> bytes:
    s.write(EOT1)  # type: ignore[attr-defined]
    return s.read_exact(1, 1.0)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POSAGENT_LOCK_DIR", str(tmp_path))
    return tmp_path


def test_a_guest_holds_nothing_between_exchanges_and_keeps_the_sim() -> None:
    link = Link(parse_url("sim://escpos"), where="printer", share="guest")
    try:
        assert link.exchange(ask)[0] & 0x93 == 0x12  # a DLE EOT reply
        assert link.stream is None
        sims = [h.sim for h in link._keep.values()]
        link.exchange(ask)
        assert [h.sim for h in link._keep.values()] == sims and len(sims) == 1  # one device all along
        assert sims[0].realtime_queries >= 2
        assert link.opens >= 2 and link.held_s > 0
    finally:
        link.close()
    assert not link._keep


def test_an_owner_keeps_its_stream() -> None:
    link = Link(parse_url("sim://escpos"), where="printer", share="owner")
    try:
        link.exchange(ask)
        assert link.stream is not None
        link.exchange(ask)
        assert link.opens == 1
    finally:
        link.close()


def test_busy_is_raised_at_once_or_waited_for() -> None:
    handle = start_sim("escpos", {})
    path = handle.url.removeprefix("serial://")
    code = ("import fcntl, os, sys, select; fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('ready', flush=True); select.select([], [], [], float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", code, path, "0.6"], stdout=subprocess.PIPE, text=True)
    link = Link(parse_url(handle.url), where="printer", share="guest")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(DeviceBusy) as e:
            link.exchange(ask)
        assert e.value.facts["reason"] == "flock"
        t0 = time.monotonic()
        assert link.exchange(ask, wait_free=10.0)[0] & 0x93 == 0x12
        waited = time.monotonic() - t0
        assert waited < 10.0
        with handle.sim.lock:
            assert handle.sim.received.endswith(EOT1)
    finally:
        link.close()
        holder.wait(10)
        handle.stop()


def test_reopen_drops_an_owners_stream_between_exchanges_and_leaves_a_guest_alone() -> None:
    """Self-repair's ``reopen`` (docs/self-repair.md): an owner's port opens afresh on the
    next exchange; a guest opens it for every exchange anyway; an exchange in progress is
    never cut (the repair gives up at its deadline)."""
    owner = Link(parse_url("sim://escpos"), where="printer", share="owner")
    guest = Link(parse_url("sim://escpos"), where="printer", share="guest")
    try:
        owner.exchange(ask)
        assert owner.reopen(time.monotonic() + 1.0) == ["reopen"] and owner.stream is None
        owner.exchange(ask)
        assert owner.opens == 2
        guest.exchange(ask)
        assert guest.reopen(time.monotonic() + 1.0) == []
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with owner.lock:
                held.set()
                release.wait(5.0)

        t = threading.Thread(target=hold, daemon=True)
        t.start()
        assert held.wait(5.0)
        assert owner.reopen(time.monotonic() + 0.05) == []  # an exchange holds the link: not cut
        assert owner.stream is not None
        release.set()
        t.join(5.0)
    finally:
        owner.close()
        guest.close()
