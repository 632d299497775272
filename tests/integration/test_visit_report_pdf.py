"""#17: the visit report a merchant can be handed. Real self-tests of simulated devices fill
the history; the HTML report carries inline SVG charts of the last 30 days (no external
asset), opens in headless Chromium without overflowing an A4 page, its zh-CN text is laid
out with the CJK font, and ``--report visit.pdf`` prints it to an A4 PDF whose text
pdftotext extracts. Needs Debian ``chromium``, ``fonts-noto-cjk`` and ``poppler-utils``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from posagent.selftest.visit_charts import Trends, charts
from posagent.selftest.visit_pdf import browser
from tests.conftest import run_cli

DEVICES = """
[[device]]
name = "receipt"
driver = "escpos"
url = "sim://escpos?paper=near_end"
[[device]]
name = "ups"
driver = "megatec"
url = "sim://megatec"
"""
ZH = {"LANG": "zh_CN.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
A4_PX = 794  # 210 mm at 96 px per inch


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    why = f"needs {', '.join(missing)}: apt-get install chromium fonts-noto-cjk poppler-utils"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = browser()
    assert exe is not None
    cmd = [exe, "--headless", "--disable-gpu", "--no-first-run", f"--user-data-dir={cwd / 'profile'}", *args]
    if os.geteuid() == 0:
        cmd.insert(2, "--no-sandbox")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "HOME": str(cwd)})


def test_the_charts_are_well_formed_svg() -> None:
    t = Trends(start=0.0, end=30 * 86400.0)
    t.faults = [{"device": "receipt", "code": "PAPER_NEAR_END", "status": "warn", "first_ts": 86400.0,
                 "cleared_ts": 3 * 86400.0}, {"device": "ups<&>", "code": "X", "status": "fail",
                                              "first_ts": 10 * 86400.0, "cleared_ts": None}]
    t.paper_m = {"receipt": {"1970-01-05": 1.5, "1970-01-06": 0.5}}
    t.battery = {"ups": [(86400.0, 100.0, 27.0), (2 * 86400.0, 80.0, 25.9)]}
    svgs = charts(t)
    assert len(svgs) == 3
    for svg in svgs:
        root = ET.fromstring(svg)  # escaped names: a device called "ups<&>" cannot break it
        assert root.tag.endswith("svg") and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    bars = ET.fromstring(svgs[0]).findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 2
    assert charts(Trends(start=0.0, end=1.0)) == []  # no data: no chart


def test_visit_report_html_and_pdf_in_chromium(write_config: Callable[..., Path], tmp_path: Path) -> None:
    need("chromium", "pdftotext", "fc-match")
    cfg = write_config(DEVICES)
    for _ in range(3):  # three visits: the history, the paper counters and the battery figures fill
        out = run_cli("selftest", "--config", str(cfg), "--level", "external", "--technician", "wang")
        assert out.returncode in (0, 1), out.stderr
    page, pdf = tmp_path / "visit.html", tmp_path / "visit.pdf"
    out = run_cli("selftest", "--config", str(cfg), "--technician", "li", "--report", str(page), env=ZH)
    assert out.returncode in (0, 1), out.stderr
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg") == 3, "faults, paper and battery charts"
    assert "最近 30 天" in html and not re.search(r'(src|href)="(https?:|//)', html)  # nothing external
    # In Chromium at the width of an A4 page: nothing wider than the page.
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>document.title = 'W=' + document.documentElement.scrollWidth"
                                             " + ' V=' + window.innerWidth;</script></body>"), encoding="utf-8")
    dom = chromium(f"--window-size={A4_PX},1123", "--dump-dom", f"file://{probe}", cwd=tmp_path)
    m = re.search(r"<title>W=(\d+) V=(\d+)</title>", dom.stdout)
    assert m, dom.stderr[-500:]
    assert int(m.group(1)) <= int(m.group(2)), f"the report overflows an A4-wide page: {m.group(0)}"
    # zh-CN text is laid out with the CJK font: the report's font stack renders the title
    # exactly as Noto Sans CJK SC does.
    assert "Noto Sans CJK" in subprocess.run(["fc-match", "sans-serif:lang=zh-cn"], capture_output=True,
                                             text=True, timeout=30).stdout
    title = re.search(r"<h1>(.*?)</h1>", html).group(1)  # type: ignore[union-attr]
    stack = re.search(r"font-family:([^;}]+)", html).group(1)  # type: ignore[union-attr]
    shots = []
    for family in (stack, '"Noto Sans CJK SC"', "monospace"):
        sample = tmp_path / f"font-{len(shots)}.html"
        sample.write_text(f'<html><body style="margin:0;font-family:{family};font-size:32px">{title}</body></html>',
                          encoding="utf-8")
        png = tmp_path / f"font-{len(shots)}.png"
        chromium("--window-size=600,60", f"--screenshot={png}", f"file://{sample}", cwd=tmp_path)
        assert png.exists() and png.stat().st_size > 0
        shots.append(png.read_bytes())
    assert shots[0] == shots[1], "the report's fonts do not lay zh-CN text out with Noto Sans CJK"
    assert shots[0] != shots[2]  # (the comparison can tell fonts apart)
    # The PDF: A4, its text extractable.
    out = run_cli("selftest", "--config", str(cfg), "--technician", "li", "--report", str(pdf), env=ZH)
    assert out.returncode in (0, 1), out.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, timeout=30).stdout
    assert re.search(r"Page size:\s+59\d\.\d+ x 841\.\d+ pts \(A4\)", info), info
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=30).stdout
    for words in ("巡检报告", "PAPER_NEAR_END", "最近 30 天", "各设备故障", "每日用纸"):
        assert words in text, (words, text[:500])
