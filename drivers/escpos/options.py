"""The escpos driver's options: ``[device.options]`` of an ``escpos`` device."""

from __future__ import annotations

from dataclasses import dataclass

from posagent.core.values import Duration


@dataclass(frozen=True)
class EscposOptions:
    impact: bool = False  # dot-matrix: ribbon counted, text-only slip
    ribbon_life_lines: int = 0  # rated ribbon life in printed lines; 0 = unknown (count, never warn)
    ribbon_warn_pct: float = 80.0  # RIBBON_WORN from this share of the life
    paper_width_mm: float = 80.0
    roll_length_m: float = 0.0  # the paper roll's length; 0 = typical for the width (80 mm: 80 m, 58 mm: 40 m)
    paper_warn_days: float = 2.0  # PAPER_LOW_FORECAST when fewer days of paper are left
    line_height_mm: float = 4.23  # ESC 2 default spacing, 1/6 inch
    columns: int = 0  # characters per line; 0 = from the paper width (80 mm: 42, 58 mm: 32)
    slip_qr: bool = True  # QR code of the terminal id on the test slip (thermal only)
    cut: str = "partial"  # partial | full | none
    feed_lines: int = 4  # lines fed before the cut
    drawer_open_level: str = ""  # high | low: drawer pin 3 level meaning "open"; "" = not reported
    text_encoding: str = "ascii"  # ascii | cp437 | gb18030, for print_lines()
    reply_timeout: Duration = Duration(1.0)  # wait for one DLE EOT reply
    identity_timeout: Duration = Duration(0.3)  # wait for one GS I reply (unsupported n: no reply)
    job_timeout: Duration = Duration(30.0)  # wait for a printed job to finish (capped by the check)
    connect_timeout: Duration = Duration(3.0)  # TCP connect
    usb_reset: bool = False  # self-repair may reset the USB port (usb:// as owner or proxy; docs/self-repair.md)

    def __post_init__(self) -> None:
        if self.cut not in ("partial", "full", "none"):
            raise ValueError("cut must be partial, full or none")
        if self.drawer_open_level not in ("", "high", "low"):
            raise ValueError('drawer_open_level must be "high", "low" or "" (not reported)')
        if self.text_encoding not in ("ascii", "cp437", "gb18030"):
            raise ValueError("text_encoding must be ascii, cp437 or gb18030")
        if self.ribbon_life_lines < 0:
            raise ValueError("ribbon_life_lines cannot be negative")
        if not 0 < self.ribbon_warn_pct <= 100:
            raise ValueError("ribbon_warn_pct must be between 0 and 100")
        if not 20 <= self.paper_width_mm <= 120 or not 0 < self.line_height_mm <= 20:
            raise ValueError("paper_width_mm must be 20-120 and line_height_mm 0-20")
        if not 0 <= self.columns <= 255 or not 0 <= self.feed_lines <= 255:
            raise ValueError("columns and feed_lines must be 0-255")
        if not 0 <= self.roll_length_m <= 1000 or not 0 <= self.paper_warn_days <= 365:
            raise ValueError("roll_length_m must be 0-1000 and paper_warn_days 0-365")
        if min(self.reply_timeout, self.identity_timeout, self.job_timeout, self.connect_timeout) <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def line_columns(self) -> int:
        if self.columns:
            return self.columns
        return 42 if self.paper_width_mm >= 70 else 32
