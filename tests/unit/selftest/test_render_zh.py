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

from posagent.config import ConfigError, load_config
from posagent.config.loader import validate
from posagent.core.base import Level, Result
from posagent.core.i18n import _, set_language
from posagent.drivers.system_codes import CODES as SYSTEM_CODES
from posagent.selftest.devices import DeviceSet
from posagent.selftest.hints import all_hints, hint
from posagent.selftest.messages import display_message, localized_message
from posagent.selftest.render import render_table, report_json, summary_line
from posagent.selftest.runner import CheckRecord, Report, Runner
from posagent.selftest.textwidth import NO_LINE_END, NO_LINE_START, _tokens, width, wrap
from tests.conftest import free_port


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
    assert "检查网线、路由器、防火墙和 DNS 设置" in text.replace("\0", "")


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
    assert hint("DISK_FULL") == SYSTEM_CODES["DISK_FULL"].hint


def test_json_keeps_english_messages_and_codes_with_the_hint_in_chinese() -> None:
    report = Report("SH-0042", Level.INTERNAL, dt.datetime(2026, 5, 9, 14, 3, tzinfo=dt.UTC))
    for device, check, r in ROWS:
        report.checks.append(CheckRecord(device, "host", check, Level.INTERNAL, r))
    out = report_json(report)
    first = out["checks"][0]
    assert first["code"] == "HOST_UNREACHABLE"
    assert first["message"] == "0 of 3 TCP connects to 10.0.0.9:443 succeeded"
    assert first["hint"] == "检查网线、路由器、防火墙和 DNS 设置；也可能是主机故障。"
    assert out["checks"][4]["hint"] == ""
    # a failure outranks an unknown (fail > unknown > warn > ok)
    assert summary_line([r.status for _d, _c, r in ROWS]) == "失败：通过 1 项，失败 3 项，未知 1 项"


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


# -- line breaking (kinsoku) -----------------------------------------------------------
def test_cjk_lines_never_start_with_closing_punctuation_nor_end_with_an_opening_bracket() -> None:
    assert wrap("检查设备已插好并通电，并确认配置中的端口正确。", 44) == [
        "检查设备已插好并通电，并确认配置中的端口正", "确。"]  # not "...端口正确" + "。"
    assert wrap("一二三四五六七八九（十）", 18) == ["一二三四五六七八九", "（十）"]  # "（" moves down
    # the number keeps its unit (it used to break into "仅剩 12.5" / "MB（0.4%）")
    assert wrap("磁盘已满：仅剩 12.5 MB（0.4%）", 10) == ["磁盘已满：", "仅剩", "12.5 MB", "（0.4%）"]
    texts = sorted({_(t) for t in all_hints().values()})
    assert len(texts) > 50
    for cols in range(20, 61, 4):
        for text in texts:
            lines = wrap(text, cols)
            assert "".join(lines).replace(" ", "") == text.replace(" ", ""), (cols, text)  # nothing lost
            for i, line in enumerate(lines):
                assert width(line) <= cols or len(_tokens(line)) == 1, (cols, line)
                if i:
                    assert line[0] not in NO_LINE_START - set(",.;:!?%"), (cols, lines)
                if i < len(lines) - 1:
                    assert line[-1] not in NO_LINE_END, (cols, lines)


def test_english_still_wraps_at_spaces() -> None:
    assert wrap("reseat the cable, then run the test again", 16) == ["reseat the", "cable, then run", "the test again"]
    assert wrap("pass a .toml file", 7) == ["pass a", ".toml", "file"]


# -- failures described from their facts, not the driver's English ----------------------
def test_failing_devices_are_described_in_chinese_from_their_facts(tmp_path: Path) -> None:
    port = free_port()
    # two absent ports, not one shared: devices polled at once must not meet each other's lock file
    serial, serial2, event = tmp_path / "ttyNOPE", tmp_path / "ttyNOPE2", tmp_path / "event99"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nterminal_id = "T"\nstate_dir = "{tmp_path}"\n'
                   f'[[device]]\nname = "prn"\ndriver = "escpos"\nurl = "serial://{serial}"\n'
                   f'[[device]]\nname = "net"\ndriver = "escpos"\nurl = "tcp://127.0.0.1:{port}"\n'
                   f'[[device]]\nname = "kp"\ndriver = "evdev-keypad"\nurl = "evdev://{event}"\n'
                   f'[[device]]\nname = "ups"\ndriver = "nut"\nurl = "nut://127.0.0.1:{port}/ups"\n'
                   f'[[device]]\nname = "rdr"\ndriver = "card-reader"\nurl = "serial://{serial2}"\n',
                   encoding="utf-8")
    with DeviceSet(load_config(str(cfg))) as devices:
        results = Runner(devices).status()
    msgs = {name: display_message(r, drv) for name, (drv, r) in results.items()}
    assert msgs == {
        "prn": f"打印机未连接：{serial} 不存在（没插好？）",
        "net": f"打印机未连接：127.0.0.1:{port} 拒绝连接",
        "kp": f"找不到键盘：{event} 不存在（没插好？）",
        "ups": f"无法连接 upsd：127.0.0.1:{port} 拒绝连接",
        "rdr": f"找不到读卡器：{serial2} 不存在（没插好？）",
    }
    prn = results["prn"][1]
    assert prn.code == "PRINTER_NOT_CONNECTED" and "does not exist" in prn.message  # JSON keeps English
    assert prn.facts["path"] == str(serial) and prn.facts["reason"] == "absent"
    assert results["ups"][1].facts == {"host": "127.0.0.1", "port": port, "reason": "refused"}


def test_facts_pick_the_template_and_detail_is_the_last_resort() -> None:
    r = Result.unknown("DEVICE_IO_ERROR", "usb 0519:0001: read failed: [Errno 19]",
                       measurements={"usb_id": "0519:0001", "reason": "read_failed"})
    assert display_message(r) == "与设备的连接中断：USB 0519:0001 无法读取"
    r = Result.unknown("KEYPAD_NOT_PRESENT", "no input device named 'Pad' among 3 readable device(s)",
                       measurements={"input_name": "Pad", "reason": "no_such_name"})
    assert display_message(r) == "找不到键盘：'Pad' 不在输入设备中"
    r = Result.unknown("DEVICE_PERMISSION_DENIED", "no access to /dev/ttyS0 (add ... group dialout)",
                       measurements={"path": "/dev/ttyS0", "group": "dialout"})
    assert display_message(r) == "没有权限打开 /dev/ttyS0：请把 posagent 用户加入 dialout 组"
    r = Result.unknown("DRIVER_UNAVAILABLE", "pyusb is not installed (pip install pyusb)",
                       measurements={"package": "pyusb", "install": "pip install pyusb"})
    assert display_message(r) == "驱动无法在本机运行：未安装 pyusb（pip install pyusb）"
    r = Result.ok("UPS_TEST_SKIPPED", "battery test not run: 2027-02-06 is a blackout date",
                  measurements={"reason": "blackout_date"})
    assert display_message(r) == "未进行电池测试：今天是禁止测试的日期"
    # an unknown reason token never shows: the next template, else the driver's own text
    r = Result.unknown("DEVICE_NOT_FOUND", "gizmo vanished", measurements={"path": "/dev/x", "reason": "vanished"})
    assert display_message(r) == "找不到设备：gizmo vanished"
    r = Result.ok("UPS_TEST_SKIPPED", "battery test not run: a third-party reason")
    assert display_message(r) == "battery test not run: a third-party reason"


# -- config errors ----------------------------------------------------------------------
RAW = {"agent": {"heartbaet_interval": "60s", "check_timeout": True},
       "device": [{"name": "p", "driver": "escpso", "url": "serial:///dev/ttyS0?baud=9600"}]}


def config_problems() -> list[str]:
    with pytest.raises(ConfigError) as ei:
        validate(RAW, "/etc/posagent/posagent.toml")
    return ei.value.problems


def test_config_errors_read_as_chinese_sentences() -> None:
    problems = config_problems()
    assert problems == [
        "/etc/posagent/posagent.toml：agent.heartbaet_interval：未知的配置项；是不是要写“heartbeat_interval”？",
        '/etc/posagent/posagent.toml：agent.check_timeout：应为时长，例如 "60s" 或 "30m"，实际为 布尔值',
        "/etc/posagent/posagent.toml：device[0] (p).driver：未知驱动“escpso”；是不是要写“escpos”？",
        "/etc/posagent/posagent.toml：device[0] (p).url：未知的串口设置“baud”（是不是要写“baudrate”？）",
    ]


def test_config_errors_stay_exactly_english_in_english() -> None:
    set_language("en")
    assert config_problems() == [
        "/etc/posagent/posagent.toml: agent.heartbaet_interval: unknown key; did you mean 'heartbeat_interval'?",
        '/etc/posagent/posagent.toml: agent.check_timeout: expected a duration like "60s" or "30m", got a '
        'boolean',
        "/etc/posagent/posagent.toml: device[0] (p).driver: unknown driver 'escpso'; did you mean 'escpos'?",
        "/etc/posagent/posagent.toml: device[0] (p).url: unknown serial setting 'baud' (did you mean 'baudrate'?)",
    ]


def test_a_number_keeps_its_unit_and_a_pipe_takes_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from posagent.selftest.render import _piped_columns
    from posagent.selftest.textwidth import wrap

    for cols in range(8, 40):
        lines = wrap("no answer within 1 s, load 23 %, input 230 V, 4.5 ms", cols)
        assert not any(line.split(" ")[0] in ("s,", "%,", "V,", "ms") for line in lines[1:]), (cols, lines)
    monkeypatch.setenv("COLUMNS", "200")
    assert _piped_columns() == 200
    monkeypatch.setenv("COLUMNS", "junk")
    assert _piped_columns() == 120


def test_forecasts_are_a_note_in_detail_within_the_width() -> None:
    rows = [("receipt", "status", Result.ok("PRINTER_OK", "ready: paper ok, cover closed",
                                            fields={"paper_remaining_pct": 42.5, "paper_days_left": 3.2})),
            ("slip", "status", Result.ok("PRINTER_OK", "ready: paper ok, cover closed",
                                         fields={"ribbon_days_left": 12.5, "paper_remaining_pct": None})),
            ("ups", "status", Result.ok("UPS_OK", "on mains (OL)", fields={"battery_health_pct": 64.3,
                                                                          "on_battery": False})),
            ("ups2", "status", Result.ok("UPS_OK", "on mains (OL)", fields={"battery_health_pct": None})),
            ("ups", "battery_test", Result.ok("UPS_TEST_PASSED", "10-second battery test passed",
                                              fields={"battery_health_pct": 64.3}))]
    lines = render(rows)
    text = "".join(cells("".join(lines))).replace("\0", "").replace(" ", "")
    assert "纸张约还够3.2天" in text and "色带约还够12.5天" in text and "电池健康度64.3%" in text
    assert text.count("电池健康度") == 1  # on the status row only
    assert all(len(cells(line)) <= 120 for line in lines)
    set_language("en")
    out = io.StringIO()
    render_table(rows, out, "Status")
    table = " ".join(out.getvalue().split())  # wrapped DETAIL lines joined (OK rows have no hint)
    assert "paper ~3.2 days left" in table and "battery health 64.3 %" in table
    assert "ups2" in table and table.count("battery health") == 1  # null: nothing shown, never 0
