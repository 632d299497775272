"""A real NUT ``upsd`` with a ``dummy-ups`` driver on 127.0.0.1, in a private config dir.

``nut_server`` writes ups.conf, upsd.conf (LISTEN 127.0.0.1 on a free port, MAXAGE 5),
upsd.users and the dummy UPS's ``.dev`` file into a temp dir, starts
``/lib/nut/dummy-ups -F`` and ``/lib/nut/upsd -F`` with NUT_CONFPATH/NUT_STATEPATH
pointing there, and stops both after the test. Every wait has a deadline: upsd's
"listening on" log line (a read), then GET VAR polled until the driver's data is in.

Tests change the UPS's state by rewriting the .dev file (``set_state``): dummy-ups
re-reads it when its mtime changes, so each write gets a new whole-second mtime, and
``set_state`` returns once upsd serves the new ``ups.status``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posagent.drivers.nut import split_words
from tests.conftest import free_port, need_binary, poll_until

UPSD = "/lib/nut/upsd"
DUMMY_UPS = "/lib/nut/dummy-ups"
UPS_NAME = "dummy"
MAXAGE = 5

USERS = """\
[monuser]
    password = secret
    upsmon secondary
[admin]
    password = adminpw
    actions = SET
    instcmds = ALL
"""

DEFAULT_STATE = {
    "battery.charge": "87",
    "battery.runtime": "1234",
    "battery.voltage": "26.1",
    "input.voltage": "230.4",
    "ups.load": "023.4",
    "ups.model": '"A \\"quoted\\" back\\\\slash"',
    "ups.status": '"OL CHRG"',
}


class NutServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "conf"
        self.state = root / "state"
        self.port = free_port()
        self.env = {**os.environ, "NUT_CONFPATH": str(self.conf), "NUT_STATEPATH": str(self.state)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._drains: list[threading.Thread] = []
        self.dirty = False  # the .dev file differs from DEFAULT_STATE
        self._mtime = int(time.time()) - 100_000
        self.as_root = ["-u", "root"] if os.geteuid() == 0 else []

    # -- files -------------------------------------------------------------------------
    def write_config(self) -> None:
        for d in (self.conf, self.state):
            d.mkdir(mode=0o700, exist_ok=True)
        (self.conf / "ups.conf").write_text(
            f'[{UPS_NAME}]\n    driver = dummy-ups\n    port = {UPS_NAME}.dev\n    desc = "Loopback test UPS"\n'
            "    pollinterval = 1\n")
        (self.conf / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {self.port}\nMAXAGE {MAXAGE}\n")
        (self.conf / "upsd.users").write_text(USERS)
        for name in ("ups.conf", "upsd.conf", "upsd.users"):
            (self.conf / name).chmod(0o600)
        self.write_dev(DEFAULT_STATE)

    def write_dev(self, variables: dict[str, str]) -> None:
        path = self.conf / f"{UPS_NAME}.dev"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}: {v}\n" for k, v in variables.items()))
        self._mtime += 1  # a new whole second: dummy-ups compares mtimes
        os.utime(tmp, (self._mtime, self._mtime))
        os.replace(tmp, path)

    # -- processes -----------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
        self.procs[name] = p
        return p

    def _wait_log(self, p: subprocess.Popen[bytes], needle: bytes, timeout: float) -> None:
        assert p.stderr is not None
        name = os.path.basename(str(p.args[0]) if isinstance(p.args, list) else str(p.args))
        deadline = time.monotonic() + timeout
        seen = b""
        while needle not in seen:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([p.stderr], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"{name}: no {needle!r} within {timeout:g} s; log: {seen[-500:]!r}")
            chunk = os.read(p.stderr.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"{name} exited ({p.wait(5)}); log: {seen[-500:]!r}")
            seen += chunk

    def start(self) -> None:
        self.write_config()
        self._spawn("driver", [DUMMY_UPS, "-F", "-a", UPS_NAME, *self.as_root])
        upsd = self._spawn("upsd", [UPSD, "-F", *self.as_root])
        self._wait_log(upsd, b"listening on 127.0.0.1 port", 10.0)
        for p in self.procs.values():  # keep their logs flowing so a full pipe never blocks them
            th = threading.Thread(target=_drain, args=(p,), daemon=True)
            th.start()
            self._drains.append(th)
        self.wait_status("OL CHRG")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
                    p.wait(5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    p.kill()
                    p.wait(5)
        for th in self._drains:
            th.join(5)  # at EOF once the processes are gone
        for p in self.procs.values():
            if p.stderr is not None:
                p.stderr.close()

    # -- state ---------------------------------------------------------------------------
    def query(self, line: str) -> str:
        """One command on a fresh connection; the reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            return buf.decode().strip()

    def get_var(self, var: str) -> str | None:
        words = split_words(self.query(f"GET VAR {UPS_NAME} {var}"))
        return words[3] if len(words) == 4 and words[0] == "VAR" else None

    def wait_status(self, status: str, timeout: float = 15.0) -> None:
        poll_until(lambda: self.get_var("ups.status") == status, timeout, f"ups.status {status!r}")

    def set_state(self, changes: dict[str, str]) -> None:
        """Rewrite the .dev file with DEFAULT_STATE updated by ``changes``, then wait until
        upsd serves the new ups.status."""
        variables = {**DEFAULT_STATE, **changes}
        self.dirty = bool(changes)
        self.write_dev(variables)
        self.wait_status(variables["ups.status"].strip('"'))

    def url(self, ups: str = UPS_NAME, auth: str = "") -> str:
        return f"nut://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{ups}"

    def signal_driver(self, sig: int) -> None:
        os.kill(self.procs["driver"].pid, sig)


def _drain(p: subprocess.Popen[bytes]) -> None:
    assert p.stderr is not None
    try:
        while os.read(p.stderr.fileno(), 65536):
            pass
    except OSError:
        pass


def _started(root: Path, kind: type[NutServer] = NutServer) -> Iterator[NutServer]:
    need_binary(UPSD, "nut-server")
    need_binary(DUMMY_UPS, "nut-server")
    server = kind(root)
    root.mkdir()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nut_shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NutServer]:
    """One upsd + dummy-ups for a test module (starting one takes about 3 s)."""
    yield from _started(tmp_path_factory.mktemp("nut") / "srv")


@pytest.fixture
def nut_server(nut_shared_server: NutServer) -> NutServer:
    """The module's upsd, its dummy UPS back in DEFAULT_STATE (skip with an install hint
    when nut-server is missing; fail under CI=true)."""
    if nut_shared_server.dirty:
        nut_shared_server.set_state({})
        nut_shared_server.dirty = False
    return nut_shared_server


@pytest.fixture
def nut_private_server(tmp_path: Path) -> Iterator[NutServer]:
    """A upsd + dummy-ups of the test's own, for tests that freeze or kill the driver."""
    yield from _started(tmp_path / "nut")
