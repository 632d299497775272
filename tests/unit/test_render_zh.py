"""The zh-CN table: CJK characters take two columns and every column stays aligned;
messages are rebuilt from per-code templates with the result's own numbers."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from posagent.config import load_config
from posagent.drivers.base import Level, Result
from posagent.i18n import set_language
from posagent.selftest.devices import DeviceSet
from posagent.selftest.hints import HINTS, hint
from posagent.selftest.messages import display_message, localized_message
from posagent.selftest.render import render_table, report_json, summary_line
from posagent.selftest.runner import CheckRecord, Report, Runner
from posagent.selftest.textwidth import width


@pytest.fixture(autouse=True)
def zh() -> Iterator[None]:
    set_language("zh-CN")
    yield
    set_language("en")


def cells(line: str) -> list[str]:
    """The line as terminal cells: a wide character fills its cell and a '\\0' after it."""
    out: list[str] = []
    for ch in line:
        out.append(ch)
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            out.append("\0")
    return out


def spans(rule: str) -> list[tuple[int, int]]:
    """Column spans [start, end) from the '-----  ----' rule under the headings."""
    out, start = [], None
    for i, ch in enumerate(rule + " "):
        if ch == "-" and start is None:
            start = i
        elif ch != "-" and start is not None:
            out.append((start, i))
            start = None
    return out


ROWS = [
    ("收银打印机", "status", Result.fail("HOST_UNREACHABLE", "0 of 3 TCP connects to 10.0.0.9:443 succeeded",
                                          fields={"host": "10.0.0.9:443", "latency_ms": None})),
    ("acquirer", "status", Result.fail("HOST_HTTP_ERROR", "10.0.0.9 answered HTTP 503",
                                       measurements={"http_status": 503}, fields={"host": "10.0.0.9:443"})),
    ("system", "status", Result.fail("DISK_FULL", "/var: only 12.5 MB (0.4 %) free",
                                     measurements={"disk_free_mb": 12.5, "disk_free_pct": 0.4})),
    ("ups", "status", Result.unknown("CHECK_TIMEOUT", "no result within 5 s (device hung?)")),
    ("system", "clock", Result.ok("SYSTEM_OK", "disk 31.6 % free, memory 1.8 % used",
                                  measurements={"disk_free_pct": 31.6, "memory_used_pct": 1.8})),
]


def render(rows: list[tuple[str, str, Result]]) -> list[str]:
    out = io.StringIO()
    render_table(rows, out, "终端 SH-0042 自检")
    return out.getvalue().splitlines()


def test_cjk_characters_are_two_columns() -> None:
    assert width("通过") == 4
    assert width("a通b") == 4
    assert width("PASS") == 4


def test_zh_table_columns_stay_aligned() -> None:
    lines = render(ROWS)
    assert lines[0] == "终端 SH-0042 自检"
    head, rule, body = lines[1], lines[2], lines[3:]
    for word in ("设备", "检查项", "结果", "详情", "处理建议"):
        assert word in head
    cols = spans(rule)
    assert len(cols) == 5
    gaps = [i for (_s, e), (s2, _e2) in itertools.pairwise(cols) for i in range(e, s2)]
    assert len(body) > len(ROWS)  # long hints wrapped onto continuation lines
    for line in [head, *body]:
        c = cells(line)
        assert len(c) <= 120, line  # fits the 120-column page of a non-terminal
        for i in gaps:
            assert i >= len(c) or c[i] == " ", f"text crosses a column gap at {i}: {line!r}"
    # each row's first line: device, check, result word start exactly at their columns
    firsts = [line for line in body if not line.startswith(" ")]
    assert len(firsts) == len(ROWS)
    for line, (device, _check, _r) in zip(firsts, ROWS, strict=True):
        c = cells(line)
        assert "".join(c[cols[0][0]:cols[0][1]]).replace("\0", "").rstrip() == device
    words = ["".join(cells(line)[cols[2][0]:cols[2][1]]).replace("\0", "").strip() for line in firsts]
    assert words == ["失败", "失败", "失败", "未知", "通过"]


def test_wrapped_text_continues_in_its_own_column() -> None:
    lines = render(ROWS)
    cols = spans(lines[2])
    for line in lines[3:]:
        c = cells(line)
        if line.startswith(" "):  # continuation: nothing in DEVICE/CHECK/RESULT
            assert set(c[:cols[3][0]]) == {" "}, line
    text = "".join(cells("".join(lines)))
    assert "检查网线、路由器和防火墙" in text.replace("\0", "")


def test_messages_are_rebuilt_in_chinese_with_the_results_numbers() -> None:
    msgs = [display_message(r) for _d, _c, r in ROWS]
    assert msgs[0] == "无法连接 10.0.0.9:443"
    assert msgs[1] == "10.0.0.9:443 返回 HTTP 503 错误"
    assert msgs[2] == "磁盘已满：仅剩 12.5 MB（0.4%）"
    assert msgs[3] == "检查超时：设备卡住或不再响应"
    assert msgs[4] == "磁盘剩余 31.6%，内存已用 1.8%"


def test_a_missing_value_falls_back_to_the_english_message_never_a_zero() -> None:
    r = Result.fail("DISK_FULL", "/var: only 12.5 MB free", measurements={"disk_free_mb": 12.5})
    assert display_message(r) == "/var: only 12.5 MB free"
    # the less specific template is used when the HTTP status is absent
    r = Result.fail("HOST_HTTP_ERROR", "HTTP request to h failed: reset", fields={"host": "h:443"})
    assert display_message(r) == "HTTP 请求失败：HTTP request to h failed: reset"
    assert localized_message("NO_SUCH_CODE", "as the driver said") == "as the driver said"


def test_an_estimate_keeps_its_tilde() -> None:
    r = Result.ok("UPS_OK", "on mains (OL): battery ~87 % (estimated from battery voltage)",
                  measurements={"battery_charge_pct": 87, "battery_charge_estimated": True},
                  fields={"battery_charge_pct": 87, "on_battery": False})
    assert display_message(r) == "市电供电，电池电量 ~87%"


def test_english_keeps_the_drivers_message() -> None:
    set_language("en")
    _d, _c, r = ROWS[2]
    assert display_message(r) == r.message
    assert hint("DISK_FULL") == HINTS["DISK_FULL"]


def test_json_keeps_english_messages_and_codes_with_the_hint_in_chinese() -> None:
    report = Report("SH-0042", Level.INTERNAL, dt.datetime(2026, 5, 9, 14, 3, tzinfo=dt.UTC))
    for device, check, r in ROWS:
        report.checks.append(CheckRecord(device, "host", check, Level.INTERNAL, r))
    out = report_json(report)
    first = out["checks"][0]
    assert first["code"] == "HOST_UNREACHABLE"
    assert first["message"] == "0 of 3 TCP connects to 10.0.0.9:443 succeeded"
    assert first["hint"] == "检查网线、路由器和防火墙；也可能是主机故障。"
    assert out["checks"][4]["hint"] == ""
    assert summary_line([r.status for _d, _c, r in ROWS]) == "未知：通过 1 项，失败 3 项，未知 1 项"


def test_real_host_results_fill_their_templates(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nterminal_id = "T"\nstate_dir = "{tmp_path}"\n'
                   '[[device]]\nname = "up"\ndriver = "host"\nurl = "sim://host"\n'
                   '[[device]]\nname = "down"\ndriver = "host"\nurl = "sim://host?status=503"\n', encoding="utf-8")
    with DeviceSet(load_config(str(cfg))) as devices:
        results = Runner(devices).status()
    up, down = results["up"][1], results["down"][1]
    assert up.code == "HOST_OK" and down.code == "HOST_HTTP_ERROR"
    assert display_message(up) == f"{up.fields['host']} 可连通，延迟 {up.fields['latency_ms']:g} 毫秒"
    assert display_message(down) == f"{down.fields['host']} 返回 HTTP 503 错误"
