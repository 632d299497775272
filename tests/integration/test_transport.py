"""Byte streams over real ptys and sockets: reads return when the bytes are in, time out
with DeviceTimeout on silence, and report a vanished device as DeviceIOError."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest

from posagent.core.errors import DeviceIOError, DeviceNotFound, DeviceTimeout
from posagent.drivers.simulator import ByteSimulator, KnobSpec
from posagent.drivers.transport import open as open_transport


class EchoSim(ByteSimulator):
    """Echoes each chunk; 'Q' answers a CR-terminated line, split over two writes."""

    family = "echo-test"
    knobs: ClassVar[dict[str, KnobSpec]] = {}

    def on_bytes(self, data: bytes) -> bytes:
        if data == b"Q\r":
            return b"(230.0 50.0 OK\r"
        return data


@pytest.fixture(params=["pty", "tcp"])
def sim(request: pytest.FixtureRequest) -> Any:
    handle = EchoSim(transport=request.param).start()
    yield handle
    handle.stop()


def test_read_exact_and_until(sim: Any) -> None:
    with open_transport(sim.url) as s:
        s.write(b"\x10\x04\x01")
        assert s.read_exact(3, timeout=2) == b"\x10\x04\x01"
        s.write(b"Q\r")
        assert s.read_until(b"\r", timeout=2) == b"(230.0 50.0 OK\r"
        assert s.bytes_in == 18 and s.bytes_out == 5


def test_healthy_device_is_not_waited_out(sim: Any) -> None:
    with open_transport(sim.url) as s:
        t0 = time.monotonic()
        for _ in range(50):
            s.write(b"x")
            s.read_exact(1, timeout=5)
        # 50 exchanges against a 5 s timeout: any wait-out would show as seconds.
        assert time.monotonic() - t0 < 5


def test_silence_times_out(sim: Any) -> None:
    with open_transport(sim.url) as s:
        s.write(b"ab")
        with pytest.raises(DeviceTimeout) as ei:
            s.read_exact(3, timeout=0.2)
        assert "2 of 3 bytes" in str(ei.value)
        with pytest.raises(DeviceTimeout):
            s.read_until(b"\r", timeout=0.1)


def test_flush_input_drops_stale_bytes(sim: Any) -> None:
    with open_transport(sim.url) as s:
        s.write(b"stale")
        s.read_exact(1, timeout=2)  # the echo has arrived
        deadline = time.monotonic() + 2
        dropped = 0
        while dropped < 4 and time.monotonic() < deadline:
            dropped += s.flush_input()
        assert dropped == 4
        s.write(b"z")
        assert s.read_exact(1, timeout=2) == b"z"


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_disconnect_is_io_error(transport: str) -> None:
    handle = EchoSim(drop_after_bytes=3, transport=transport).start()
    try:
        with open_transport(handle.url) as s:
            s.write(b"abc")
            with pytest.raises(DeviceIOError):
                s.read_exact(1, timeout=5)
    finally:
        handle.stop()


def test_missing_device_and_refused_port() -> None:
    with pytest.raises(DeviceNotFound):
        open_transport("serial:///dev/ttyNOSUCH0")
    import socket

    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(DeviceNotFound):
        open_transport(f"tcp://127.0.0.1:{port}")
