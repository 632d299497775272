"""A scripted byte peer on a real pseudo-terminal, for the scenario tests.

``exchange.txt`` of a scenario lists what the driver must send (``>``) and what the
device answers (``<``), one message per line, as hex bytes (``10 04 01``) or a quoted
string with Python escapes (``"Q1\\r"``); ``#`` starts a comment. The peer reads what the
driver writes, checks it against the next ``>`` line byte for byte, and writes the
``<`` lines that follow. Anything else the driver sends is recorded as a mismatch and the
peer stops answering (the driver then sees silence, and the test fails on the mismatch).
"""

from __future__ import annotations

import ast
import os
import select
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Step:
    request: bytes
    replies: list[bytes] = field(default_factory=list)


def parse_bytes(text: str) -> bytes:
    text = text.strip()
    if text.startswith(('"', "b'", 'b"', "'")):
        value = ast.literal_eval(text)
        return value if isinstance(value, bytes) else str(value).encode("latin-1")
    return bytes.fromhex(text)


def parse_exchange(text: str) -> list[Step]:
    steps: list[Step] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith(('> "', '< "')) else raw.strip()
        if not line:
            continue
        kind, _, data = line.partition(" ")
        if kind == ">":
            steps.append(Step(parse_bytes(data)))
        elif kind == "<" and steps:
            steps[-1].replies.append(parse_bytes(data))
        else:
            raise ValueError(f"exchange line {n}: expected '> bytes' or '< bytes' after a request: {raw!r}")
    return steps


class ReplayPeer:
    """Serve ``steps`` on a new pty; ``path`` is the device node the driver opens."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave  # kept open so the line never hangs up between the driver's opens
        self.mismatch: str | None = None
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="replay-peer")
        self._thread.start()

    def _serve(self) -> None:
        buf = b""
        poll = select.poll()
        poll.register(self.master, select.POLLIN)
        deadline = time.monotonic() + 60.0  # bounded: a scenario is milliseconds of traffic
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not poll.poll(50):
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while self.done < len(self.steps) and buf:
                want = self.steps[self.done].request
                if buf[: len(want)] != want[: len(buf)]:
                    self.mismatch = f"step {self.done + 1}: expected {want.hex(' ')}, got {buf.hex(' ')}"
                    return
                if len(buf) < len(want):
                    break
                buf = buf[len(want):]
                for reply in self.steps[self.done].replies:
                    os.write(self.master, reply)
                self.done += 1
            if self.done == len(self.steps) and buf:
                self.mismatch = f"after the last step the driver sent {buf.hex(' ')}"
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


def load_steps(folder: Path) -> list[Step]:
    return parse_exchange((folder / "exchange.txt").read_text(encoding="utf-8"))
