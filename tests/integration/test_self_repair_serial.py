"""Self-repair of the serial devices the agent holds open (docs/self-repair.md): the Megatec
UPS and the card reader as owners, through the real ``posagent run`` daemon delivering to
the real HTTP collector. The devices are the project's simulators on real ptys the test
starts, each with its fixed line speed (``line_baud``).

The fault is a classic of the field: another program opens the port and sets another
speed (a port scan, a modem manager). The agent's open port now runs at that speed, the
device hears noise and says nothing. Reopening the port applies the configured speed
again: the daemon does that once per fault episode, so the heartbeats stay ok with
``repair: {tried: ["reopen"], cleared: true}``, no fault event goes out, and nothing was
sent to the devices for it. Without the repair the devices stay silent for good.
"""

from __future__ import annotations

import os
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posagent.drivers.cardreader.sim import CardReaderSim
from posagent.drivers.megatec.sim import MegatecSim
from posagent.drivers.simulator import ByteSimulator, SimHandle
from tests.integration.collector import Collector, Received
from tests.integration.daemon_proc import DaemonProc, daemon_config
from tests.integration.test_self_repair import events, heartbeats, valid


@pytest.fixture
def ups() -> Iterator[SimHandle]:
    handle = MegatecSim(line_baud=2400).start()
    yield handle
    handle.stop()


@pytest.fixture
def reader() -> Iterator[SimHandle]:
    handle = CardReaderSim(line_baud=9600).start()
    yield handle
    handle.stop()


def devices(ups_url: str, reader_url: str) -> str:
    return f"""
[[device]]
name = "ups"
driver = "megatec"
url = "{ups_url}"
share = "owner"
[device.options]
reply_timeout = "300ms"
info_timeout = "100ms"

[[device]]
name = "reader"
driver = "card-reader"
url = "{reader_url}?baudrate=9600"
share = "owner"
[device.options]
reply_timeout = "300ms"
"""


def path_of(handle: SimHandle) -> str:
    return handle.url.removeprefix("serial://")


def set_speed(path: str, speed: int) -> None:
    """Another program opens the port, sets its speed and goes (the agent's open port keeps
    running at that speed: one tty, one set of settings)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[4] = attrs[5] = getattr(termios, f"B{speed}")
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    finally:
        os.close(fd)


def device(hb: dict[str, Any], name: str) -> dict[str, Any]:
    obj: dict[str, Any] = hb["devices"][name]
    return obj


def misheard(handle: SimHandle) -> int:
    sim = handle.sim
    assert isinstance(sim, ByteSimulator)
    with sim.lock:
        return sim.misheard


def received(handle: SimHandle) -> int:
    sim = handle.sim
    assert isinstance(sim, ByteSimulator)
    with sim.lock:
        return len(sim.received)


def repaired(rs: list[Received], name: str) -> bool:
    return any("repair" in device(h, name) for h in heartbeats(rs))


def test_a_port_set_to_another_speed_under_the_agent_is_reopened_and_the_devices_answer_again(
        tmp_path: Path, ups: SimHandle, reader: SimHandle) -> None:
    with Collector() as c:
        cfg = daemon_config(tmp_path / "posagent.toml", "SIM-REOPEN", c.url, system=False,
                            schedule=['status_poll = "200ms"', 'event_dedupe = "1s"'],
                            devices=devices(ups.url, reader.url))
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert c.wait_for(lambda rs: any(device(h, "ups")["code"] == "UPS_OK"
                                             and device(h, "reader")["code"] == "READER_OK"
                                             for h in heartbeats(rs)), 30.0), d.stderr()
            before = (received(ups), received(reader))
            set_speed(path_of(ups), 9600)
            set_speed(path_of(reader), 1200)
            assert c.wait_for(lambda rs: repaired(rs, "ups") and repaired(rs, "reader"), 30.0), d.stderr()
            n = len(heartbeats(c.received))
            assert c.wait_for(lambda rs: len(heartbeats(rs)) >= n + 3, 30.0), d.stderr()  # and a few rounds on
            got = list(c.received)
            err = d.stderr()
    beats = heartbeats(got)
    for name, handle, first_bytes in (("ups", ups, before[0]), ("reader", reader, before[1])):
        assert misheard(handle) > 0, name  # the fault was real: the device heard noise ...
        assert received(handle) > first_bytes, name  # ... and heard the agent again after the reopen
        with_repair = [device(h, name) for h in beats if "repair" in device(h, name)]
        first = with_repair[0]
        print(f"\n{name}: {first['code']} {first['repair']}")
        assert first["repair"]["tried"] == ["reopen"] and first["repair"]["cleared"] is True, first
        assert first["status"] == "ok", first
        # no heartbeat reported the device as failed, and no fault event went out for it
        assert all(device(h, name)["status"] == "ok" for h in beats), [device(h, name)["code"] for h in beats]
        assert not [e for e in events(got) if e["device"] == name], events(got)
    for hb in beats:
        valid("heartbeat", hb)
    assert "Traceback" not in err
