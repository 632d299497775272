"""Run the real ``posagent run`` as a subprocess with a real sd_notify socket.

``NotifyListener`` binds an AF_UNIX datagram socket and records what the daemon sends
(READY=1, STATUS=..., WATCHDOG=1 ...) with their arrival times; waits use a Condition with
a deadline. ``DaemonProc`` starts the daemon with NOTIFY_SOCKET (and optionally
WATCHDOG_USEC) set, keeps its stderr in a file, and sends it signals; both are context
managers (closed / killed at the end). ``daemon_config`` writes the config these tests run
the daemon with: the simulated acquirer and the box, delivering to a collector.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))
                self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return [line for _t, m in self.messages for line in m.split("\n")]

    def count(self, line: str) -> int:
        return sum(1 for x in self.lines() if x == line)

    def times_of(self, line: str) -> list[float]:
        with self._cond:
            return [t for t, m in self.messages if line in m.split("\n")]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate([line for _t, m in self.messages for line in m.split("\n")]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()

    def __enter__(self) -> NotifyListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaemonProc:
    def __init__(self, args: list[str], workdir: Path, *, notify: NotifyListener | None = None,
                 env: dict[str, str] | None = None) -> None:
        exe = shutil.which("posagent")
        cmd = [exe, "run", *args] if exe else [sys.executable, "-m", "posagent", "run", *args]
        self.stderr_path = workdir / f"daemon-{time.monotonic_ns()}.log"
        full_env = {**os.environ, "NO_COLOR": "1", "TMPDIR": str(workdir), "PYTHONFAULTHANDLER": "1", **(env or {})}
        full_env.pop("WATCHDOG_PID", None)
        full_env.pop("JOURNAL_STREAM", None)
        if notify is not None:
            full_env["NOTIFY_SOCKET"] = notify.path
        self._err = open(self.stderr_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err,
                                     env=full_env)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit status; a daemon still running after ``timeout`` is made to dump every
        thread's stack (SIGABRT: faulthandler, on by PYTHONFAULTHANDLER) and the test fails
        with that dump, so a hang says where it hangs."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            raise AssertionError(f"the daemon did not exit within {timeout:g} s; its stderr and threads:\n"
                                 + self.stderr()[-12000:]) from None
        finally:
            if self.proc.poll() is not None:
                self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(10.0)

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> DaemonProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


#: The devices every daemon config has: the simulated acquirer, and the box itself with disk
#: thresholds low enough that a test machine's disk never turns it to warn.
ACQUIRER = """
[[device]]
name = "acquirer"
driver = "host"
url = "sim://host"
"""
SYSTEM = """
[[device]]
name = "system"
driver = "system"
[device.options]
disk_warn_pct = 0.5
disk_fail_pct = 0.1
"""


def daemon_config(path: Path, terminal: str, url: str, *, heartbeat_interval: str | None = "1s",
                  schedule: Sequence[str] | None = (), upstream: Sequence[str] = (), sections: str = "",
                  system: bool = True, devices: str = "", check_timeout: str = "3s",
                  startup_jitter: str = "0s") -> Path:
    """Write the config to ``path`` and return it. [agent]: ``terminal``, state_dir = ``state``
    next to ``path``, ``check_timeout``, ``heartbeat_interval`` (left out when None).
    [schedule]: ``startup_jitter`` plus the ``schedule`` lines (no [schedule] when None).
    [upstream]: ``url`` over plain HTTP plus the ``upstream`` lines. Then ``sections`` (more
    tables) and the devices: the acquirer, the system unless ``system`` is False, ``devices``."""
    agent = [f'terminal_id = "{terminal}"', f'state_dir = "{path.parent / "state"}"',
             f'check_timeout = "{check_timeout}"']
    if heartbeat_interval is not None:
        agent.append(f'heartbeat_interval = "{heartbeat_interval}"')
    parts = ["[agent]", *agent, ""]
    if schedule is not None:
        parts += ["[schedule]", f'startup_jitter = "{startup_jitter}"', *schedule, ""]
    parts += ["[upstream]", f'url = "{url}"', "allow_insecure_http = true", *upstream, "", sections,
              ACQUIRER, SYSTEM if system else "", devices]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def door_device(port: int) -> str:
    """A [[device]] the test can take away: a host check of a loopback port it listens on,
    probed at every status poll (a real acquirer is probed once a minute)."""
    return f"""
[[device]]
name = "door"
driver = "host"
url = "tcp://127.0.0.1:{port}"
[device.options]
tries = 1
connect_timeout = "1s"
probe_interval = "0s"
"""
