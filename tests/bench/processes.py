"""Whole-process figures: wall time and peak RSS of CLI runs; CPU % and RSS of the daemon."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from tests.conftest import stop_process

#: The posagent executable the process figures run; set by use_clean_install().
EXE: str | None = None


def posagent_cmd(*args: str) -> list[str]:
    exe = EXE or shutil.which("posagent")
    return [exe, *args] if exe else [sys.executable, "-m", "posagent", *args]


def use_clean_install(workdir: str, repo: str) -> str:
    """Install the package with its runtime dependencies only into a fresh venv, as on a
    terminal (no test tools, no optional packages that httpx would pick up), and run the
    process figures from there. Returns a note for the report."""
    global EXE
    venv = os.path.join(workdir, "venv")
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True, timeout=120)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", repo], check=True,
                       capture_output=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        return f"clean install failed ({e}); process figures use this interpreter's environment"
    EXE = os.path.join(venv, "bin", "posagent")
    return "process figures from a clean venv with the runtime dependencies only"


@dataclass
class ProcFigures:
    label: str
    wall_ms: list[float]
    peak_rss_mb: list[float]
    returncodes: list[int]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def rss_mb(self) -> float:
        return max(self.peak_rss_mb)


# A small spawner process forks and execs the command, then reports the child's wall time
# and ru_maxrss. Measuring from the test process itself would not work: a child forked from
# a large process inherits that process's high-water mark across exec.
_SPAWNER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(fd, n)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps([(time.perf_counter() - t0) * 1000.0, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status)]))
"""


def time_command(label: str, args: list[str], runs: int, env: dict[str, str] | None = None) -> ProcFigures:
    """Wall time (fork to reap) and peak RSS (the child's own ru_maxrss) of ``posagent ARGS``."""
    import json

    walls, rss, rcs = [], [], []
    full_env = {**os.environ, **(env or {})}
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-S", "-c", _SPAWNER, *posagent_cmd(*args)], env=full_env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
        wall, peak, rc = json.loads(out)
        walls.append(wall)
        rss.append(peak)
        rcs.append(rc)
    return ProcFigures(label, walls, rss, rcs)


@dataclass
class DaemonFigures:
    seconds: float
    cpu_pct: float
    rss_mb: float
    heartbeats: int


def daemon_steady_state(config_path: str, seconds: float, warmup: float = 3.0) -> DaemonFigures:
    """Run ``posagent run --config F``; after a warm-up, CPU time used over ``seconds``."""
    import psutil

    proc = subprocess.Popen(posagent_cmd("run", "--config", config_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        p = psutil.Process(proc.pid)
        tick = threading.Event()  # never set: its wait() is the observer's sampling clock
        try:
            proc.wait(warmup)  # the daemon must still be running after the warm-up
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited early: {proc.stderr.read() if proc.stderr else ''}")
        c0 = p.cpu_times()
        t0 = time.monotonic()
        peak = 0.0
        end = t0 + seconds
        while time.monotonic() < end:
            peak = max(peak, p.memory_info().rss / 2**20)
            tick.wait(0.5)
        c1 = p.cpu_times()
        elapsed = time.monotonic() - t0
        cpu = (c1.user + c1.system - c0.user - c0.system) / elapsed * 100.0
        return DaemonFigures(elapsed, cpu, peak, 0)
    finally:
        stop_process(proc, 15, 5)
