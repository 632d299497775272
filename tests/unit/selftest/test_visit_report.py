"""The visit report: Markdown, HTML and the receipt version, in English and Chinese."""

from __future__ import annotations

import datetime as dt
import html.parser
from collections.abc import Iterator
from pathlib import Path

import pytest

from posagent.config import load_config
from posagent.core.base import Level, Result
from posagent.core.i18n import set_language
from posagent.fleet.history import record_selftest
from posagent.fleet.visit import visit_context
from posagent.selftest.runner import CheckRecord, Report
from posagent.selftest.textwidth import width
from posagent.selftest.visit_report import (
    VisitContext,
    render_html,
    render_markdown,
    report_format,
    short_lines,
    write_report,
)

TZ = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(autouse=True)
def english_after() -> Iterator[None]:
    yield
    set_language("en")


def make_report(technician: str = "li", when: dt.datetime | None = None,
                results: list[tuple[str, str, Result]] | None = None) -> Report:
    report = Report("SH-0042", Level.EXTERNAL, when or dt.datetime(2026, 5, 9, 14, 3, 7, tzinfo=TZ),
                    duration_ms=812.0, technician=technician)
    for device, check, r in results if results is not None else [
        ("acquirer", "status", Result.fail("HOST_HTTP_ERROR", "10.0.0.9 answered HTTP 503 <script>|x",
                                           measurements={"http_status": 503}, fields={"host": "10.0.0.9:443"})),
        ("system", "status", Result.warn("DISK_LOW", "/var: 4 % free, below 10 %",
                                         measurements={"disk_free_pct": 4.0})),
        ("system", "clock", Result.ok("SYSTEM_OK", "disk 4 % free, memory 20 % used",
                                      measurements={"disk_free_pct": 4.0, "memory_used_pct": 20.0})),
    ]:
        report.checks.append(CheckRecord(device, "host", check, Level.INTERNAL, r))
    return report


CTX = VisitContext(True, {"started_at": "2026-04-01T10:00:00+08:00", "technician": "wang", "ts": 0.0},
                   [{"device": "receipt", "code": "PAPER_END", "status": "fail", "message": "paper end",
                     "first_seen": "2026-04-20T09:00:00+08:00", "cleared": "2026-04-21T08:00:00+08:00"}])


def test_markdown_has_everything_a_merchant_is_handed() -> None:
    md = render_markdown(make_report(), CTX)
    assert md.startswith("# Visit report: SH-0042\n")
    for text in ("| **Terminal** | SH-0042 |", "| **Technician** | li |", "| **Test level** | external |",
                 "2026-05-09 14:03:07 +0800", "| **Overall result** | FAIL: 1 pass, 1 warn, 1 fail |",
                 "### acquirer: FAIL", "### system: WARN", "HOST_HTTP_ERROR", "DISK_LOW",
                 "The host answered with an error: report it to the acquirer or fleet operator.",
                 "Disk space is running low: remove old logs or files soon.",
                 "## Faults cleared since the last visit (2026-04-01 10:00, wang)",
                 "| receipt | PAPER_END | 2026-04-20 09:00 | 2026-04-21 08:00 |", "Merchant signature"):
        assert text in md, text
    row = next(line for line in md.splitlines() if "HOST_HTTP_ERROR" in line)
    assert "503 <script>\\|x" in row  # a pipe in a message cannot break the table
    assert row.replace("\\|", "").count("|") == 6


def test_html_is_self_contained_well_formed_and_escaped() -> None:
    page = render_html(make_report(), CTX)

    class Checker(html.parser.HTMLParser):
        VOID = frozenset({"meta", "br", "hr", "img", "link", "input"})

        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            assert not any(k in ("src", "href") for k, _v in attrs), "nothing fetched from elsewhere"
            if tag not in self.VOID:
                self.stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.stack and self.stack.pop() == tag, tag

    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert "script" not in checker.tags and "&lt;script&gt;" in page
    assert '<meta charset="utf-8">' in page and '<html lang="en">' in page
    assert "<style>" in page and page.count("<table>") == 4
    assert '<span class="fail">FAIL</span>' in page


def test_chinese_report_for_a_chinese_technician() -> None:
    set_language("zh-CN")
    md = render_markdown(make_report("李师傅"), CTX)
    for text in ("# 巡检报告：SH-0042", "| **维护员** | 李师傅 |", "### acquirer：失败",
                 "10.0.0.9:443 返回 HTTP 503 错误", "主机返回错误：请报告收单机构或运维中心。",
                 "上次巡检（2026-04-01 10:00，wang）以来已消除的故障", "商户签字", "HOST_HTTP_ERROR"):
        assert text in md, text
    assert '<html lang="zh-CN">' in render_html(make_report(), CTX)


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("columns", [32, 42])
def test_receipt_lines_fit_the_paper(lang: str, columns: int) -> None:
    set_language(lang)
    lines = short_lines(make_report(), CTX, columns)
    assert all(width(line) <= columns for line in lines), lines
    text = "\n".join(lines)
    assert "SH-0042" in text and "HOST_HTTP_ERROR" in text and "receipt PAPER_END" in text
    assert ("VISIT REPORT" if lang == "en" else "巡检报告") in lines[0]


def test_report_format_by_extension() -> None:
    assert report_format("visit.md") == "markdown"
    assert report_format("/tmp/Visit.HTML") == "html"
    assert report_format("v.htm") == "html"
    assert report_format("visit.PDF") == "pdf"
    with pytest.raises(ValueError, match=r"\.md, \.html or \.pdf"):
        report_format("visit.txt")


def test_write_report_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "visit.html"
    path.write_text("old")
    write_report(str(path), make_report(), CTX)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["visit.html"]
    with pytest.raises(OSError):
        write_report(str(tmp_path / "missing" / "v.md"), make_report(), CTX)


def test_faults_cleared_since_the_last_visit_come_from_the_history(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nterminal_id = "SH-0042"\nstate_dir = "{tmp_path}"\n', encoding="utf-8")
    config = load_config(str(cfg))
    t0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=TZ)
    http = Result.fail("HOST_HTTP_ERROR", "answered HTTP 503")
    disk = Result.warn("DISK_LOW", "4 % free")
    ok_host, ok_sys = Result.ok("HOST_OK", "reachable"), Result.ok("SYSTEM_OK", "fine")
    earlier = Result.fail("HOST_UNREACHABLE", "down")
    runs = [("zhao", [("acquirer", "status", earlier), ("system", "status", ok_sys)]),  # an older visit
            ("wang", [("acquirer", "status", http), ("system", "status", disk)]),  # the last visit
            ("", [("acquirer", "status", http), ("system", "status", ok_sys)]),  # nightly: disk fixed
            ("li", [("acquirer", "status", ok_host), ("system", "status", ok_sys)])]  # this visit
    for i, (who, results) in enumerate(runs):
        assert record_selftest(config, make_report(who, t0 + dt.timedelta(days=i), results))
    ctx = visit_context(str(tmp_path))
    assert ctx.previous_visit is not None and ctx.previous_visit["technician"] == "wang"
    assert [(f["device"], f["code"]) for f in ctx.cleared] == [("system", "DISK_LOW"), ("acquirer", "HOST_HTTP_ERROR")]
    md = render_markdown(make_report("li", t0 + dt.timedelta(days=3)), ctx)
    assert "| system | DISK_LOW | 2026-05-02 09:00 | 2026-05-03 09:00 |" in md
    assert "HOST_UNREACHABLE |" not in md.split("## Faults cleared")[1]  # cleared before the last visit


def test_without_a_history_the_report_says_so() -> None:
    ctx = VisitContext(history_ok=False)
    md = render_markdown(make_report(), ctx)
    assert "could not be written" in md
    assert "Fixed since the last visit:" not in "\n".join(short_lines(make_report(), ctx))


def _forecast_report() -> Report:
    return make_report(results=[
        ("receipt", "status", Result.ok("PRINTER_OK", "ready", fields={"paper_remaining_pct": 42.5,
                                                                      "paper_days_left": 3.2,
                                                                      "ribbon_days_left": None})),
        ("slip", "status", Result.ok("PRINTER_OK", "ready", fields={"ribbon_days_left": 12.5,
                                                                   "paper_remaining_pct": None})),
        ("ups", "status", Result.ok("UPS_OK", "on mains", fields={"battery_health_pct": 64.3})),
        ("ups2", "status", Result.ok("UPS_OK", "on mains", fields={"battery_health_pct": None})),
    ])


def test_every_format_has_a_forecast_line_per_device() -> None:
    report = _forecast_report()
    md = render_markdown(report, CTX)
    assert "## Consumables forecast" in md
    assert "- **receipt**: paper ~3.2 days left" in md and "- **slip**: ribbon ~12.5 days left" in md
    assert "- **ups**: battery health 64.3 %" in md and "**ups2**" not in md.split("## Consumables")[1]
    assert "<li><b>receipt</b>: paper ~3.2 days left</li>" in render_html(report, CTX)
    receipt = short_lines(report, CTX)
    assert "  paper ~3.2 days left" in receipt and "  battery health 64.3 %" in receipt
    assert all(width(line) <= 32 for line in receipt)
    set_language("zh-CN")
    assert "- **receipt**: 纸张约还够 3.2 天" in render_markdown(report, CTX)


def test_no_forecast_says_none() -> None:
    md = render_markdown(make_report(), CTX)
    assert md.split("## Consumables forecast")[1].lstrip().startswith("None.")
