"""``posagent history`` through the real CLI: a fault appears and clears across self-test runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from posagent.cli.history import short_time
from tests.conftest import run_cli

ZH_ENV = {"LANG": "zh_CN.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}


def host_config(write_config: Callable[..., Path], status: int, extra: str = "") -> Path:
    return write_config(f'''{extra}
[[device]]
name = "acquirer"
driver = "host"
url = "sim://host?status={status}"
''')


def test_a_fault_appears_and_clears_across_runs(write_config: Callable[..., Path]) -> None:
    cfg = host_config(write_config, 503)
    first = run_cli("selftest", "--config", str(cfg), "--technician", "wang")
    assert first.returncode == 2, first.stderr
    cfg = host_config(write_config, 503)
    assert run_cli("selftest", "--config", str(cfg)).returncode == 2
    cfg = host_config(write_config, 200)
    third = run_cli("selftest", "--config", str(cfg), "--technician", "li")
    assert third.returncode == 0, third.stdout + third.stderr

    out = run_cli("history", "--config", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [r["status"] for r in data["runs"]] == ["fail", "fail", "ok"]
    assert [r["technician"] for r in data["runs"]][::2] == ["wang", "li"]
    assert data["runs"][0]["checks"][0]["code"] == "HOST_HTTP_ERROR"
    (fault,) = data["faults"]
    assert (fault["device"], fault["code"]) == ("acquirer", "HOST_HTTP_ERROR")
    assert fault["first_run"] == data["runs"][0]["id"] and fault["cleared_run"] == data["runs"][2]["id"]
    assert fault["first_seen"] == data["runs"][0]["started_at"]
    assert fault["cleared"] == data["runs"][2]["started_at"]
    assert data["counters"]["selftests_run"] == 3 and data["counters"]["failures"] == {"acquirer": 2}

    table = run_cli("history", "--config", str(cfg))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any("wang" in line and "FAIL" in line and "acquirer: HOST_HTTP_ERROR" in line for line in lines)
    fault_line = next(line for line in lines if line.startswith("acquirer") and "HOST_HTTP_ERROR" in line)
    assert "still open" not in fault_line
    assert f"{short_time(fault['first_seen'])}  {short_time(fault['cleared'])}" in fault_line
    assert "3 self-tests" in table.stdout and "acquirer 2" in table.stdout


def test_an_open_fault_shows_its_hint_in_chinese(write_config: Callable[..., Path]) -> None:
    cfg = host_config(write_config, 503)
    assert run_cli("selftest", "--config", str(cfg), "--level", "internal").returncode == 2
    out = run_cli("history", "--config", str(cfg), "--since", "1d", env=ZH_ENV)
    assert out.returncode == 0, out.stderr
    assert "尚未消除" in out.stdout and "主机返回错误" in out.stdout and "（最近 1d）" in out.stdout


def test_the_store_stays_bounded(write_config: Callable[..., Path]) -> None:
    cfg = host_config(write_config, 200, "[history]\nkeep_runs = 2\n")
    for _ in range(4):
        assert run_cli("selftest", "--config", str(cfg), "--level", "internal").returncode == 0
    data = json.loads(run_cli("history", "--config", str(cfg), "--json").stdout)
    assert len(data["runs"]) == 2
    assert data["counters"]["selftests_run"] == 4


def test_history_with_nothing_recorded_and_bad_input(write_config: Callable[..., Path]) -> None:
    cfg = host_config(write_config, 200)
    empty = run_cli("history", "--config", str(cfg))
    assert empty.returncode == 0 and "No self-test recorded yet" in empty.stdout
    bad = run_cli("history", "--config", str(cfg), "--since", "a fortnight")
    assert bad.returncode == 64 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    bad_only = run_cli("history", "--config", str(cfg), "--only", "acquirr")
    assert bad_only.returncode == 64 and "acquirer" in bad_only.stderr
