"""What a print job prints, counted from its bytes as they stream past (the print proxy).

The POS application's receipts go through posagent in ``share = "proxy"`` mode; counting
them lets the paper and ribbon counters see all printing, not only posagent's own slips.
The scanner walks the job command by command with the same ``command_length`` the
simulated printer parses with (``escpos.commands``), so the data of bit images (GS v 0,
ESC *, GS ( L, GS 8 L), barcodes (GS k) and 2-D codes (GS ( k) is skipped whole: a 0x0A
inside an image is not a line, a ``10 04 01`` inside one is not a real-time query.

It counts as the print layer of the simulator does (``escpos.sim``), and as posagent's
own jobs are counted (``Job.length_mm``: lines x line height + extra), so the counters of
the POS application's receipts and of posagent's slips add up to one figure:

- a line: LF or FF (a line printed even when empty), or pending text ended by ESC d /
  ESC J / GS V / a QR code / a raster image;
- paper: ``line_mm`` per line and per ESC d line, ESC J n / 8 mm, a raster image's height
  in dots / 8 mm (203 dpi), a QR code QR_MM, a GS V 65/66 cut its feed (CUT_FEED_MM). An
  ESC * band is printed by the line feed that follows it: that line takes the line height
  or the band's height (8 or 24 dots), whichever is more, so the band is not counted twice;
- cuts: GS V, ESC i, ESC m;
- real-time commands (DLE EOT, DLE ENQ, DLE DC4) outside any data: counted apart, never
  as text.

Bytes may arrive split anywhere. The counts depend only on the bytes, never on where
they were split: a command whose header is incomplete is kept (at most HEADER_MAX bytes)
and looked at again, from its first byte, with the next chunk; the data of a long command
is skipped as it arrives, never buffered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from posagent.drivers.escpos.commands import (
    CUT_FEED_MM,
    DLE,
    DOTS_PER_MM,
    ESC,
    FF,
    FS,
    GS,
    LF,
    LINE_MM,
    QR_MM,
    command_length,
)

#: The longest command header the scanner waits for (a NUL-terminated barcode or an ESC D
#: tab list is longer than any fixed header). A command whose length is still unknown
#: after this many bytes is noise: its two command bytes are passed over.
HEADER_MAX = 512

_TEXT = re.compile(rb"[^\x00-\x1f\x7f]+")  # a run of printable bytes (0x7F is DEL, not text)
_COMMAND_STARTS = frozenset((ESC, GS, FS, DLE))


@dataclass
class JobCounts:
    """What one job printed (or, for a job cut short, what of it reached the printer)."""

    lines: int = 0
    cuts: int = 0
    paper_mm: float = 0.0
    bytes: int = 0
    realtime: int = 0  # real-time commands outside data (the POS application's own queries)
    images: int = 0  # raster images (GS v 0)


def _known_length(head: bytes | memoryview) -> int | None:
    """``command_length``, or None until the bytes the scanner reads are in too: the whole
    of a short command (``command_length`` knows ESC d n is 3 bytes from its first two),
    and the first 8 of a long one (GS ( k says which function it is in bytes 6 and 7)."""
    length = command_length(bytes(head[:16]))  # enough for all but NUL-terminated and listed ones
    if length is None and len(head) > 16:
        length = command_length(bytes(head[:HEADER_MAX]))
    if length is not None and len(head) < min(length, 8):
        return None
    return length


class JobScanner:
    """Feed a job's bytes with ``feed``, in order; ``counts`` is what they printed so far.

    Pure: no I/O, no clock. ``line_mm`` is the printer's line height (its
    ``line_height_mm`` option)."""

    def __init__(self, line_mm: float = LINE_MM) -> None:
        self.line_mm = line_mm
        self.counts = JobCounts()
        self._head = bytearray()  # the start of a command whose length is not known yet
        self._skip = 0  # data bytes of the last command still to come
        self._text = False  # text pending on the current line
        self._band_mm = 0.0  # the tallest ESC * band pending on the current line

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Count ``data``, the next bytes of the job."""
        self.counts.bytes += len(data)
        view = memoryview(data)
        if self._skip:
            n = min(self._skip, len(view))
            self._skip -= n
            view = view[n:]
        if self._head:  # _skip is 0 here: it is only set once a header is complete
            self._head += view
            view = memoryview(bytes(self._head))
            self._head.clear()
        self._scan(view)

    def _scan(self, view: memoryview) -> None:
        i, n = 0, len(view)
        while i < n:
            b = view[i]
            if b >= 0x20 and b != 0x7F:
                self._text = True
                m = _TEXT.match(view, i)
                i = m.end() if m is not None else i + 1
                continue
            if b in (LF, FF):
                self._line(always=True)
                i += 1
                continue
            if b not in _COMMAND_STARTS:
                i += 1  # CR, HT, CAN, NUL, DEL ...: no paper
                continue
            head = view[i:i + HEADER_MAX]
            length = _known_length(head)
            if length is None:
                if len(head) >= HEADER_MAX:  # not a command we know the end of: pass its 2 bytes
                    i += 2
                    continue
                self._head += head  # wait for the rest of the header; look again from here
                return
            self._command(bytes(head[:min(length, 8)]))
            if i + length > n:
                self._skip = i + length - n  # its data goes on in the next chunks
                return
            i += length

    def _line(self, always: bool) -> None:
        """End the current line: counted when text is pending (or ``always``: LF, FF)."""
        if self._text or always:
            self.counts.lines += 1
            self.counts.paper_mm += max(self.line_mm, self._band_mm) if always else self.line_mm
        self._text = False
        self._band_mm = 0.0

    def _command(self, cmd: bytes) -> None:
        """One command, by its first (up to 8) bytes."""
        c = self.counts
        first, op = cmd[0], cmd[1] if len(cmd) > 1 else -1
        if first == DLE:
            if len(cmd) >= 3:  # DLE EOT / ENQ / DC4 (command_length makes a lone DLE 1 byte)
                c.realtime += 1
        elif first == ESC:
            if op == 0x64:  # ESC d n: print and feed n lines
                self._line(always=False)
                c.paper_mm += cmd[2] * self.line_mm
            elif op == 0x4A:  # ESC J n: print and feed n dots
                self._line(always=False)
                c.paper_mm += cmd[2] / DOTS_PER_MM
            elif op in (0x69, 0x6D):  # ESC i / ESC m: cut
                c.cuts += 1
            elif op == 0x40:  # ESC @: the line buffer is cleared
                self._text = False
                self._band_mm = 0.0
            elif op == 0x2A and len(cmd) >= 3:  # ESC * m: a band of 8 (m 0, 1) or 24 dots
                self._band_mm = max(self._band_mm, (8 if cmd[2] in (0, 1) else 24) / DOTS_PER_MM)
        elif first == GS:
            if op == 0x56:  # GS V m [n]
                self._line(always=False)
                if cmd[2] >= 65:
                    c.paper_mm += CUT_FEED_MM
                c.cuts += 1
            elif op == 0x76 and len(cmd) >= 8:  # GS v 0: raster image, yL + yH * 256 dots high
                self._line(always=False)
                c.paper_mm += int.from_bytes(cmd[6:8], "little") / DOTS_PER_MM
                c.images += 1
            elif op == 0x28 and len(cmd) >= 7 and cmd[2] == 0x6B and cmd[5] == 0x31 and cmd[6] == 0x51:
                self._line(always=False)  # GS ( k cn=49 fn=81: print the stored QR code
                c.paper_mm += QR_MM
