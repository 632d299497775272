"""Shared fixtures and helpers for the test suite.

``need_binary`` / ``need_module`` skip a test when a Debian package or Python module is
missing, with a reason that says how to install it; under CI=true they fail instead,
because CI installs everything (.ci/run).

``build_driver`` builds drivers the way the agent does, through the real config loader and
a ``DeviceSet`` (which also runs the driver's environment check), and closes every set at
teardown; ``device_set`` / ``driver_of`` are the same as plain functions for the bench.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from posagent.core.base import Driver
    from posagent.selftest.devices import DeviceSet

D = TypeVar("D", bound="Driver")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device-url", action="append", default=[], metavar="DRIVER=URL",
                     help="run tests/contract against a real device instead of the simulator, e.g. "
                          "escpos=serial:///dev/ttyS0?baudrate=38400 (repeatable, one per driver)")


def skip_or_fail(reason: str) -> None:
    """Skip the test for ``reason`` (something this machine lacks); under CI=true, fail."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


_missing = skip_or_fail  # its first name, kept for callers of it


def need_binary(path_or_name: str, apt_package: str) -> str:
    """The binary's path, or skip (fail under CI) saying which package provides it."""
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) \
        else shutil.which(path_or_name)
    if not found:
        skip_or_fail(f"{path_or_name} not found: install it with 'apt-get install -y {apt_package}'")
    return str(found)


def need_module(module: str, pip_package: str) -> None:
    if importlib.util.find_spec(module) is None:
        skip_or_fail(f"Python module {module} missing: install it with 'pip install {pip_package}'")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``posagent`` as a subprocess (the real entry point)."""
    exe = shutil.which("posagent")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "posagent", *args]
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)


@pytest.fixture
def write_config(tmp_path: Path) -> Iterator:
    """write_config(text) -> path of a config file with a private state dir."""

    def write(text: str, name: str = "posagent.toml") -> Path:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        body = text if "[agent]" in text else f'[agent]\nstate_dir = "{state}"\n' + text
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        return path

    yield write


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0, kill_timeout: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL and wait up to ``kill_timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_timeout)


def hours_window(inside: bool) -> str:
    """A business_hours value "HH:MM-HH:MM" that now is inside of (or an hour before)."""
    now = dt.datetime.now()
    a, b = (now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)) if inside else \
        (now + dt.timedelta(hours=1), now + dt.timedelta(hours=2))
    return f"{a:%H:%M}-{b:%H:%M}"


# -- drivers built through the real config loader -------------------------------------------
def device_entry(name: str, driver: str, url: str | None = None, options: Mapping[str, Any] | None = None,
                 **fields: Any) -> dict[str, Any]:
    """One ``[[device]]`` table as the config loader reads it (``options`` only when given)."""
    dev: dict[str, Any] = {"name": name, "driver": driver}
    if url is not None:
        dev["url"] = url
    dev.update(fields)
    if options:
        dev["options"] = dict(options)
    return dev


def device_set(state_dir: str | Path, *devices: dict[str, Any], source: str = "test.toml") -> DeviceSet:
    """A DeviceSet from ``posagent.config.loader.validate`` of an [agent] with ``state_dir``."""
    from posagent.config.loader import validate
    from posagent.selftest.devices import DeviceSet

    return DeviceSet(validate({"agent": {"state_dir": str(state_dir)}, "device": list(devices)}, source))


def driver_of(devices: DeviceSet, name: str, kind: type[D]) -> D:
    """The set's driver for ``name``, which must be a built ``kind`` (not a Broken entry)."""
    entry = devices.get(name)
    assert isinstance(entry, kind), entry
    return entry


class DriverBuilder:
    """What the ``build_driver`` fixture yields; every DeviceSet it made is closed at the end."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.sets: list[DeviceSet] = []

    def devices(self, *devices: dict[str, Any]) -> DeviceSet:
        ds = device_set(self.state_dir, *devices)
        self.sets.append(ds)
        return ds

    def driver(self, kind: type[D], device: dict[str, Any]) -> D:
        return driver_of(self.devices(device), device["name"], kind)

    def maker(self, kind: type[D], name: str, driver: str, default_url: str | None = None,
              **fields: Any) -> Callable[..., D]:
        """``build(url=default_url, **options) -> kind``: the driver for one configured device."""

        def build(url: str | None = None, **options: Any) -> D:
            return self.driver(kind, device_entry(name, driver, url or default_url, options, **fields))

        return build

    def close(self) -> None:
        for ds in self.sets:
            ds.close()


@pytest.fixture
def build_driver(tmp_path: Path) -> Iterator[DriverBuilder]:
    builder = DriverBuilder(tmp_path)
    yield builder
    builder.close()


def poll_until(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns a truthy value, which is returned; fail after
    ``timeout`` s. For what another thread or process changes (a file it writes, a server's
    state): between calls it waits on an Event with a deadline (bounded count and time)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    last: Any = None
    for _ in range(int(timeout / interval) + 2):
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        pause.wait(interval)
    raise AssertionError(f"{what}: not reached within {timeout:g} s (last: {last!r})")


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """Like ``poll_until``, but says whether ``check`` came true instead of failing."""
    try:
        poll_until(check, timeout, "", interval)
    except AssertionError:
        return bool(check())
    return True
