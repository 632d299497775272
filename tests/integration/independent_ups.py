"""An independent Megatec "Q1" UPS emulator, written from the protocol text alone.

It shares no code with posagent (not the simulator, not the parser): a separate process
that opens its own pseudo-terminal, prints ``READY <slave path>`` on stdout, and answers
until stdin closes or it gets SIGTERM. It stands for "a UPS the tests do not control":
a 12 V standby unit (the simulator is a 24 V one) with its own figures.

    python independent_ups.py --state mains|on_battery|battery_low [--junk]

Protocol (Megatec): commands end in CR; Q1 -> "(MMM.M NNN.N PPP.P QQQ RR.R SS.S TT.T
b7..b0" CR; F -> "#MMM.M QQQ SS.SS RR.R" CR; I -> "#" company(15) " " model(10) " "
version(10) CR; a command the unit does not know is echoed back.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import sys
import termios
import tty

STATES = {
    # input V, fault V, battery V (12 V pack), load %, bits b7..b0
    "mains": (236.2, 236.2, 13.6, 18, "00001001"),
    "on_battery": (0.0, 0.0, 12.2, 18, "10001001"),
    "battery_low": (0.0, 0.0, 10.7, 18, "11001001"),
}
JUNK = b"(@#\x15%&*!  ??.? 23O.1 lOad 0x1F\r"


def q1_reply(state: str) -> bytes:
    vin, vfault, vbat, load, bits = STATES[state]
    fields = [f"{vin:05.1f}", f"{vfault:05.1f}", f"{230.0:05.1f}", f"{load:03d}", f"{49.9:04.1f}",
              f"{vbat:04.1f}", f"{29.0:04.1f}", bits]
    return ("(" + " ".join(fields) + "\r").encode("ascii")


def answer(cmd: bytes, state: str, junk: bool) -> bytes:
    if cmd == b"Q1":
        return JUNK if junk else q1_reply(state)
    if cmd == b"F":
        return b"#230.0 002 12.00 50.0\r"
    if cmd == b"I":
        return b"#%-15s %-10s %-10s\r" % (b"INDEPENDENT", b"IND-400", b"0.9")
    if cmd in (b"T", b"CT", b"Q", b"C", b"TL"):
        return b""
    return cmd + b"\r"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", choices=sorted(STATES), default="mains")
    ap.add_argument("--junk", action="store_true")
    args = ap.parse_args()
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    print("READY", os.ttyname(slave), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ, "pty")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    pending = b""
    while True:
        for key, _ in sel.select(timeout=None):
            if key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 1024):
                    return 0
                continue
            try:
                data = os.read(master, 1024)
            except OSError:
                return 0
            pending += data
            while b"\r" in pending:
                line, pending = pending.split(b"\r", 1)
                reply = answer(line.strip(), args.state, args.junk)
                if reply:
                    os.write(master, reply)


if __name__ == "__main__":
    sys.exit(main())
