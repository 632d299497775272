"""The exchanges measured against simulators in their own process: FLOOR, the agent's
driver code, and what a user would otherwise pick (pyserial patterns, python-escpos)."""

from __future__ import annotations

import fcntl
import os
import select
import termios
from collections.abc import Callable
from typing import Any

from posagent.core.base import Driver
from tests.bench.harness import floor_exchange, open_raw
from tests.conftest import device_entry, device_set, driver_of

DLE_EOT_1 = b"\x10\x04\x01"
Q1 = b"Q1\r"


def driver(state_dir: str, name: str, driver_name: str, url: str, options: dict[str, Any] | None = None,
           share: str = "owner") -> Driver:
    """The agent's own driver, built through the real config loader as the daemon builds it
    (as the device's owner unless ``share`` says otherwise: the exchange rows measure the
    exchange itself, the guest rows the open-lock-exchange-close around it)."""
    devices = device_set(state_dir, device_entry(name, driver_name, url, options, share=share), source="bench.toml")
    return driver_of(devices, name, Driver)


def pyserial_port(path: str, timeout: float = 1.0) -> Any:
    import serial

    return serial.Serial(path, baudrate=115200, timeout=timeout)


# -- printer ---------------------------------------------------------------------------
def printer_variants(path: str, url: str, state_dir: str) -> dict[str, Callable[[], object]]:
    fd = open_raw(path)
    drv: Any = driver(state_dir, "receipt", "escpos", url)
    port = pyserial_port(path)

    def pyserial_read1() -> bytes:
        port.reset_input_buffer()  # every variant discards stale input first, as the agent does
        port.write(DLE_EOT_1)
        return bytes(port.read(1))

    return {"FLOOR": floor_exchange(fd, DLE_EOT_1, reply_len=1),
            "agent: EscposDriver.query(1) (flush, write, read_exact(1), validate)": lambda: drv.query(1),
            "pyserial: write + read(1)": pyserial_read1,
            STATUS_LABEL: drv.status}


#: The whole printer status: four exchanges, so its row is compared with 4 x FLOOR.
STATUS_LABEL = "agent: EscposDriver.status() (DLE EOT 1-4, decode, grade, counters), per exchange"


def escpos_library(path: str) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    """python-escpos 3.1 on the same printer, with its default 1 s serial timeout: its
    serial read is ``read(16)``, and the printer sends one byte, so every call waits out
    the whole timeout."""
    from escpos.constants import RT_STATUS_ONLINE
    from escpos.printer import Serial

    p = Serial(devfile=path, baudrate=115200)  # default timeout=1
    p.open()
    return ({"python-escpos: query_status(DLE EOT 1), default timeout 1 s":
             lambda: p.query_status(RT_STATUS_ONLINE),
             "python-escpos: paper_status(), default timeout 1 s": p.paper_status}, p.close)


# -- printer as a guest (share = "guest") ------------------------------------------------
GUEST_EXCHANGE_LABEL = "agent: guest Link exchange (lock file, open, TIOCGEXCL, flock, termios, DLE EOT 1-4, close)"
GUEST_LABEL = "agent: EscposDriver.read_status() as a guest (the exchange + decode, grade, state file)"


def guest_variants(path: str, url: str, state_dir: str, lock_dir: str) -> dict[str, Callable[[], object]]:
    """One whole status read of a printer shared with the POS application, against FLOOR:
    the same system calls written out (open, tcgetattr/tcsetattr clearing HUPCL, flock,
    four write + poll + read, close), and FLOOR plus the UUCP lock file the agent also
    takes (created with O_EXCL, the PID written, removed after)."""
    os.environ["POSAGENT_LOCK_DIR"] = lock_dir
    drv: Any = driver(state_dir, "receipt", "escpos", url + "?baudrate=115200", share="guest")
    lock_path = os.path.join(lock_dir, "LCK.." + os.path.realpath(path).removeprefix("/dev/").replace("/", "_"))
    pid_line = b"%10d\n" % os.getpid()

    def raw(with_lock_file: bool) -> Callable[[], bytes]:
        def once() -> bytes:
            if with_lock_file:  # as the agent takes it: O_EXCL create, the PID written
                t = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(t, pid_line)
                os.close(t)
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            attrs = termios.tcgetattr(fd)
            if attrs[2] & termios.HUPCL:
                attrs[2] &= ~termios.HUPCL
                termios.tcsetattr(fd, termios.TCSANOW, attrs)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            out = b""
            for n in (1, 2, 3, 4):
                os.write(fd, b"\x10\x04" + bytes((n,)))
                while len(out) < n:
                    if not poller.poll(1000):
                        raise TimeoutError("floor: no reply")
                    out += os.read(fd, 16)
            os.close(fd)
            if with_lock_file:
                os.unlink(lock_path)
            return out

        return once

    def exchange() -> list[int]:
        return drv._link.exchange(lambda s: [drv._query_on(s, n) for n in (1, 2, 3, 4)])  # type: ignore[no-any-return]

    return {"FLOOR": raw(False), "FLOOR + UUCP lock file": raw(True), GUEST_EXCHANGE_LABEL: exchange,
            GUEST_LABEL: drv.read_status}


# -- UPS -------------------------------------------------------------------------------
def ups_variants(path: str, url: str, state_dir: str) -> dict[str, Callable[[], object]]:
    fd = open_raw(path)
    drv: Any = driver(state_dir, "ups", "megatec", url)
    port = pyserial_port(path)
    slow = pyserial_port(path, timeout=0.1)

    def read47() -> bytes:
        port.reset_input_buffer()
        port.write(Q1)
        return bytes(port.read(47))

    def read1_in_waiting() -> bytes:
        port.reset_input_buffer()
        port.write(Q1)
        buf = bytes(port.read(1))
        while not buf.endswith(b"\r"):
            buf += port.read(max(1, port.in_waiting))
        return buf

    def read1_loop() -> bytes:
        port.reset_input_buffer()
        port.write(Q1)
        buf = b""
        while not buf.endswith(b"\r"):
            buf += port.read(1)
        return buf

    def read_until() -> bytes:
        port.reset_input_buffer()
        port.write(Q1)
        return bytes(port.read_until(b"\r"))

    def readline() -> bytes:
        slow.reset_input_buffer()
        slow.write(Q1)
        return bytes(slow.readline())

    timeout = drv.options.reply_timeout
    return {"FLOOR": floor_exchange(fd, Q1, terminator=b"\r"),
            "agent: MegatecDriver Q1 exchange (flush, write, read_until CR)": lambda: drv._query("Q1", timeout),
            "agent: MegatecDriver Q1 exchange + parse into a reading": drv._q1,
            "pyserial: write + read(47) (exact length known)": read47,
            "pyserial: read(1) then read(in_waiting) until CR": read1_in_waiting,
            "pyserial naive: read(1) loop until CR": read1_loop,
            "pyserial naive: read_until(b'\\r')": read_until,
            "pyserial: readline(), timeout 0.1 s (waits for LF)": readline}


# -- card reader -----------------------------------------------------------------------
def reader_variants(path: str, url: str, state_dir: str, payload_len: int = 64) -> dict[str, Callable[[], object]]:
    from posagent.drivers.cardreader import frames

    drv: Any = driver(state_dir, "reader", "card-reader", url, {"echo_bytes": payload_len - 1})
    profile = frames.get_profile("generic-len")
    request = frames.encode(profile.echo_cmd + os.urandom(payload_len - 1).replace(b"\x02", b"\x55")
                            .replace(b"\x03", b"\x55").replace(b"\x06", b"\x55").replace(b"\x15", b"\x55"), profile)
    fd = open_raw(path)
    reply_len = 1 + len(request)  # ACK + the echoed frame
    port = pyserial_port(path)

    def header_then_body() -> bytes:
        port.reset_input_buffer()
        port.write(request)
        head = bytes(port.read(3))  # ACK STX LEN
        return head + bytes(port.read(head[2] + 2))

    def per_byte() -> bytes:
        port.reset_input_buffer()
        port.write(request)
        buf = b""
        while len(buf) < reply_len:
            buf += port.read(1)
        return buf

    return {"FLOOR": floor_exchange(fd, request, reply_len=reply_len),
            f"agent: CardReaderDriver echo check ({payload_len}-byte payload, LRC verified)": drv._echo,
            "pyserial: read(3) header then read(len+2)": header_then_body,
            "pyserial naive: read(1) per byte": per_byte}
