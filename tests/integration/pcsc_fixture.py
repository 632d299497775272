"""A real pcscd with the vsmartcard virtual reader (vpcd) and virtual cards, for the PC/SC tests.

``pcsc_lab`` starts ``pcscd --foreground --debug`` on the system socket (stopping a pcscd
left over from an earlier run first) and stops it, and any card, after the test. Cards:

- ``insert_vicc()``: Debian's ``vicc -t iso7816`` (ATR 3B 95 13 81 01 80 73 FF 01 00 0B,
  answers SELECT with 6A82), run with Debian's Python and the bookworm packaging workaround
  (its package dir and a ``Crypto`` -> ``Cryptodome`` shim on PYTHONPATH);
- ``insert_scripted(mode)``: a card of our own speaking the vpcd protocol (2-byte big-endian
  length, then a 1-byte control code or an APDU) on the same TCP port: ``payment`` answers
  SELECT with 9000, ``drop`` drops the connection at the first APDU (vpcd then hands pcscd
  an empty answer), ``hang`` never answers an APDU (vpcd has no timeout of its own).

Every wait is a blocking call with a deadline: pcscd's "daemon ready" log line, process
exit, and ``SCardGetStatusChange`` on the reader. Needs root (the system socket).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_binary, need_module, skip_or_fail, stop_process

PCSCD = "/usr/sbin/pcscd"
VICC = "/usr/bin/vicc"
DEBIAN_PYTHON = "/usr/bin/python3"
RUN_DIR = Path("/run/pcscd")
SOCKET = RUN_DIR / "pcscd.comm"
VICC_PACKAGE_DIR = Path("/usr/lib/python3/site-packages/virtualsmartcard")
CRYPTODOME = Path("/usr/lib/python3/dist-packages/Cryptodome")
VPCD_PORT = 35963
READER = "Virtual PCD 00 00"
VICC_ATR = "3B 95 13 81 01 80 73 FF 01 00 0B"
#: The scripted card's ATR: T=0 only (T0=0x65: TB1, TC1, 5 historical bytes; no TCK).
SCRIPTED_ATR = "3B 65 00 00 9C 11 01 01 03"

EMPTY, PRESENT = 0x10, 0x20


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    """Wait for a process we did not start to exit (pidfd + select, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def wait_for_file(path: Path, timeout: float) -> bool:
    """Block until ``path`` exists (inotify on its directory), at most ``timeout`` seconds."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    try:
        if libc.inotify_add_watch(fd, str(path.parent).encode(), 0x100 | 0x80) < 0:  # IN_CREATE | IN_MOVED_TO
            raise OSError(ctypes.get_errno(), f"cannot watch {path.parent}")
        deadline = time.monotonic() + timeout
        for _ in range(10_000):  # each pass waits for a directory event
            if path.exists():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if select.select([fd], [], [], left)[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 65536)
        return path.exists()
    finally:
        os.close(fd)


def stop_leftover_pcscd() -> None:
    """Stop a pcscd left running (by an earlier test run), found through its pid file."""
    try:
        pid = int((RUN_DIR / "pcscd.pid").read_bytes().strip(b"\0\n "))
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return
    if comm != "pcscd":
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_pid_gone(pid, 10.0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_pid_gone(pid, 5.0)


class ScriptedCard:
    """A virtual card on the vpcd TCP port; answers GET ATR and APDUs as ``mode`` says."""

    def __init__(self, mode: str, atr: str = SCRIPTED_ATR) -> None:
        self.mode = mode
        self.atr = bytes.fromhex(atr.replace(" ", ""))
        self.apdus: list[bytes] = []
        self.sock = socket.create_connection(("127.0.0.1", VPCD_PORT), timeout=5.0)
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"card-{mode}")
        self.thread.start()

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            buf += chunk
        return buf

    def _send(self, data: bytes) -> None:
        self.sock.sendall(struct.pack(">H", len(data)) + data)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            for _ in range(1_000_000):  # bounded: vpcd polls GET ATR a few times a second
                (n,) = struct.unpack(">H", self._recv(2))
                msg = self._recv(n)
                if n == 1:  # control: 0 off, 1 on, 2 reset, 4 get ATR (only that one is answered)
                    if msg[0] == 4:
                        self._send(self.atr)
                    continue
                self.apdus.append(msg)
                if self.mode == "payment":
                    self._send(bytes.fromhex("9000"))
                elif self.mode == "drop":
                    self.sock.shutdown(socket.SHUT_RDWR)  # dies mid-exchange: vpcd reports no answer
                    return
                # "hang": never answers; vpcd waits until the card is removed

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5.0)


class PcscLab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pcscd: subprocess.Popen[bytes] | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self.ready = threading.Event()
        self.vicc: subprocess.Popen[bytes] | None = None
        self.card: ScriptedCard | None = None
        self.drain: threading.Thread | None = None

    # -- pcscd -------------------------------------------------------------------
    def start_pcscd(self, timeout: float = 20.0) -> None:
        stop_leftover_pcscd()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.ready.clear()
        self.pcscd = subprocess.Popen([PCSCD, "--foreground", "--debug"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.drain = threading.Thread(target=self._drain, args=(self.pcscd,), daemon=True)
        self.drain.start()
        deadline = time.monotonic() + timeout
        # "daemon ready" is logged before pcscd creates its socket: wait for both, then for
        # it to accept (bind and listen are consecutive calls: a few tries at most).
        if not (self.ready.wait(timeout) and wait_for_file(SOCKET, deadline - time.monotonic())):
            self.stop_pcscd()
            raise AssertionError("pcscd did not get ready:\n" + "\n".join(self.log))
        from smartcard import scard

        for _ in range(1000):
            hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hr == 0 or time.monotonic() > deadline:
                break
        if hr != 0:
            self.stop_pcscd()
            raise AssertionError(f"pcscd does not accept clients: 0x{hr & 0xFFFFFFFF:08X}")
        hr, names = scard.SCardListReaders(ctx, [])
        scard.SCardReleaseContext(ctx)
        if READER not in names:
            self.stop_pcscd()
            raise AssertionError(f"pcscd lists {names} (hr 0x{hr & 0xFFFFFFFF:08X}), not the vpcd reader")

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log.append(line)
            if "daemon ready" in line:
                self.ready.set()

    def stop_pcscd(self) -> None:
        proc, self.pcscd = self.pcscd, None
        if proc is None:
            return
        if proc.poll() is None:
            stop_process(proc, 10.0, 5.0)
        if self.drain is not None:
            self.drain.join(5.0)  # reads to EOF now that pcscd is gone
        if proc.stdout is not None:
            proc.stdout.close()

    @contextlib.contextmanager
    def context(self) -> Iterator[tuple[Any, Any]]:
        from smartcard import scard

        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hr == 0, f"cannot reach pcscd: 0x{hr & 0xFFFFFFFF:08X}"
        try:
            yield scard, ctx
        finally:
            scard.SCardReleaseContext(ctx)

    def wait_card(self, present: bool, timeout: float = 20.0) -> None:
        """Wait until pcscd sees a card in (or no card in) the reader."""
        want = PRESENT if present else EMPTY
        deadline = time.monotonic() + timeout
        with self.context() as (scard, ctx):
            current = 0
            for _ in range(1000):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                hr, states = scard.SCardGetStatusChange(ctx, int(left * 1000), [(READER, current)])
                if hr == 0:
                    current = states[0][1]
                    if current & want:
                        return
                elif hr & 0xFFFFFFFF != 0x8010000A:  # SCARD_E_TIMEOUT
                    raise AssertionError(f"SCardGetStatusChange: 0x{hr & 0xFFFFFFFF:08X}")
        raise AssertionError(f"reader state is 0x{current:X}, expected {'a card' if present else 'no card'}")

    # -- cards -------------------------------------------------------------------
    def insert_vicc(self) -> None:
        shim = self.tmp / "crypto-shim"
        shim.mkdir(exist_ok=True)
        if not (shim / "Crypto").exists():
            (shim / "Crypto").symlink_to(CRYPTODOME)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{VICC_PACKAGE_DIR}:{shim}"}
        log = open(self.tmp / "vicc.log", "wb")  # noqa: SIM115 - closed with the process
        self.vicc = subprocess.Popen([DEBIAN_PYTHON, VICC, "-t", "iso7816", "-H", "127.0.0.1", "-P", str(VPCD_PORT)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        try:
            self.wait_card(True)
        except AssertionError as e:
            raise AssertionError(f"{e}; vicc log: {(self.tmp / 'vicc.log').read_text(errors='replace')}") from e

    def insert_scripted(self, mode: str, wait: bool = True) -> ScriptedCard:
        self.card = ScriptedCard(mode)
        if wait:
            self.wait_card(True)
        return self.card

    def remove_card(self) -> None:
        if self.vicc is not None:
            proc, self.vicc = self.vicc, None
            stop_process(proc, 10.0, 5.0)
        if self.card is not None:
            card, self.card = self.card, None
            card.remove()
        if self.pcscd_alive():
            self.wait_card(False)

    def close(self) -> None:
        try:
            self.remove_card()
        except AssertionError:
            pass  # the card is gone anyway; pcscd is stopped next
        finally:
            self.stop_pcscd()

    def pcscd_alive(self) -> bool:
        return self.pcscd is not None and self.pcscd.poll() is None


def need_pcsc_stack() -> None:
    need_binary(PCSCD, "pcscd")
    need_binary(VICC, "vsmartcard-vpicc")
    need_module("smartcard", "pyscard")
    if not (VICC_PACKAGE_DIR / "virtualsmartcard").is_dir():
        skip_or_fail("virtualsmartcard package missing: apt-get install -y python3-virtualsmartcard")
    if not CRYPTODOME.is_dir():
        skip_or_fail("Cryptodome missing: apt-get install -y python3-pycryptodome")
    if not Path("/etc/reader.conf.d/vpcd").exists():
        skip_or_fail("the vpcd reader is not configured: apt-get install -y vsmartcard-vpcd")
    if os.geteuid() != 0:
        skip_or_fail("pcscd on the system socket needs root")


@pytest.fixture
def pcsc_lab(tmp_path: Path) -> Iterator[PcscLab]:
    """pcscd running with the vpcd reader and no card; everything stopped afterwards."""
    need_pcsc_stack()
    lab = PcscLab(tmp_path)
    lab.start_pcscd()
    try:
        yield lab
    finally:
        lab.close()
