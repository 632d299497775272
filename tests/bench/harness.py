"""Benchmark harness: simulators in their own process, interleaved rounds, medians and
p99, every figure as a ratio to a FLOOR measured in the same run.

A simulator started with ``posagent sim URL`` runs in a separate process, so it does not
share the interpreter lock with the client being measured.
"""

from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.conftest import stop_process


class SimProcess:
    """``posagent sim URL...`` in a child process; ``.urls`` maps each sim URL to what it
    serves (``.url``/``.path`` for the first)."""

    def __init__(self, *sim_urls: str) -> None:
        exe = shutil.which("posagent")
        cmd = [exe, "sim", *sim_urls] if exe else [sys.executable, "-m", "posagent", "sim", *sim_urls]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.urls: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while len(self.urls) < len(sim_urls):
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = self.proc.stdout.readline() if ready else ""
            if "\t" not in line:
                self.close()
                raise RuntimeError(f"simulators {sim_urls} did not start: {line!r}")
            raw, served = line.strip().split("\t")
            self.urls[raw] = served
        self.url = self.urls[sim_urls[0]]
        self.path = self.url.removeprefix("serial://")

    def close(self) -> None:
        stop_process(self.proc, 10, 10)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_raw(path: str) -> int:
    """The pty slave opened the plainest way: O_RDWR, raw mode, non-blocking."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)
    return fd


def floor_exchange(fd: int, request: bytes, reply_len: int | None = None,
                   terminator: bytes = b"") -> Callable[[], bytes]:
    """FLOOR: discard stale input (tcflush), os.write, then poll + os.read until the reply
    is complete; a reply longer than expected means the exchange got out of step."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    flush, iflush = termios.tcflush, termios.TCIFLUSH

    def once() -> bytes:
        flush(fd, iflush)
        os.write(fd, request)
        buf = b""
        while True:
            if not poller.poll(1000):
                raise TimeoutError("floor: no reply")
            buf += os.read(fd, 4096)
            if reply_len is not None and len(buf) >= reply_len:
                break
            if terminator and buf.endswith(terminator):
                break
        if reply_len is not None and len(buf) != reply_len:
            raise RuntimeError(f"floor: {len(buf)} bytes back, expected {reply_len}: out of step")
        return buf

    return once


@dataclass
class Variant:
    label: str
    fn: Callable[[], object]
    n: int  # exchanges per round
    samples: list[list[float]] = field(default_factory=list)  # per round, microseconds


def measure(variants: list[Variant], rounds: int) -> None:
    """Interleave variants round by round, alternating order, recording per-exchange us."""
    for v in variants:  # warm-up
        for _ in range(min(v.n, 20)):
            v.fn()
    for r in range(rounds):
        order = variants if r % 2 == 0 else list(reversed(variants))
        for v in order:
            times = []
            fn = v.fn
            clock = time.perf_counter_ns
            for _ in range(v.n):
                t0 = clock()
                fn()
                times.append((clock() - t0) / 1000.0)
            v.samples.append(times)


def median_us(v: Variant) -> float:
    return statistics.median(x for rnd in v.samples for x in rnd)


def p99_us(v: Variant) -> float:
    allx = sorted(x for rnd in v.samples for x in rnd)
    return allx[min(len(allx) - 1, int(len(allx) * 0.99))]


def ratio(v: Variant, floor: Variant) -> float:
    """Median over rounds of (variant round median / floor round median)."""
    pairs = zip(v.samples, floor.samples, strict=False)
    return statistics.median(statistics.median(a) / statistics.median(b) for a, b in pairs)


def wire_ms(bytes_out: int, bytes_in: int, baud: int) -> float:
    """Physical wire time of an exchange at 8N1 (10 bit times per byte)."""
    return (bytes_out + bytes_in) * 10.0 / baud * 1000.0
