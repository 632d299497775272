"""``selftest --report FILE`` and ``--print-report``: the file through the real CLI, the receipt
through the escpos driver to a simulated printer on a real pty."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posagent.config import load_config
from posagent.core.base import Level, Result
from posagent.core.i18n import set_language
from posagent.core.registry import DriverLoadError, load_driver
from posagent.selftest.runner import CheckRecord, Report
from posagent.selftest.visit_report import VisitContext
from tests.conftest import run_cli

HOST_503 = '[[device]]\nname = "acquirer"\ndriver = "host"\nurl = "sim://host?status=503"\n'


@pytest.fixture(autouse=True)
def english_after() -> Iterator[None]:
    yield
    set_language("en")


def test_report_files_markdown_and_html(write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = write_config(HOST_503)
    md, page = tmp_path / "visit.md", tmp_path / "visit.html"
    out = run_cli("selftest", "--config", str(cfg), "--technician", "wang", "--report", str(md))
    assert out.returncode == 2, out.stderr
    text = md.read_text(encoding="utf-8")
    assert "| **Technician** | wang |" in text and "HOST_HTTP_ERROR" in text
    assert "The host answered with an error" in text and "Faults cleared since records began" in text
    cfg = write_config(HOST_503.replace("503", "200"))
    out = run_cli("selftest", "--config", str(cfg), "--technician", "li", "--report", str(page),
                  env={"LANG": "zh_CN.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""})
    assert out.returncode == 0, out.stderr
    assert "巡检报告已保存到" in out.stderr
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in html
    assert "上次巡检" in html and "wang" in html and "<td>HOST_HTTP_ERROR</td>" in html  # fixed this visit


def test_report_problems_are_clear_and_never_a_traceback(write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = write_config(HOST_503.replace("503", "200"))
    bad_name = run_cli("selftest", "--config", str(cfg), "--report", str(tmp_path / "visit.txt"))
    assert bad_name.returncode == 64 and ".md, .html or .pdf" in bad_name.stderr
    assert json.loads(run_cli("history", "--config", str(cfg), "--json").stdout)["runs"] == []  # nothing ran
    unwritable = run_cli("selftest", "--config", str(cfg), "--report", str(tmp_path / "no" / "visit.md"))
    assert unwritable.returncode == 73, unwritable.stdout + unwritable.stderr
    assert "cannot write the visit report" in unwritable.stderr and "Traceback" not in unwritable.stderr
    failing = write_config(HOST_503)
    both = run_cli("selftest", "--config", str(failing), "--report", str(tmp_path / "no" / "visit.md"))
    assert both.returncode == 2  # the test's own result wins over the report's


def need_escpos() -> None:
    try:
        cls = load_driver("escpos")
    except DriverLoadError as e:
        pytest.skip(f"escpos driver not available: {e}")
    if not hasattr(cls, "print_lines"):
        pytest.skip("escpos driver has no print_lines yet")


def small_report() -> Report:
    report = Report("SH-0042", Level.EXTERNAL, dt.datetime.now().astimezone(), technician="li")
    report.checks.append(CheckRecord("receipt", "escpos", "status", Level.INTERNAL,
                                     Result.warn("PAPER_NEAR_END", "paper near end")))
    return report


def printer_config(tmp_path: Path, url: str, encoding: str) -> object:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nterminal_id = "SH-0042"\nstate_dir = "{tmp_path / "state"}"\n'
                   f'[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "{url}"\n'
                   f'[device.options]\ntext_encoding = "{encoding}"\npaper_width_mm = 58.0\n', encoding="utf-8")
    return load_config(str(cfg))


@pytest.mark.parametrize(("lang", "encoding", "expect"), [
    ("en", "ascii", "VISIT REPORT"),
    ("zh-CN", "gb18030", "巡检报告"),
    ("zh-CN", "ascii", "VISIT REPORT"),  # no Chinese code page: English, not question marks
])
def test_the_short_report_prints_on_the_receipt_printer(tmp_path: Path, lang: str, encoding: str,
                                                        expect: str) -> None:
    need_escpos()
    from posagent.drivers.simulator import start_sim
    from posagent.fleet.visit import print_on_receipt

    handle = start_sim("escpos", {})
    try:
        config = printer_config(tmp_path, handle.url, encoding)
        set_language(lang)
        ctx = VisitContext(True, None, [{"device": "receipt", "code": "PAPER_END", "first_seen": "", "cleared": ""}])
        assert print_on_receipt(config, small_report(), ctx)  # type: ignore[arg-type]
        printed = handle.sim.printed_lines  # type: ignore[attr-defined]
    finally:
        handle.stop()
    assert printed[0].strip() == expect
    assert any("SH-0042" in line for line in printed)
    assert any("PAPER_NEAR_END" in line for line in printed)
    assert any("receipt PAPER_END" in line for line in printed)
    assert all(len(line) <= 32 for line in printed if encoding == "ascii")


def test_a_printer_out_of_paper_says_why_it_cannot_print(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_escpos()
    from posagent.drivers.simulator import start_sim
    from posagent.fleet.visit import print_on_receipt

    handle = start_sim("escpos", {"paper": "end"})
    try:
        config = printer_config(tmp_path, handle.url, "ascii")
        assert not print_on_receipt(config, small_report(), VisitContext())  # type: ignore[arg-type]
        printed = handle.sim.printed_lines  # type: ignore[attr-defined]
    finally:
        handle.stop()
    err = capsys.readouterr().err
    assert "cannot print the visit report on receipt" in err and "PAPER_END" in err
    assert "Load a new paper roll" in err
    assert printed == []


def test_print_report_through_the_cli(write_config: Callable[..., Path]) -> None:
    need_escpos()
    cfg = write_config('[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "sim://escpos"\n')
    out = run_cli("selftest", "--config", str(cfg), "--level", "internal", "--print-report")
    assert out.returncode == 0, out.stderr
    assert "Visit report printed on receipt" in out.stderr
    none = write_config(HOST_503.replace("503", "200"))
    out = run_cli("selftest", "--config", str(none), "--print-report")
    assert out.returncode == 73 and "no receipt printer" in out.stderr
