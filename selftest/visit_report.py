"""The technician's visit report: a self-contained Markdown or HTML file, or a short receipt.

Written by ``posagent selftest --report FILE`` (format by extension: .md/.markdown,
.html/.htm, or .pdf: the HTML printed to A4 by headless Chromium, ``visit_pdf``) and
``--print-report`` (the short version, on the receipt printer). It says
which terminal, when, who, the level and overall result, every device's checks with the
result, code, detail and hint (in the chosen language; codes stay English), and the
faults that cleared since the last visit (the previous run a person started, from the
history store), and a line per device with its consumables forecast ("receipt: paper ~3
days left", "ups: battery health 64 %"). Nothing is fetched from elsewhere: the HTML carries its own style.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from typing import Any

from posagent.core.base import Status
from posagent.core.i18n import _, language
from posagent.core.statefile import write_atomic
from posagent.core.status import worst
from posagent.core.version import __version__
from posagent.selftest.hints import hint
from posagent.selftest.messages import display_message
from posagent.selftest.render import check_word, forecast_parts, status_word, summary_line
from posagent.selftest.runner import CheckRecord, Report
from posagent.selftest.textwidth import width
from posagent.selftest.visit_charts import Trends, charts
from posagent.selftest.visit_pdf import html_to_pdf

FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".pdf": "pdf"}


@dataclass
class VisitContext:
    """What the history store adds: the previous visit and the faults cleared since."""

    history_ok: bool = True
    previous_visit: dict[str, Any] | None = None
    cleared: list[dict[str, Any]] = field(default_factory=list)
    trends: Trends | None = None  # the last 30 days, for the HTML report's charts


def report_format(path: str) -> str:
    """'markdown' or 'html' from the file name; ValueError for anything else."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(_("the report file must end in .md, .html or .pdf: {path}").format(path=path))
    return FORMATS[ext]


def _when(report: Report) -> str:
    return report.started_at.strftime("%Y-%m-%d %H:%M:%S %z")


def _short(iso: str | None) -> str:
    return (iso or "")[:16].replace("T", " ")


def _by_device(report: Report) -> list[tuple[str, list[CheckRecord]]]:
    out: dict[str, list[CheckRecord]] = {}
    for c in report.checks:
        out.setdefault(c.device, []).append(c)
    return list(out.items())


def _worst(checks: list[CheckRecord]) -> Status:
    return worst(c.result.status for c in checks)


def _cells(c: CheckRecord) -> list[str]:
    r = c.result
    return [check_word(c.name), status_word(r.status), r.code, display_message(r, c.driver),
            hint(r.code, c.driver) if r.status != Status.OK else ""]


def _facts(report: Report) -> list[tuple[str, str]]:
    return [(_("Terminal"), report.terminal_id), (_("Date"), _when(report)),
            (_("Technician"), report.technician or "-"), (_("Test level"), _(report.level.label)),
            (_("Overall result"), summary_line([c.result.status for c in report.checks])),
            (_("Agent"), f"posagent {__version__}")]


def forecasts(report: Report) -> list[tuple[str, list[str]]]:
    """(device, ["paper ~3 days left", ...]) for every device with a known forecast; the
    latest check of the device that carries a figure wins."""
    out: list[tuple[str, list[str]]] = []
    for device, checks in _by_device(report):
        fields: dict[str, Any] = {}
        for c in checks:
            fields.update({k: v for k, v in c.result.fields.items() if v is not None})
        parts = forecast_parts(fields)
        if parts:
            out.append((device, parts))
    return out


def _cleared_title(ctx: VisitContext) -> str:
    if ctx.previous_visit:
        return _("Faults cleared since the last visit ({when}, {who})").format(
            when=_short(ctx.previous_visit["started_at"]), who=ctx.previous_visit["technician"])
    return _("Faults cleared since records began")


def _cleared_rows(ctx: VisitContext) -> list[list[str]]:
    return [[f["device"], f["code"], _short(f["first_seen"]), _short(f["cleared"])] for f in ctx.cleared]


def _cleared_note(ctx: VisitContext) -> str:
    if not ctx.history_ok:
        return _("The history store could not be written, so faults cleared since the last visit are not known.")
    return _("None.") if not ctx.cleared else ""


# -- Markdown ------------------------------------------------------------------
def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(heads: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: Report, ctx: VisitContext) -> str:
    out = [f"# {_md(_('Visit report: {terminal}').format(terminal=report.terminal_id))}", ""]
    out += _md_table(["", ""], [[f"**{k}**", v] for k, v in _facts(report)])
    out += ["", f"## {_('Devices')}"]
    heads = [_("Check"), _("Result"), _("Code"), _("Detail"), _("What to do")]
    for device, checks in _by_device(report):
        out += ["", "### " + _md(_("{device}: {status}").format(device=device, status=status_word(_worst(checks)))),
                ""]
        out += _md_table(heads, [_cells(c) for c in checks])
    out += ["", f"## {_('Consumables forecast')}", ""]
    out += [f"- **{_md(device)}**: {_md(_('; ').join(parts))}" for device, parts in forecasts(report)] \
        or [_("None.")]
    out += ["", f"## {_md(_cleared_title(ctx))}", ""]
    note = _cleared_note(ctx)
    out += [note] if note else _md_table([_("Device"), _("Fault"), _("Appeared"), _("Cleared")],
                                          _cleared_rows(ctx))
    out += ["", "---", "", f"{_('Technician signature')}: ____________________    "
            f"{_('Merchant signature')}: ____________________", ""]
    return "\n".join(out)


# -- HTML ----------------------------------------------------------------------
_CSS = """body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #bbb;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#eee}.ok{color:#1a7f37}.warn{color:#9a6700}
.fail{color:#cf222e;font-weight:bold}.unknown{color:#8250df;font-weight:bold}code{font-size:90%}
.sign{margin-top:3em}table{max-width:100%;table-layout:auto}td{overflow-wrap:anywhere}td code{white-space:nowrap}
figure.chart{margin:.5em 0 1em;max-width:680px}figure.chart svg{display:block;max-width:100%;height:auto}
@page{size:A4;margin:1.5cm}@media print{body{margin:0}h2,h3,figure{break-after:avoid}tr,figure{break-inside:avoid}}"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(heads: list[str], rows: list[list[str]], raw_cols: tuple[int, ...] = ()) -> list[str]:
    lines = ["<table>", "<tr>" + "".join(f"<th>{_h(h)}</th>" for h in heads) + "</tr>"]
    for row in rows:
        lines.append("<tr>" + "".join(f"<td>{c if i in raw_cols else _h(c)}</td>" for i, c in enumerate(row))
                     + "</tr>")
    return [*lines, "</table>"]


def _badge(status: Status) -> str:
    return f'<span class="{status.label}">{_h(status_word(status))}</span>'


def render_html(report: Report, ctx: VisitContext) -> str:
    title = _("Visit report: {terminal}").format(terminal=report.terminal_id)
    out = ["<!DOCTYPE html>", f'<html lang="{_h(language())}">', "<head>", '<meta charset="utf-8">',
           f"<title>{_h(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{_h(title)}</h1>"]
    out += _html_table([_("Item"), _("Value")], [[k, v] for k, v in _facts(report)])
    out.append(f"<h2>{_h(_('Devices'))}</h2>")
    heads = [_("Check"), _("Result"), _("Code"), _("Detail"), _("What to do")]
    for device, checks in _by_device(report):
        out.append("<h3>" + _("{device}: {status}").format(device=_h(device), status=_badge(_worst(checks))) + "</h3>")
        rows = []
        for c in checks:
            cells = [_h(x) for x in _cells(c)]
            cells[1] = _badge(c.result.status)
            cells[2] = f"<code>{cells[2]}</code>"
            rows.append(cells)
        out += _html_table(heads, rows, raw_cols=(0, 1, 2, 3, 4))
    out.append(f"<h2>{_h(_('Consumables forecast'))}</h2>")
    lines = forecasts(report)
    out += ["<ul>", *[f"<li><b>{_h(d)}</b>: {_h(_('; ').join(p))}</li>" for d, p in lines], "</ul>"] if lines else \
        [f"<p>{_h(_('None.'))}</p>"]
    out.append(f"<h2>{_h(_cleared_title(ctx))}</h2>")
    note = _cleared_note(ctx)
    out += [f"<p>{_h(note)}</p>"] if note else _html_table(
        [_("Device"), _("Fault"), _("Appeared"), _("Cleared")], _cleared_rows(ctx))
    out.append(f"<h2>{_h(_('The last 30 days'))}</h2>")
    svgs = charts(ctx.trends) if ctx.trends is not None else []
    out += [f'<figure class="chart">{svg}</figure>' for svg in svgs] or [
        f"<p>{_h(_('Nothing recorded yet: the charts fill as the agent runs.'))}</p>"]
    out.append(f'<p class="sign">{_h(_("Technician signature"))}: ____________________ &nbsp; &nbsp; '
               f'{_h(_("Merchant signature"))}: ____________________</p>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


# -- receipt -------------------------------------------------------------------
def _two(left: str, right: str, columns: int) -> str:
    gap = columns - width(left) - width(right)
    return left + " " * gap + right if gap >= 1 else f"{left} {right}"


def short_lines(report: Report, ctx: VisitContext, columns: int = 32) -> list[str]:
    """The short version for a receipt printer: one line per device, fixed faults, signature."""
    rule = "-" * columns
    lines = [_("VISIT REPORT"), _two(_("Terminal"), report.terminal_id, columns),
             _two(_("Date"), report.started_at.strftime("%Y-%m-%d %H:%M"), columns),
             _two(_("Technician"), report.technician or "-", columns),
             _two(_("Result"), status_word(report.status), columns), rule]
    forecast = dict(forecasts(report))
    for device, checks in _by_device(report):
        lines.append(_two(device, status_word(_worst(checks)), columns))
        codes = []
        for c in checks:
            if c.result.status != Status.OK and c.result.code not in codes:
                codes.append(c.result.code)
        lines += [f"  {code}" for code in codes]
        lines += [f"  {part}" for part in forecast.get(device, [])]
    if ctx.history_ok:
        lines += [rule, _("Fixed since the last visit:")]
        lines += [f"  {f['device']} {f['code']}" for f in ctx.cleared] or ["  " + _("None.")]
    lines += [rule, _("Technician signature") + ":", "", "", _("Merchant signature") + ":", "", ""]
    return lines


def write_report(path: str, report: Report, ctx: VisitContext) -> None:
    """Write the report file (format by extension); OSError if it cannot be written."""
    kind = report_format(path)
    if kind == "pdf":
        html_to_pdf(render_html(report, ctx), path)
        return
    text = render_html(report, ctx) if kind == "html" else render_markdown(report, ctx)
    write_atomic(path, text, make_dir=False)
