"""The locks other programs put on a serial port, read and honoured (``share = "guest"``).

A POS application, ser2net, minicom or a NUT driver marks a port it uses in one of three
ways, and posagent checks all of them before it writes a byte:

- a **UUCP lock file** ``LCK..<name>`` in ``/run/lock`` (``/var/lock`` on older systems;
  the Filesystem Hierarchy Standard, "/var/lock"): the owner's PID as ten ASCII digits and
  a newline (HDB format; a 4-byte binary PID in old Kermit/UUCP is read too). ``<name>``
  is the device's path below ``/dev`` with ``/`` replaced by ``_`` (``ttyS0``,
  ``pts_3``), as lockdev and ser2net name them. A file whose PID is not running is stale:
  it is ignored, said so in the log, and replaced by ours.
- an **flock(2)** on the open port: pyserial's ``exclusive=True`` and gensio (ser2net)
  take ``LOCK_EX | LOCK_NB``; a second taker gets EWOULDBLOCK.
- **TIOCEXCL** on the tty: any further open(2) fails with EBUSY.

posagent takes the same two locks it checks (its own UUCP file, and flock on its fd) for
the duration of one exchange, so a POS application that honours them waits for
milliseconds, and releases them when it closes the port.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from dataclasses import dataclass

from posagent.core.errors import DeviceBusy

log = logging.getLogger(__name__)

#: Where UUCP lock files live, in the order they are looked at. ``POSAGENT_LOCK_DIR``
#: replaces the list (one directory): for tests, and for systems with an unusual layout.
LOCK_DIRS = ("/run/lock", "/var/lock")


def lock_dirs() -> list[str]:
    """The existing lock directories, each once (``/var/lock`` is often ``/run/lock``);
    looked up once per value of ``POSAGENT_LOCK_DIR``."""
    override = os.environ.get("POSAGENT_LOCK_DIR")
    cached = _dirs.get(override)
    if cached is None:
        cached = _dirs[override] = _find_dirs(override)
    return cached


_dirs: dict[str | None, list[str]] = {}


def _find_dirs(override: str | None) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()
    for d in [override] if override else LOCK_DIRS:
        real = os.path.realpath(d)
        if real not in seen and os.path.isdir(real):
            seen.add(real)
            found.append(d)
    return found


def lock_name(device_path: str) -> str:
    """``LCK..ttyS0`` for ``/dev/ttyS0`` (symlinks such as /dev/serial/by-id/... resolved
    first, so every program names one port the same way)."""
    plain = device_path.startswith(("/dev/tty", "/dev/pts/"))  # device nodes, never links: no lstat
    real = device_path if plain or not os.path.islink(device_path) else os.path.realpath(device_path)
    rel = real[len("/dev/"):] if real.startswith("/dev/") else real.lstrip("/")
    return "LCK.." + rel.replace("/", "_")


def read_pid(path: str) -> int | None:
    """The PID in a lock file (HDB ASCII or old binary), or None when it holds none."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(64)
    except OSError:
        return None
    text = data.strip()
    if text.isdigit():
        return int(text)
    if len(data) == 4:  # old Kermit/UUCP: the PID as a native int
        return int.from_bytes(data, "little") or None
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (EPERM: it exists, owned by someone else)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class UucpLock:
    """Our UUCP lock file on one device, taken by ``acquire`` and removed by ``release``."""

    device_path: str
    path: str = ""  # the lock file we made, "" when we hold none

    def acquire(self) -> None:
        """Raise DeviceBusy when a live lock names another process; else take the lock in
        the first writable lock directory (none writable: go on without, said once)."""
        name = lock_name(self.device_path)
        dirs = lock_dirs()
        for d in dirs[1:]:  # a lock in a directory we do not write to counts as much
            self._refuse_if_held(os.path.join(d, name))
        for d in dirs:
            target = os.path.join(d, name)
            for _attempt in (1, 2):  # once more after a stale lock was removed
                try:
                    made = self._create(target)
                except PermissionError:
                    self._refuse_if_held(target)  # cannot write here, but a lock here counts
                    break
                except FileNotFoundError:  # the directory went away (it was looked up earlier)
                    _dirs.clear()
                    break
                if made:
                    self.path = target
                    return
                self._refuse_if_held(target)  # raises for a live lock; removes a stale one
            else:
                raise DeviceBusy(f"{self.device_path}: its lock file {target} keeps coming back",
                                 facts={"path": self.device_path, "reason": "uucp_lock"})
        _say_once(f"no writable lock directory among {', '.join(dirs) or 'none'}: "
                  f"{self.device_path} is used without a UUCP lock file (the others are still checked)")

    def release(self) -> None:
        """Remove our lock file. Never raises. (Nobody else removes a lock whose process
        is alive, so the file is still ours.)"""
        path, self.path = self.path, ""
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _refuse_if_held(self, path: str) -> None:
        if not os.path.lexists(path):
            return
        pid = read_pid(path)
        if pid == os.getpid():
            return  # ours (a nested exchange in this process)
        if pid is None and _young(path):
            raise DeviceBusy(f"{self.device_path} is being locked by another program ({path})",
                             facts={"path": self.device_path, "reason": "uucp_lock"})
        if pid is not None and pid_alive(pid):
            raise DeviceBusy(f"{self.device_path} is locked by process {pid} ({path})",
                             facts={"path": self.device_path, "reason": "uucp_lock", "holder_pid": pid})
        log.info("ignoring the stale lock file %s (%s)", path,
                 f"process {pid} is not running" if pid else "no PID in it")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    @staticmethod
    def _create(target: str) -> bool:
        """Create the lock file with O_EXCL (atomic: it fails with EEXIST when another
        process got there first) and write our PID into it; True when the lock is ours.
        (Between the create and the write the file is empty for microseconds:
        ``_refuse_if_held`` takes a young empty lock file as held.)"""
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            os.fchmod(fd, 0o644)  # other programs read the PID in it, whatever the umask
            os.write(fd, b"%10d\n" % os.getpid())
        finally:
            os.close(fd)
        return True


def _young(path: str, seconds: float = 5.0) -> bool:
    """Whether ``path`` was modified less than ``seconds`` ago (a lock file being written)."""
    try:
        return time.time() - os.stat(path).st_mtime < seconds
    except OSError:
        return False


def flock_or_busy(fd: int, device_path: str) -> None:
    """Take ``flock(LOCK_EX | LOCK_NB)`` on ``fd``; DeviceBusy when another process holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise DeviceBusy(f"{device_path} is locked by another program (flock)",
                             facts={"path": device_path, "reason": "flock"}) from None
        raise


def other_openers(device_path: str, limit: int = 4096) -> list[int]:
    """PIDs of other processes that have ``device_path`` open (from /proc/PID/fd, like
    fuser(1)); processes we may not look into are skipped. At most ``limit`` processes
    are looked at."""
    real = os.path.realpath(device_path)
    me = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries[:limit]:
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == real:
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return found


_said: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.info("%s", message)
