"""A stand-in for the POS application, run as its own process by the sharing tests.

    python -m tests.integration.pos_app flock PATH SECONDS      hold flock(LOCK_EX) on the port
    python -m tests.integration.pos_app uucp PATH SECONDS       hold a UUCP lock file for it
    python -m tests.integration.pos_app excl PATH SECONDS       hold it open with TIOCEXCL
    python -m tests.integration.pos_app open PATH SECONDS       hold it open, no lock at all
    python -m tests.integration.pos_app tcp HOST PORT SECONDS   connect every 100 ms, ask DLE EOT 1
    python -m tests.integration.pos_app print HOST PORT N       print N receipts through a print proxy
    python -m tests.integration.pos_app printpty PATH N         the same through the proxy's pty

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


ESC, GS = b"\x1b", b"\x1d"


def raster(width_bytes: int, height: int, fill: bytes) -> bytes:
    """GS v 0: an image whose data is ``fill`` repeated (bytes that look like commands)."""
    data = (fill * (width_bytes * height))[: width_bytes * height]
    return GS + b"v0\x00" + width_bytes.to_bytes(2, "little") + height.to_bytes(2, "little") + data


def receipt(n: int) -> bytes:
    """A receipt as a POS application sends one: init, text, an image whose data holds
    10 04 01 / 10 04 04 (DLE EOT, which a printer answers wherever it finds it) and LFs,
    a barcode, a QR code, feed and cut."""
    qr = b"https://example.invalid/r/%d" % n
    store = GS + b"(k" + (len(qr) + 3).to_bytes(2, "little") + b"1P0" + qr
    return (ESC + b"@" + b"SHOP %d\n" % n + b"1 x coffee      3.50\n" + b"TOTAL           3.50\n"
            + raster(8, 24, b"\x10\x04\x01\x10\x04\x04\x0a\x1d") + b"thanks\n"
            + GS + b"k\x04" + b"*12345*\x00"  # CODE39, NUL-terminated data
            + store + GS + b"(k\x03\x001Q0"  # store, then print, the QR code
            + ESC + b"d\x03" + ESC + b"J\x10" + GS + b"VA\x00")


def print_receipts(host: str, port: int, n: int) -> None:
    """One connection per receipt, as POS applications print to port 9100: send it, close
    our side, read what the printer answered until the proxy closes."""
    back = 0
    for i in range(n):
        job = receipt(i)
        with socket.create_connection((host, port), timeout=30.0) as s:
            s.sendall(job[:100])
            select.select([], [], [], 0.03)  # the POS application's own pace: a job arrives in pieces
            s.sendall(job[100:])
            s.shutdown(socket.SHUT_WR)
            for _ in range(10_000):
                chunk = s.recv(4096)
                if not chunk:
                    break
                back += len(chunk)
    print(json.dumps({"receipts": n, "bytes_back": back}), flush=True)


def print_to_pty(path: str, n: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    for i in range(n):
        os.write(fd, receipt(i))
    os.close(fd)
    print(json.dumps({"receipts": n}), flush=True)


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
    elif mode == "print":
        print_receipts(argv[1], int(argv[2]), int(argv[3]))
    elif mode == "printpty":
        print_to_pty(argv[1], int(argv[2]))
    elif mode == "tcp":
        tcp_client(argv[1], int(argv[2]), float(argv[3]))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
