"""A stand-in for the POS application, run as its own process by the sharing tests.

    python -m tests.integration.pos_app flock PATH SECONDS      hold flock(LOCK_EX) on the port
    python -m tests.integration.pos_app uucp PATH SECONDS       hold a UUCP lock file for it
    python -m tests.integration.pos_app excl PATH SECONDS       hold it open with TIOCEXCL
    python -m tests.integration.pos_app open PATH SECONDS       hold it open, no lock at all
    python -m tests.integration.pos_app tcp HOST PORT SECONDS   connect every 100 ms, ask DLE EOT 1

The holding modes print ``ready`` once the port is held and ``released`` when it is let
go: after SECONDS, or as soon as stdin closes (the test's way to end early); the wait is a
poll on stdin with that deadline. The lock directory is ``POSAGENT_LOCK_DIR`` (as for
posagent). ``tcp`` prints one JSON line: how many exchanges, how many failed, and the
waits (connect to reply) in milliseconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import sys
import termios
import time


def _hold(seconds: float) -> None:
    print("ready", flush=True)
    poll = select.poll()
    poll.register(sys.stdin.fileno(), select.POLLIN | select.POLLHUP)
    poll.poll(int(seconds * 1000))
    print("released", flush=True)


def hold_flock(path: str, seconds: float) -> None:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _hold(seconds)
    os.close(fd)


def hold_uucp(path: str, seconds: float) -> None:
    real = os.path.realpath(path)
    name = "LCK.." + real.removeprefix("/dev/").replace("/", "_")
    lock = os.path.join(os.environ.get("POSAGENT_LOCK_DIR", "/run/lock"), name)
    with open(lock, "x", encoding="ascii") as fh:
        fh.write(f"{os.getpid():10d}\n")
    try:
        _hold(seconds)
    finally:
        os.unlink(lock)


def hold_exclusive(path: str, seconds: float) -> None:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    fcntl.ioctl(fd, termios.TIOCEXCL)
    _hold(seconds)
    fcntl.ioctl(fd, termios.TIOCNXCL)
    os.close(fd)


def hold_open(path: str, seconds: float) -> None:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    _hold(seconds)
    os.close(fd)


def tcp_client(host: str, port: int, seconds: float) -> None:
    waits: list[float] = []
    failed = 0
    end = time.monotonic() + seconds
    for _ in range(int(seconds * 10) + 1):
        if time.monotonic() >= end:
            break
        t0 = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=5.0) as s:
                s.sendall(b"\x10\x04\x01")
                s.settimeout(5.0)
                if not s.recv(1):
                    failed += 1
                    continue
        except OSError:
            failed += 1
            continue
        waits.append((time.monotonic() - t0) * 1000.0)
        left = t0 + 0.1 - time.monotonic()
        if left > 0:
            select.select([], [], [], left)  # the client's own pace: one connect per 100 ms
    print(json.dumps({"exchanges": len(waits), "failed": failed, "waits_ms": waits}), flush=True)


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "flock":
        hold_flock(argv[1], float(argv[2]))
    elif mode == "uucp":
        hold_uucp(argv[1], float(argv[2]))
    elif mode == "excl":
        hold_exclusive(argv[1], float(argv[2]))
    elif mode == "open":
        hold_open(argv[1], float(argv[2]))
    elif mode == "tcp":
        tcp_client(argv[1], int(argv[2]), float(argv[3]))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
