"""The fault-injection suite: the box itself failing under a running agent (a full disk,
a read-only remount, a damaged store), with real processes, a real collector and real
filesystems. Mounting a tmpfs needs root: CI runs as root; elsewhere these tests skip and
say so (``sudo -E .venv/bin/python -m pytest tests/faults``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("the fault-injection suite needs root to mount a tmpfs (CI runs as root)")
    pytest.skip("needs root to mount a tmpfs: run sudo -E .venv/bin/python -m pytest tests/faults")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size="512k")``: a fresh tmpfs of that size mounted at tmp_path/name;
    unmounted at teardown (lazily: a process may still hold a file open)."""
    _need_root()
    mounted: list[Path] = []

    def make(name: str = "state", size: str = "512k") -> Path:
        where = tmp_path / name
        where.mkdir(mode=0o700, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where))
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def remount(where: Path, mode: str) -> None:
    """Remount the tmpfs at ``where`` read-only ("ro") or read-write ("rw")."""
    _mount("-o", f"remount,{mode}", str(where))


def fill(where: Path) -> Path:
    """Fill the filesystem at ``where`` to ENOSPC with one file; returns the file."""
    ballast = where / "ballast"
    chunk = b"\0" * 65536
    with open(ballast, "wb", buffering=0) as fh:
        for _ in range(1 << 16):  # bounded: 4 GiB at most, far above any test tmpfs
            try:
                fh.write(chunk)
            except OSError:
                break
    for _ in range(1 << 12):  # the last bytes a 64 KiB write could not take
        try:
            with open(ballast, "ab", buffering=0) as fh:
                fh.write(b"\0" * 512)
        except OSError:
            break
    return ballast
