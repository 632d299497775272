#!/usr/bin/env python3
"""An independent ESC/POS printer emulator, for checking the escpos driver against a
printer the project's own simulator did not shape.

Written only from the manual's "Example replies" table (protocols.md 1.2) and shares no
code with posagent (it imports nothing from it). It answers ``DLE EOT n`` (``10 04 n``,
n = 1..4) wherever the three bytes appear in the stream, with the table's byte for the
situation it plays; it answers nothing else (no GS I, no GS r). Cells the table leaves
empty ("-") are answered 12, the all-clear value of that row of the table.

    python3 independent_printer.py SITUATION      prints the pty path, then serves

It runs in its own process and ends when its stdin closes (or after 120 s).
"""

from __future__ import annotations

import os
import select
import sys
import time
import tty

# Situation -> replies to DLE EOT 1, 2, 3, 4 (None: the table's "-" cell).
TABLE: dict[str, tuple[int | None, ...]] = {
    "all_ok": (0x12, 0x12, 0x12, 0x12),
    "out_of_paper": (0x1A, 0x32, 0x12, 0x7E),
    "out_of_paper_no_near_end_sensor": (0x1A, 0x32, 0x12, 0x72),
    "cover_open": (0x1A, 0x16, 0x12, None),
    "cover_open_while_printing": (0x1A, 0x16, 0x52, None),
    "autocutter_jam": (0x1A, 0x52, 0x1A, None),
    "silent": (),
}
LIFETIME_S = 120.0


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in TABLE:
        print(f"usage: independent_printer.py {{{'|'.join(TABLE)}}}", file=sys.stderr)
        return 64
    row = TABLE[sys.argv[1]]
    master, slave = os.openpty()
    tty.setraw(slave)
    print(os.ttyname(slave), flush=True)
    poll = select.poll()
    poll.register(master, select.POLLIN)
    poll.register(sys.stdin.fileno(), select.POLLIN | select.POLLHUP)
    carry = b""
    deadline = time.monotonic() + LIFETIME_S
    while time.monotonic() < deadline:
        events = poll.poll(500)
        if any(fd == sys.stdin.fileno() for fd, _ in events):
            return 0  # the test closed our stdin: done
        if not events:
            continue
        try:
            data = os.read(master, 4096)
        except OSError:
            return 0
        stream = carry + data
        reply = bytearray()
        for i in range(len(stream) - 2):  # the carry is 2 bytes: every match ends in new data
            if row and stream[i] == 0x10 and stream[i + 1] == 0x04 and 1 <= stream[i + 2] <= 4:
                value = row[stream[i + 2] - 1]
                reply.append(0x12 if value is None else value)
        carry = stream[-2:]
        if reply:
            os.write(master, bytes(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
