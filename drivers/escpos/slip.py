"""Test-slip and plain-text job composition (bytes only; the driver sends them).

The test slip is composed with python-escpos (``escpos.printer.Dummy``), imported only
inside ``compose_slip`` so the status path never loads it. Feed and cut are added as
native bytes (python-escpos's ``cut(feed=False)`` always sends a partial cut), and the
QR code uses the native ``GS ( k`` commands. Text is reduced to printable ASCII on the
slip: the printer's code page is unknown, and no byte of a job may ever form a
real-time command (``DLE EOT`` / ``DLE ENQ`` / ``DLE DC4``) inside the data.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from posagent.core.base import Result

ESC_INIT = b"\x1b@"  # ESC @
FS_KANJI_ON = b"\x1c&"  # FS &: Chinese (GB) character mode on Chinese-market models
FS_KANJI_OFF = b"\x1c."  # FS .
CUTS = {"partial": b"\x1dVB\x00", "full": b"\x1dVA\x00", "none": b""}  # GS V 66 0 / GS V 65 0
REAL_TIME = (b"\x10\x04", b"\x10\x05", b"\x10\x14")
#: Dots per mm of a typical 180-203 dpi head, for the printed-length estimate of a QR code.
DOTS_PER_MM = 8.0
QR_MODULE_DOTS = 4
QR_MAX = 200


@dataclass(frozen=True)
class Job:
    """Bytes to send and what they print (for the consumables counters)."""

    data: bytes
    lines: int  # text lines (wrapped) plus feed lines
    extra_mm: float = 0.0  # printed length that is not text lines (QR code)
    cuts: int = 0
    text: list[str] = field(default_factory=list)

    def length_mm(self, line_height_mm: float) -> float:
        return round(self.lines * line_height_mm + self.extra_mm, 1)


@dataclass(frozen=True)
class SlipInfo:
    terminal_id: str
    local_time: str
    agent_version: str
    model: str | None
    firmware: str | None
    results: dict[str, Result]
    device_name: str = ""


def ascii_text(text: str) -> str:
    """Printable ASCII only: anything else becomes '?'."""
    return "".join(ch if 0x20 <= ord(ch) <= 0x7E else "?" for ch in text)


def _char_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def hard_wrap(text: str, columns: int) -> list[str]:
    """Split a line into pieces of at most ``columns`` display columns (CJK = 2)."""
    if columns <= 0 or not text:
        return [text]
    out, cur, w = [], "", 0
    for ch in text:
        cw = _char_width(ch)
        if w + cw > columns and cur:
            out.append(cur)
            cur, w = "", 0
        cur += ch
        w += cw
    out.append(cur)
    return out


def _check_no_real_time(data: bytes) -> None:
    for seq in REAL_TIME:
        if seq in data:
            raise ValueError(f"job data holds the real-time sequence {seq.hex(' ')}")


def _tail(feed_lines: int, cut: str) -> bytes:
    return (b"\x1bd" + bytes((max(0, min(255, feed_lines)),))) + CUTS[cut]


def ruler(columns: int) -> list[str]:
    """A column ruler and the printable ASCII set, each ``columns`` wide."""
    marks = "".join(str((i // 10) % 10) if i % 10 == 0 else ("+" if i % 5 == 0 else ".")
                    for i in range(1, columns + 1))
    digits = ("1234567890" * (columns // 10 + 1))[:columns]
    charset = "".join(chr(c) for c in range(0x21, 0x7F))
    return [marks, digits, *hard_wrap(charset, columns)]


def result_lines(results: dict[str, Result], columns: int) -> list[str]:
    """One line per device: its worst result in this run (status and code)."""
    worst: dict[str, Result] = {}
    for key, r in results.items():
        device = key.split(".", 1)[0]
        if device not in worst or r.status.severity > worst[device].status.severity:
            worst[device] = r
    if not worst:
        return ["(no other results yet)"]
    name_w = min(16, max(len(d) for d in worst))
    return [ascii_text(f"{d[:name_w]:<{name_w}} {r.status.label.upper():<7} {r.code}")[:columns]
            for d, r in worst.items()]


def compose_slip(info: SlipInfo, *, columns: int, qr: bool, feed_lines: int, cut: str) -> Job:
    """The test slip: identity, time, results, ruler, QR of the terminal id, cut."""
    from escpos.printer import Dummy  # deferred: python-escpos and Pillow only on the test-slip path

    d = Dummy()
    d.hw("INIT")
    d.set(align="center", bold=True, double_height=True)
    d.textln("POSAGENT TEST SLIP")
    d.set(align="left", bold=False, normal_textsize=True)
    body = [
        f"Terminal: {info.terminal_id}",
        f"Time:     {info.local_time}",
        f"Agent:    posagent {info.agent_version}",
        f"Printer:  {info.device_name} {info.model or 'model unknown'}",
        f"Firmware: {info.firmware or 'unknown'}",
        "-" * columns,
        *result_lines(info.results, columns),
        "-" * columns,
        *ruler(columns),
    ]
    text: list[str] = ["POSAGENT TEST SLIP"]
    for line in body:
        for piece in hard_wrap(ascii_text(line), columns):
            d.textln(piece)
            text.append(piece)
    lines = len(text) + 1  # the title is double height
    extra_mm = 0.0
    qr_data = ascii_text(info.terminal_id)[:QR_MAX]
    if qr and qr_data:
        d.set(align="center")
        d.qr(qr_data, native=True, size=QR_MODULE_DOTS)
        d.set(align="left")
        extra_mm = round(25 * QR_MODULE_DOTS / DOTS_PER_MM, 1)  # version-2 symbol, 25 modules
    data = bytes(d.output) + _tail(feed_lines, cut)
    _check_no_real_time(data)
    return Job(data, lines + feed_lines, extra_mm, 1 if cut != "none" else 0, text)


def compose_lines(lines: list[str], *, columns: int, encoding: str, feed_lines: int, cut: str) -> Job:
    """Plain text lines, then feed and cut. ``encoding`` ascii | cp437 | gb18030."""
    out = bytearray(ESC_INIT)
    if encoding == "gb18030":
        out += FS_KANJI_ON
    printed: list[str] = []
    for raw in lines:
        clean = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in str(raw))
        if encoding == "ascii":
            clean = ascii_text(clean)
        for piece in hard_wrap(clean, columns):
            out += piece.encode(encoding, errors="replace") + b"\n"
            printed.append(piece)
    if encoding == "gb18030":
        out += FS_KANJI_OFF
    out += _tail(feed_lines, cut)
    data = bytes(out)
    _check_no_real_time(data)
    return Job(data, len(printed) + feed_lines, 0.0, 1 if cut != "none" else 0, printed)
