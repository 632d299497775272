"""The language bars through the real CLI: zh-CN from the locale, --lang en, the config's
language, and a failing simulated device's hint in the table and in JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from posagent.core.registry import DriverLoadError, load_driver
from tests.conftest import free_port, run_cli
from tests.unit.selftest.test_render_zh import spans as column_spans

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


def columns(out: str) -> list[list[str]]:
    """The table's rows as cell texts, cut at the column spans of the '----' rule (CJK
    characters are two columns wide); continuation lines joined to their row."""
    lines = out.splitlines()
    spans = column_spans(lines[2])
    rows: list[list[str]] = []
    for line in lines[3:-1]:
        cells: list[str] = []
        for ch in line:
            cells += [ch, ""] if CJK.match(ch) or ch in "（）：，。；？“”" else [ch]
        texts = ["".join(cells[a:b]).strip() for a, b in spans]
        if texts[0]:
            rows.append(texts)
        else:
            rows[-1] = [f"{old}{new}" if old and new and not old.endswith(" ") else old + new
                        for old, new in zip(rows[-1], texts, strict=True)]
    return rows


def test_failing_devices_leave_no_english_sentence_in_the_chinese_table(write_config: Callable[..., Path]) -> None:
    need_driver("escpos")
    need_driver("nut")
    need_driver("evdev-keypad")
    port = free_port()
    cfg = write_config('[[device]]\nname = "prn"\ndriver = "escpos"\nurl = "serial:///dev/ttyNOPE"\n'
                       '[[device]]\nname = "kp"\ndriver = "evdev-keypad"\nurl = "evdev:///dev/input/nonexistent"\n'
                       f'[[device]]\nname = "ups"\ndriver = "nut"\nurl = "nut://127.0.0.1:{port}/ups"\n'
                       '[[device]]\nname = "paper"\ndriver = "escpos"\nurl = "sim://escpos?paper=end"\n'
                       '[[device]]\nname = "web"\ndriver = "host"\nurl = "sim://host?status=503"\n')
    out = run_cli("selftest", "--config", str(cfg), "--level", "internal", env=ZH_ENV)
    assert out.returncode == 2, out.stderr  # a failure outranks the unknowns
    rows = columns(out.stdout)
    details: dict[str, str] = {}
    for row in rows:
        details.setdefault(row[0], row[3])  # each device's first check: its status
    assert details["prn"] == "打印机未连接：/dev/ttyNOPE 不存在（没插好？）"
    assert details["kp"] == "找不到键盘：/dev/input/nonexistent 不存在（没插好？）"
    assert details["ups"] == f"无法连接 upsd：127.0.0.1:{port} 拒绝连接"
    assert details["paper"] == "缺纸"
    assert re.fullmatch(r"127\.0\.0\.1:\d+ 返回 HTTP 503 错误", details["web"])
    for row in rows:
        # only proper names, paths and addresses are Latin: no two English words in a row
        text = re.sub(r"\S*[/:.]\S*", "", row[3] + " " + row[4])
        assert not re.search(r"[A-Za-z]{2,}[ ,]+[A-Za-z]{2,}", text), row
        assert row[2] == "通过" or CJK.search(row[4]), row


def test_config_errors_are_chinese_sentences_and_unchanged_in_english(write_config: Callable[..., Path]) -> None:
    cfg = write_config('[[device]]\nname = "p"\ndriver = "escpso"\nurl = "serial:///dev/ttyS0"\ntimeuot = "5s"\n')
    zh = run_cli("config", "check", str(cfg), env=ZH_ENV)
    assert zh.returncode == 78, zh.stderr
    assert "未知驱动“escpso”；是不是要写“escpos”？" in zh.stderr
    assert ".timeuot：未知的配置项；是不是要写“timeout”？" in zh.stderr
    assert "unknown" not in zh.stderr and "did you mean" not in zh.stderr
    en = run_cli("config", "check", str(cfg), env=EN_ENV)
    assert en.returncode == 78, en.stderr
    assert "unknown driver 'escpso'; did you mean 'escpos'?" in en.stderr
    assert ".timeuot: unknown key; did you mean 'timeout'?" in en.stderr and not CJK.search(en.stderr)
    only = run_cli("selftest", "--sim", "--only", "recipt", env=ZH_ENV)
    assert only.returncode == 64 and "（是不是要写“receipt”？）" in only.stderr and "valid" not in only.stderr
