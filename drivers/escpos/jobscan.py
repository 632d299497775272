"""What a print job prints, counted from its bytes as they stream past (the print proxy).

The POS application's receipts go through posagent in ``share = "proxy"`` mode; counting
them lets the paper and ribbon counters see all printing, not only posagent's own slips.
The scanner walks the job command by command with the same ``command_length`` the
simulated printer parses with (``escpos.commands``), so the data of bit images (GS v 0,
ESC *, GS ( L, GS 8 L), barcodes (GS k) and 2-D codes (GS ( k) is skipped whole: a 0x0A
inside an image is not a line, a ``10 04 01`` inside one is not a real-time query. It
counts as the print layer does:

- a line: LF or FF (a line printed even when empty), or pending text ended by ESC d /
  ESC J / GS V / a QR code / an image;
- paper: LINE_MM per line and per ESC d line, ESC J n / 8 mm, an image's height in dots
  / 8 mm, a QR code QR_MM, a GS V 65/66 cut its feed (CUT_FEED_MM);
- cuts: GS V, ESC i, ESC m;
- real-time commands (DLE EOT, DLE ENQ, DLE DC4) outside any data: counted apart.

Bytes may arrive split anywhere: a command's header is kept until it is complete, and
the rest of a long payload is skipped as it arrives (never buffered).
"""

from __future__ import annotations

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

#: The longest command header the scanner keeps while waiting for the rest of it (a
#: NUL-terminated barcode or ESC D tab list is longer than any fixed header).
HEADER_MAX = 512


@dataclass
class JobCounts:
    """What one job printed."""

    lines: int = 0
    cuts: int = 0
    paper_mm: float = 0.0
    bytes: int = 0
    realtime: int = 0  # real-time commands found outside data (the POS application's own queries)
    images: int = 0


def _known_length(head: bytes) -> int | None:
    """``command_length``, or None until the bytes the scanner reads are in too: the whole
    of a short command (``command_length`` knows ESC d n is 3 bytes from its first two),
    and the first 8 of a long one (GS ( k says which function it is in bytes 6 and 7)."""
    length = command_length(head)
    if length is not None and len(head) < min(length, 8):
        return None
    return length


class JobScanner:
    """Feed a job's bytes with ``feed``; ``counts`` is what they printed so far."""

    def __init__(self, line_mm: float = LINE_MM) -> None:
        self.line_mm = line_mm
        self.counts = JobCounts()
        self._head = bytearray()  # the start of a command whose header is not complete yet
        self._skip = 0  # payload bytes of the last command still to come
        self._text = False  # text pending on the current line

    def feed(self, data: bytes) -> None:
        c = self.counts
        c.bytes += len(data)
        view = memoryview(data)
        if self._skip:
            n = min(self._skip, len(view))
            self._skip -= n
            view = view[n:]
        if self._head:
            view = self._complete_head(view)
        i, n = 0, len(view)
        while i < n:
            b = view[i]
            if b >= 0x20 and b != 0x7F:
                self._text = True
                i += 1
                while i < n and view[i] >= 0x20 and view[i] != 0x7F:  # the rest of the text run
                    i += 1
                continue
            if b in (LF, FF):
                self._line(always=True)
                i += 1
                continue
            if b not in (ESC, GS, FS, DLE):
                i += 1  # CR, HT, CAN, NUL ...: no paper
                continue
            head = bytes(view[i:i + HEADER_MAX])
            length = _known_length(head)
            if length is None:
                if len(head) >= HEADER_MAX:  # not a command we know the end of: take it as 2 bytes
                    i += 2
                    continue
                self._head += head  # wait for the rest of the header
                return
            self._command(head[:length])
            if i + length > n:
                self._skip = i + length - n  # its data goes on in the next chunks
                return
            i += length

    def _complete_head(self, view: memoryview) -> memoryview:
        """Add bytes to a partial header until its length is known, then go on after it."""
        for k in range(len(view) + 1):
            head = bytes(self._head) + bytes(view[:k])
            length = _known_length(head)
            if length is not None:
                self._head.clear()
                self._command(head[:length])
                used = length - (len(head) - k)  # bytes of this chunk in the command
                if used > len(view):
                    self._skip = used - len(view)
                    return view[len(view):]
                return view[used:]
            if len(head) >= HEADER_MAX:
                self._head.clear()
                return view[k:]
        self._head += bytes(view)
        return view[len(view):]

    def _line(self, always: bool) -> None:
        if self._text or always:
            self.counts.lines += 1
            self.counts.paper_mm += self.line_mm
        self._text = False

    def _command(self, cmd: bytes) -> None:
        c = self.counts
        first, op = cmd[0], cmd[1] if len(cmd) > 1 else -1
        if first == DLE:
            if len(cmd) >= 3:
                c.realtime += 1
        elif first == ESC:
            if op == 0x64 and len(cmd) >= 3:  # ESC d n: print and feed n lines
                self._line(always=False)
                c.paper_mm += cmd[2] * self.line_mm
            elif op == 0x4A and len(cmd) >= 3:  # ESC J n: print and feed n dots
                self._line(always=False)
                c.paper_mm += cmd[2] / DOTS_PER_MM
            elif op in (0x69, 0x6D):  # ESC i / ESC m: cut
                c.cuts += 1
            elif op == 0x40:  # ESC @: the line buffer is cleared
                self._text = False
        elif first == GS:
            if op == 0x56 and len(cmd) >= 3:  # GS V m [n]
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
