"""Hostile configs through the real ``posagent``: ``config check`` and ``run --once`` exit 78
(the config exit code) within 10 s with exactly one problem line, and no traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli

DEADLINE = 10.0
PREFIX = "posagent: config error: "


def agent(tmp_path: Path, extra: str = "") -> str:
    return f'[agent]\nstate_dir = "{tmp_path / "state"}"\nterminal_id = "T-1"\n{extra}'


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: name -> (config text from tmp_path, the key the line names, a piece of the message)
CASES: dict[str, tuple[Callable[[Path], str], str, str]] = {
    "heartbeat_interval nan": (lambda p: agent(p, "heartbeat_interval = nan\n"),
                               "agent.heartbeat_interval", "must be between 1s and 1d"),
    "heartbeat_interval inf": (lambda p: agent(p, "heartbeat_interval = inf\n"),
                               "agent.heartbeat_interval", "must be between 1s and 1d"),
    "heartbeat_interval 0s": (lambda p: agent(p, 'heartbeat_interval = "0s"\n'),
                              "agent.heartbeat_interval", "must be between 1s and 1d"),
    "check_timeout inf": (lambda p: agent(p, "check_timeout = inf\n"), "agent.check_timeout", "must be between"),
    "device timeout 0s": (lambda p: agent(p) + '[[device]]\nname = "box"\ndriver = "system"\ntimeout = "0s"\n',
                          "device[0] (box).timeout", "must be between 10ms and 1h"),
    "spool_max_mb inf": (lambda p: agent(p) + "[upstream]\nspool_max_mb = inf\n",
                         "upstream.spool_max_mb", "must be between 0.01 and 4096"),
    "jitter inf": (lambda p: agent(p) + "[schedule]\njitter = inf\n", "schedule.jitter", "must be between"),
    "integer 10**400": (lambda p: agent(p, f"heartbeat_interval = {10**400}\n"),
                        "agent.heartbeat_interval", "must be between 1s and 1d"),
    "keep_runs 10**400": (lambda p: agent(p) + f"[history]\nkeep_runs = {10**400}\n",
                          "history.keep_runs", "must be between 1 and 100000"),
    "5000-deep nesting": (lambda p: agent(p) + f"[schedule]\nblackout_dates = {nested(5000)}\n",
                          "", "nests too deep"),
    "empty state_dir": (lambda p: '[agent]\nstate_dir = ""\n', "agent.state_dir", "absolute path"),
    "relative state_dir": (lambda p: '[agent]\nstate_dir = "var/lib/posagent"\n', "agent.state_dir", "absolute path"),
    "escape in a name": (lambda p: agent(p) + '[[device]]\nname = "a\\u001b[2Jb"\ndriver = "system"\n',
                         "device[0].name", "control character U+001B"),
    "NUL in terminal_id": (lambda p: f'[agent]\nstate_dir = "{p}"\nterminal_id = "T\\u0000"\n',
                           "agent.terminal_id", "control character U+0000"),
    "100k terminal_id": (lambda p: f'[agent]\nstate_dir = "{p}"\nterminal_id = "{"x" * 100_000}"\n',
                         "agent.terminal_id", "at most 128"),
    "userinfo in upstream url": (lambda p: agent(p) + '[upstream]\nurl = "https://u:S3CRET@fleet.example.com/hb"\n',
                                 "upstream.url", "put credentials in token_file"),
    "too many devices": (lambda p: agent(p) + "".join(f'[[device]]\nname = "d{i}"\ndriver = "system"\n'
                                                      for i in range(1000)),
                         "device", "at most 64"),
}


def one_problem_line(proc: subprocess.CompletedProcess[str], path: Path, key: str, needle: str) -> None:
    assert proc.returncode == 78, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    where = f"{path}: {key}: " if key else f"{path}: "
    assert lines[0].startswith(PREFIX + where), lines[0][:300]
    assert needle in lines[0] and "S3CRET" not in lines[0], lines[0][:300]
    assert "\x1b" not in proc.stderr and "\x00" not in proc.stderr


def run_within_deadline(*args: str) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    proc = run_cli(*args, timeout=DEADLINE)  # TimeoutExpired past the deadline
    assert time.monotonic() - start < DEADLINE
    return proc


@pytest.mark.parametrize("command", [["config", "check"], ["run", "--once", "--config"]])
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_config_exits_78_with_one_line(tmp_path: Path, case: str, command: list[str]) -> None:
    text, key, needle = CASES[case]
    path = tmp_path / "posagent.toml"
    path.write_text(text(tmp_path), encoding="utf-8")
    one_problem_line(run_within_deadline(*command, str(path)), path, key, needle)


@pytest.mark.parametrize("command", [["config", "check"], ["run", "--once", "--config"]])
def test_fifo_config_path_is_refused_without_blocking(tmp_path: Path, command: list[str]) -> None:
    fifo = tmp_path / "posagent.toml"
    os.mkfifo(fifo)
    one_problem_line(run_within_deadline(*command, str(fifo)), fifo, "", "not a regular file")


@pytest.mark.parametrize("command", [["config", "check"], ["run", "--once", "--config"]])
def test_oversize_config_is_refused(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "posagent.toml"
    path.write_text(agent(tmp_path) + "# " + "x" * (2 << 20) + "\n", encoding="utf-8")
    one_problem_line(run_within_deadline(*command, str(path)), path, "", "larger than 1024 KiB")


# -- config check runs the daemon's token-file check ---------------------------------------------
def token_config(tmp_path: Path, mode: int | None) -> tuple[Path, Path]:
    token = tmp_path / "token"
    if mode is not None:
        token.write_text("t0ken\n")
        token.chmod(mode)
    path = tmp_path / "posagent.toml"
    path.write_text(agent(tmp_path) + f'[upstream]\nurl = "https://fleet.example.com/hb"\ntoken_file = "{token}"\n')
    return path, token


@pytest.mark.parametrize("mode,who", [(0o644, "everyone"), (0o640, "its group")])
def test_config_check_refuses_a_readable_token_file(tmp_path: Path, mode: int, who: str) -> None:
    path, token = token_config(tmp_path, mode)
    proc = run_within_deadline("config", "check", str(path))
    one_problem_line(proc, path, "upstream.token_file", f"readable by {who}")
    assert f"chmod 600 {token}" in proc.stderr and "t0ken" not in proc.stderr


def test_config_check_accepts_a_private_token_file(tmp_path: Path) -> None:
    path, token = token_config(tmp_path, 0o600)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    proc = run_within_deadline("config", "check", str(path))
    assert proc.returncode == 0 and "OK" in proc.stdout and not proc.stderr.strip(), proc.stderr


def test_config_check_warns_of_a_missing_token_file(tmp_path: Path) -> None:
    path, _token = token_config(tmp_path, None)
    proc = run_within_deadline("config", "check", str(path))
    assert proc.returncode == 0 and "OK" in proc.stdout
    assert "does not exist here" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["ftp://fleet.example/x?token=S3CRET", "http://fleet.example/x?token=S3CRET",
                                 "mqtt://fleet.example:1883/?password=S3CRET"])
def test_run_upstream_usage_errors_never_show_the_urls_secrets(tmp_path: Path, url: str) -> None:
    """#18: ``run --upstream URL`` refuses a bad or plain URL with exit 64 and the URL redacted."""
    cfg = tmp_path / "posagent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    out = run_cli("run", "--once", "--config", str(cfg), "--upstream", url)
    assert out.returncode == 64, out.stderr
    assert "S3CRET" not in out.stdout + out.stderr and "***" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
