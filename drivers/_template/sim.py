"""The template's simulator: the fictional status lamp, byte for byte, on a real pty or a
loopback TCP port (the framework in ``drivers/simulator.py`` serves it).

It is written from the protocol text in ``proto.py``'s docstring, not from the parser, so
the two check each other. Answers ``STATUS`` and ``BLINK``; anything else gets ``ERR``.

A registered copy is reached as ``sim://<family>?knob=value`` (register the class under
``posagent.sims`` in pyproject.toml); the template is not registered, so its tests start
it directly: ``TemplateSim(lamp_out=True).start()`` returns a handle whose ``url`` the
driver opens like hardware.

Knobs (besides the common latency_ms, no_answer, garbage, drop_after_bytes, transport):
    temp_c       the temperature the lamp reports
    no_sensor    the lamp has no working sensor: "-" instead of a temperature
    lamp_out     the bulb is out (flag bit 0)
    fan_stalled  the fan has stopped (flag bit 1)
    new_bits     set the reserved flag bits, as later firmware may
"""

from __future__ import annotations

from typing import Any, ClassVar

from posagent.drivers.simulator import ByteSimulator, KnobSpec

MAX_PENDING = 256  # bytes without a CR: line noise, dropped


class TemplateSim(ByteSimulator):
    family = "template"
    knobs: ClassVar[dict[str, KnobSpec]] = {
        "temp_c": KnobSpec(float, 35.0, help="temperature the lamp reports"),
        "no_sensor": KnobSpec(bool, False, help="no working temperature sensor ('-')"),
        "lamp_out": KnobSpec(bool, False, help="the bulb is out"),
        "fan_stalled": KnobSpec(bool, False, help="the fan has stopped"),
        "new_bits": KnobSpec(bool, False, help="set the reserved flag bits (later firmware)"),
    }

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self._pending = b""
        self.commands: list[bytes] = []  # every command received, for tests
        self.blinks = 0

    def reply(self, command: bytes) -> bytes:
        """The lamp's answer to one command line (without its CR)."""
        self.commands.append(command)
        if command == b"STATUS":
            temp = "-" if self.k["no_sensor"] else f"{float(self.k['temp_c']):.1f}"
            flags = (0x01 if self.k["lamp_out"] else 0) | (0x02 if self.k["fan_stalled"] else 0)
            flags |= 0xF0 if self.k["new_bits"] else 0
            return f"OK {temp} {flags:02X}\r".encode("ascii")
        if command == b"BLINK":
            self.blinks += 1
            return b"OK\r"
        return b"ERR unknown command\r"

    def on_bytes(self, data: bytes) -> bytes:
        # Whole lines are answered in order; a partial one waits for the rest of its bytes.
        *lines, self._pending = (self._pending + data).split(b"\r")
        if len(self._pending) > MAX_PENDING:
            self._pending = b""
        return b"".join(self.reply(line.strip(b"\n ")) for line in lines if line.strip(b"\n "))

    def garbage_reply(self, data: bytes) -> bytes:
        # Junk that ends in CR, so the driver reads a whole line and must reject it.
        return b"O\xffK 4?.x Z\r"
