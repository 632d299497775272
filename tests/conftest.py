"""Shared fixtures and helpers for the test suite.

``need_binary`` / ``need_module`` skip a test when a Debian package or Python module is
missing, with a reason that says how to install it; under CI=true they fail instead,
because CI installs everything (.ci/run).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def need_binary(path_or_name: str, apt_package: str) -> str:
    """The binary's path, or skip (fail under CI) saying which package provides it."""
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) \
        else shutil.which(path_or_name)
    if not found:
        _missing(f"{path_or_name} not found: install it with 'apt-get install -y {apt_package}'")
    return str(found)


def need_module(module: str, pip_package: str) -> None:
    if importlib.util.find_spec(module) is None:
        _missing(f"Python module {module} missing: install it with 'pip install {pip_package}'")


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
