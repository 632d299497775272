"""Serial-port locks as other programs set them (drivers/transport/locks.py), and the guest
open that honours them (serialguest.py): real files, real ptys, real processes."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from posagent.config.urls import parse_url
from posagent.core.errors import DeviceBusy, DeviceNotFound
from posagent.drivers.transport.locks import UucpLock, lock_dirs, lock_name, other_openers, read_pid
from posagent.drivers.transport.serialguest import line_settings, open_serial_guest


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "lock"
    d.mkdir()
    monkeypatch.setenv("POSAGENT_LOCK_DIR", str(d))
    return d


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)  # reopened by name below: nobody else has it open
    yield master, path
    os.close(master)


def test_lock_names_follow_lockdev() -> None:
    assert lock_name("/dev/ttyS0") == "LCK..ttyS0"
    assert lock_name("/dev/pts/3") == "LCK..pts_3"


def test_pid_formats(tmp_path: Path) -> None:
    ascii_lock = tmp_path / "a"
    ascii_lock.write_text("      4321\n")
    binary_lock = tmp_path / "b"
    binary_lock.write_bytes((4321).to_bytes(4, "little"))
    junk = tmp_path / "c"
    junk.write_text("hello")
    assert read_pid(str(ascii_lock)) == read_pid(str(binary_lock)) == 4321
    assert read_pid(str(junk)) is None and read_pid(str(tmp_path / "none")) is None


def test_lock_dirs_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POSAGENT_LOCK_DIR", raising=False)
    assert all(d in ("/run/lock", "/var/lock") for d in lock_dirs())
    monkeypatch.setenv("POSAGENT_LOCK_DIR", str(tmp_path))
    assert lock_dirs() == [str(tmp_path)]


def test_our_lock_is_taken_and_removed(lock_dir: Path) -> None:
    lock = UucpLock("/dev/ttyS0")
    lock.acquire()
    path = lock_dir / "LCK..ttyS0"
    assert path.read_text() == f"{os.getpid():10d}\n"
    assert not [p for p in lock_dir.iterdir() if p.name.startswith("LTMP")]
    lock.release()
    assert not path.exists()


def test_a_live_lock_of_another_process_is_busy(lock_dir: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (lock_dir / "LCK..ttyS0").write_text(f"{holder.pid:10d}\n")
        with pytest.raises(DeviceBusy) as e:
            UucpLock("/dev/ttyS0").acquire()
        assert e.value.facts == {"path": "/dev/ttyS0", "reason": "uucp_lock", "holder_pid": holder.pid}
        assert e.value.code == "DEVICE_BUSY"
        assert (lock_dir / "LCK..ttyS0").exists()  # never removed while its owner lives
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)


def test_a_stale_lock_is_ignored_and_said_so(lock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    (lock_dir / "LCK..ttyS0").write_text(f"{dead.pid:10d}\n")
    lock = UucpLock("/dev/ttyS0")
    with caplog.at_level(logging.INFO, logger="posagent.drivers.transport.locks"):
        lock.acquire()
    assert f"process {dead.pid} is not running" in caplog.text
    assert read_pid(str(lock_dir / "LCK..ttyS0")) == os.getpid()
    lock.release()


def test_line_settings_raw_and_hupcl_cleared() -> None:
    master, slave = os.openpty()
    try:
        attrs = termios.tcgetattr(slave)
        attrs[2] |= termios.HUPCL
        want = line_settings(attrs, {"baudrate": 2400, "parity": "E", "bytesize": 7, "stopbits": 2})
        assert not want[2] & termios.HUPCL
        assert want[2] & termios.PARENB and not want[2] & termios.PARODD and want[2] & termios.CSTOPB
        assert want[2] & termios.CSIZE == termios.CS7
        assert want[4] == want[5] == termios.B2400
        assert not want[3] & (termios.ICANON | termios.ECHO)
        with pytest.raises(ValueError, match="standard rate"):
            line_settings(attrs, {"baudrate": 12345})
        with pytest.raises(ValueError, match="unknown serial setting"):
            line_settings(attrs, {"speed": 9600})
    finally:
        os.close(master)
        os.close(slave)


def test_guest_open_takes_and_gives_back_both_locks(lock_dir: Path, pty: tuple[int, str]) -> None:
    _master, path = pty
    stream = open_serial_guest(parse_url(f"serial://{path}"), {"baudrate": 9600})
    other = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert read_pid(str(lock_dir / lock_name(path))) == os.getpid()
        stream.close()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
        assert not (lock_dir / lock_name(path)).exists()
    finally:
        os.close(other)


def test_guest_keeps_the_line_of_a_program_using_it(lock_dir: Path, pty: tuple[int, str]) -> None:
    _master, path = pty
    code = ("import os, sys, termios, tty; fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY); tty.setraw(fd); "
            "a = termios.tcgetattr(fd); a[2] |= termios.HUPCL; a[4] = a[5] = termios.B1200; "
            "termios.tcsetattr(fd, termios.TCSANOW, a); print('ready', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert other_openers(path) == [holder.pid]
        stream = open_serial_guest(parse_url(f"serial://{path}"), {"baudrate": 9600})
        attrs = termios.tcgetattr(stream.fd)
        stream.close()
        assert attrs[4] == termios.B1200  # its speed kept, not our 9600
        assert not attrs[2] & termios.HUPCL  # our close drops no DTR
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)


def test_guest_open_of_nothing_is_not_found(lock_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFound):
        open_serial_guest(parse_url(f"serial://{tmp_path}/ttyUSB9"), {})
    assert not list(lock_dir.iterdir())  # no lock file left behind


def test_an_empty_lock_file_is_being_written_while_young_and_stale_when_old(lock_dir: Path) -> None:
    empty = lock_dir / "LCK..ttyS0"
    empty.write_text("")
    with pytest.raises(DeviceBusy):  # another process between its create and its write
        UucpLock("/dev/ttyS0").acquire()
    os.utime(empty, (0, 0))  # an empty file left behind long ago
    lock = UucpLock("/dev/ttyS0")
    lock.acquire()
    assert read_pid(str(empty)) == os.getpid()
    lock.release()


def test_a_lock_directory_that_went_away_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.setenv("POSAGENT_LOCK_DIR", str(gone))
    assert lock_dirs() == [str(gone)]  # looked up (and remembered) while it was there
    gone.rmdir()
    lock = UucpLock("/dev/ttyS0")
    lock.acquire()  # goes on without a lock file, said once
    assert lock.path == ""
    lock.release()


def test_a_configured_line_is_kept_even_when_its_user_is_not_visible(lock_dir: Path) -> None:
    """Raw mode means a program configured the line (maybe as another user, whose open
    files /proc does not show): its speed stays. A line still in the kernel's cooked default
    that nobody has open gets the URL's settings."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        attrs = termios.tcgetattr(slave)
        assert attrs[3] & termios.ICANON  # the kernel's default: cooked
        stream = open_serial_guest(parse_url(f"serial://{path}"), {"baudrate": 2400})
        set_by_us = termios.tcgetattr(stream.fd)
        stream.close()
        assert set_by_us[4] == termios.B2400 and not set_by_us[3] & termios.ICANON
        tty.setraw(slave)  # the POS application configures it: raw, 1200 baud, then closes
        attrs = termios.tcgetattr(slave)
        attrs[4] = attrs[5] = termios.B1200
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        stream = open_serial_guest(parse_url(f"serial://{path}"), {"baudrate": 2400})
        kept = termios.tcgetattr(stream.fd)
        stream.close()
        assert kept[4] == termios.B1200
    finally:
        os.close(slave)
        os.close(master)
