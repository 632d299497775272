"""``sim://megatec``: a Megatec "Q1" UPS on a real pseudo-terminal, byte for byte.

Answers ``Q1``, ``F`` and ``I``; accepts ``T`` (10-second battery test, length set by
the ``test_seconds`` knob), ``TL``, ``T<nn>``, ``CT``, ``Q`` (beeper), ``S..``/``C``
without a reply; echoes any other command back, as real units do.

Knobs (besides latency_ms, no_answer, garbage, drop_after_bytes):
    on_battery     utility failed: bit 7, input 0 V
    battery_low    bit 6
    battery_pct    charge the battery voltage stands for (NUT's formula); -1 = automatic
                   (100 on mains, 80 on battery, 10 when battery_low)
    overload       load 105 %
    fault          bit 4 (UPS failed)
    odd_spacing    legal but unusual spacing: blank after '(', double blanks, unpadded load
    ups_type       standby (bit 3 set, total battery voltage) | online (per-cell voltage)
    rating         answer F (else echo it)
    identity       answer I (else echo it)
    test_seconds   length of the T test
    weak_battery   the battery collapses during a test (bit 6 while testing)
    drop_growth_v  an ageing battery: the voltage drop under test grows by this much with
                   every test started (the first test drops the usual ~0.5 V)
    no_test        the unit has no battery test: T is echoed back
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

from posagent.drivers.simulator import ByteSimulator, KnobSpec

NOMINAL_V = 24.0
CELLS = 12  # cells of the 24 V pack (per-cell voltage on on-line units)

_SILENT = re.compile(rb"T|TL|T\d\d|CT|Q|C|S\.\d|S\d\d|S\.\dR\d{4}|S\d\dR\d{4}")


class MegatecSim(ByteSimulator):
    family = "megatec"
    knobs: ClassVar[dict[str, KnobSpec]] = {
        "on_battery": KnobSpec(bool, False, help="utility failed, running on battery"),
        "battery_low": KnobSpec(bool, False, help="battery low bit"),
        "battery_pct": KnobSpec(float, -1.0, help="charge the battery voltage stands for (-1 = automatic)"),
        "overload": KnobSpec(bool, False, help="load above 100 %"),
        "fault": KnobSpec(bool, False, help="UPS failed bit"),
        "odd_spacing": KnobSpec(bool, False, help="legal but unusual spacing in the Q1 reply"),
        "ups_type": KnobSpec(str, "standby", ("standby", "online"), help="standby or on-line unit"),
        "rating": KnobSpec(bool, True, help="answer the F (rating) query"),
        "identity": KnobSpec(bool, True, help="answer the I (identity) query"),
        "test_seconds": KnobSpec(float, 10.0, help="length of the T battery test"),
        "weak_battery": KnobSpec(bool, False, help="battery goes low during a test"),
        "no_test": KnobSpec(bool, False, help="no battery test: echo T like units without one"),
        "drop_growth_v": KnobSpec(float, 0.0, help="extra voltage drop under test per test started (ageing)"),
    }

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self._pending = bytearray()
        self.test_until = 0.0
        self.tests_started = 0
        self.beeper = True
        self.commands: list[bytes] = []

    # -- state -----------------------------------------------------------------
    def testing(self) -> bool:
        return time.monotonic() < self.test_until

    def charge_pct(self) -> float:
        pct = float(self.k["battery_pct"])
        if pct < 0:
            pct = 10.0 if self.k["battery_low"] else 80.0 if self.k["on_battery"] else 100.0
        if self.testing():
            pct = 0.0 if self.k["weak_battery"] else max(0.0, pct - 10.0)
        return min(100.0, pct)

    def pack_voltage(self) -> float:
        low, high = NOMINAL_V * 104.0 / 120.0, NOMINAL_V * 130.0 / 120.0
        volts = low + (high - low) * self.charge_pct() / 100.0
        if self.testing() and self.tests_started > 1:
            volts -= float(self.k["drop_growth_v"]) * (self.tests_started - 1)
        return max(0.0, volts)

    def bits(self) -> str:
        weak_test = self.testing() and self.k["weak_battery"]
        b = [self.k["on_battery"], self.k["battery_low"] or weak_test, False, self.k["fault"],
             self.k["ups_type"] == "standby", self.testing(), False, self.beeper]
        return "".join("1" if x else "0" for x in b)

    # -- replies ---------------------------------------------------------------
    def q1(self) -> bytes:
        vin = 0.0 if self.k["on_battery"] else 230.0
        load = 105 if self.k["overload"] else 23
        if self.k["ups_type"] == "online":
            batt = f"{self.pack_voltage() / CELLS:4.2f}"
        else:
            batt = f"{self.pack_voltage():4.1f}"
        if self.k["odd_spacing"]:
            line = f"( {vin:.1f} {vin:.1f}  230.0 {load} 50.0  {batt} 25.0 {self.bits()}"
        else:
            line = f"({vin:05.1f} {vin:05.1f} 230.0 {load:03d} 50.0 {batt} 25.0 {self.bits()}"
        return line.encode("ascii") + b"\r"

    def reply(self, cmd: bytes) -> bytes:
        self.commands.append(cmd)
        if cmd == b"Q1":
            return self.q1()
        if cmd == b"F" and self.k["rating"]:
            return b"#230.0 004 024.0 50.0\r"
        if cmd == b"I" and self.k["identity"]:
            return b"#" + b"SIMPOWER".ljust(15) + b" " + b"SIM-650VA".ljust(10) + b" " + b"V1.2".ljust(10) + b"\r"
        if _SILENT.fullmatch(cmd) and not (cmd.startswith(b"T") and self.k["no_test"]):
            if cmd == b"T":
                self.tests_started += 1
                self.test_until = time.monotonic() + float(self.k["test_seconds"])
            elif cmd == b"CT":
                self.test_until = 0.0
            elif cmd == b"Q":
                self.beeper = not self.beeper
            return b""
        return cmd + b"\r"  # unknown command: echo, as real units do

    def on_bytes(self, data: bytes) -> bytes:
        self._pending += data
        out = bytearray()
        while b"\r" in self._pending:
            line, _, rest = bytes(self._pending).partition(b"\r")
            self._pending = bytearray(rest)
            cmd = line.strip(b"\n ")
            if cmd:
                out += self.reply(cmd)
        if len(self._pending) > 256:  # no CR in sight: line noise
            self._pending.clear()
        return bytes(out)

    def garbage_reply(self, data: bytes) -> bytes:
        # Junk that ends in CR, so the driver reads a whole line and must reject it.
        return b"(2\xb3\x80.4 ?4 Z30.0 0!3 5\x00.0\r"
