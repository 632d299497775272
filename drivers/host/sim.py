"""``sim://host``: a loopback HTTP endpoint standing in for the acquirer / fleet host.

Knobs: ``status`` (HTTP status to answer, default 200), plus the common byte-simulator
knobs (latency_ms delays the HTTP reply, no_answer accepts and never replies,
drop_after_bytes hangs up mid-request). Served on 127.0.0.1 only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from posagent.drivers.simulator import ByteSimulator, KnobSpec, SimHandle


class HostSim(ByteSimulator):
    family = "host"
    knobs: ClassVar[dict[str, KnobSpec]] = {
        "status": KnobSpec(int, 200, help="HTTP status to answer"),
    }

    def __init__(self, **knobs: Any) -> None:
        knobs.setdefault("transport", "tcp")
        super().__init__(**knobs)
        self._pending = bytearray()
        self.requests = 0

    def on_bytes(self, data: bytes) -> bytes:
        self._pending += data
        if b"\r\n\r\n" not in self._pending:
            return b""
        self._pending.clear()
        self.requests += 1
        code = self.k["status"]
        body = b'{"ok": true}\n' if code < 400 else b'{"ok": false}\n'
        return (f"HTTP/1.1 {code} SIM\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

    def start(self) -> SimHandle:
        handle = super().start()
        handle.url = handle.url.replace("tcp://", "http://", 1) + "/health"
        return handle
