"""The language bars through the real CLI: zh-CN from the locale, --lang en, the config's
language, and a failing simulated device's hint in the table and in JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from posagent.drivers.registry import DriverLoadError, load_driver
from tests.conftest import run_cli

ZH_ENV = {"LANG": "zh_CN.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
EN_ENV = {"LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
CJK = re.compile(r"[\u4e00-\u9fff]")


def need_driver(name: str) -> None:
    try:
        load_driver(name)
    except DriverLoadError as e:
        pytest.skip(f"driver {name} not available: {e}")


def test_zh_locale_prints_the_sim_table_in_chinese() -> None:
    out = run_cli("selftest", "--sim", "--level", "internal", env=ZH_ENV)
    assert out.returncode in (0, 1), out.stderr  # the sim terminal is healthy (a small disk may warn)
    head = out.stdout.splitlines()[1]
    for word in ("设备", "检查项", "结果", "详情", "处理建议"):
        assert word in head
    assert "自检" in out.stdout.splitlines()[0]
    assert "通过" in out.stdout and "DEVICE" not in out.stdout and "PASS" not in out.stdout


def test_lang_en_wins_over_a_chinese_locale() -> None:
    out = run_cli("selftest", "--sim", "--level", "internal", "--lang", "en", env=ZH_ENV)
    assert out.returncode in (0, 1), out.stderr
    assert "DEVICE" in out.stdout and "PASS" in out.stdout
    assert not CJK.search(out.stdout)


def test_the_config_language_applies_without_a_chinese_locale(write_config: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    cfg = write_config(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlanguage = "zh-CN"\n'
                       '[[device]]\nname = "acquirer"\ndriver = "host"\nurl = "sim://host"\n')
    out = run_cli("selftest", "--config", str(cfg), env=EN_ENV)
    assert out.returncode == 0, out.stderr
    assert "设备" in out.stdout and "可连通" in out.stdout


def test_a_failing_host_gets_a_chinese_hint_in_the_table_and_json(write_config: Callable[..., Path]) -> None:
    cfg = write_config('[[device]]\nname = "acquirer"\ndriver = "host"\nurl = "sim://host?status=503"\n')
    table = run_cli("selftest", "--config", str(cfg), env=ZH_ENV)
    assert table.returncode == 2, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("acquirer"))
    assert "失败" in row and "返回 HTTP 503 错误" in row and "主机返回错误" in row
    data = json.loads(run_cli("selftest", "--config", str(cfg), "--json", env=ZH_ENV).stdout)
    (check,) = data["checks"]
    assert check["code"] == "HOST_HTTP_ERROR" and check["status"] == "fail"
    assert check["hint"] == "主机返回错误：请报告收单机构或运维中心。"
    assert "503" in check["message"] and not CJK.search(check["message"])  # messages stay English in JSON
    en = json.loads(run_cli("selftest", "--config", str(cfg), "--json", "--lang", "en", env=ZH_ENV).stdout)
    assert en["checks"][0]["hint"].startswith("The host answered with an error")


def test_a_printer_out_of_paper_gets_its_hint(write_config: Callable[..., Path]) -> None:
    need_driver("escpos")
    cfg = write_config('[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "sim://escpos?paper=end"\n')
    table = run_cli("selftest", "--config", str(cfg), "--level", "internal", env=ZH_ENV)
    assert table.returncode == 2, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("receipt") and "失败" in line)
    assert "缺纸" in row and "装上新纸卷" in row
    data = json.loads(run_cli("selftest", "--config", str(cfg), "--level", "internal", "--json",
                              env=EN_ENV).stdout)
    paper = next(c for c in data["checks"] if c["code"] == "PAPER_END")
    assert paper["status"] == "fail" and "paper roll" in paper["hint"]


def test_errors_follow_the_language() -> None:
    out = run_cli("selftest", "--config", "/nonexistent/posagent.toml", env=ZH_ENV)
    assert out.returncode == 78
    assert out.stderr.startswith("posagent：配置错误：/nonexistent/posagent.toml")
    out = run_cli("selftest", "--sim", "--only", "nosuch", env=ZH_ENV)
    assert out.returncode == 64 and "用法错误" in out.stderr
