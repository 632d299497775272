"""ESC/POS command lengths: how many bytes the command at the start of a buffer takes.

The simulated printer's print layer (``escpos.sim``) parses its receive buffer command by
command with ``command_length``, so print data (images, barcodes, 2-D codes) is swallowed
whole and never misread as commands. Lengths follow Epson's ESC/POS reference.
"""

from __future__ import annotations

LF, CR, HT, FF, CAN, DLE, ESC, FS, GS = 0x0A, 0x0D, 0x09, 0x0C, 0x18, 0x10, 0x1B, 0x1C, 0x1D
EOT, ENQ, DC4 = 0x04, 0x05, 0x14

#: Paper a print layer advances (the simulated printer and the job scanner count alike):
#: one text line at the default spacing (ESC 2, 1/6 inch), a QR code, the feed of a
#: GS V 65/66 cut; raster and ESC J units at 203 dpi (8 dots per mm).
LINE_MM = 4.23
QR_MM = 12.5
CUT_FEED_MM = 3.0
DOTS_PER_MM = 8.0

#: ESC x: parameter bytes of fixed-length commands.
ESC_FIXED: dict[int, int] = {
    0x0C: 0, 0x20: 1, 0x21: 1, 0x24: 2, 0x25: 1, 0x2D: 1, 0x32: 0, 0x33: 1, 0x3C: 0, 0x3D: 1,
    0x3F: 1, 0x40: 0, 0x45: 1, 0x46: 1, 0x47: 1, 0x4A: 1, 0x4B: 1, 0x4C: 0, 0x4D: 1, 0x52: 1,
    0x53: 0, 0x54: 1, 0x55: 1, 0x56: 1, 0x57: 8, 0x5C: 2, 0x61: 1, 0x63: 2, 0x64: 1, 0x65: 1,
    0x66: 2, 0x69: 0, 0x6D: 0, 0x70: 3, 0x71: 0, 0x72: 1, 0x74: 1, 0x75: 1, 0x76: 0, 0x7B: 1,
}
#: GS x: parameter bytes of fixed-length commands.
GS_FIXED: dict[int, int] = {
    0x21: 1, 0x24: 2, 0x2F: 1, 0x3A: 0, 0x42: 1, 0x45: 1, 0x48: 1, 0x49: 1, 0x4C: 2, 0x50: 2,
    0x54: 1, 0x57: 2, 0x5C: 2, 0x5E: 3, 0x61: 1, 0x62: 1, 0x66: 1, 0x67: 4, 0x68: 1, 0x72: 1,
    0x77: 1, 0x7C: 1,
}
#: FS x: parameter bytes of fixed-length commands.
FS_FIXED: dict[int, int] = {0x21: 1, 0x26: 0, 0x2D: 1, 0x2E: 0, 0x43: 1, 0x53: 2, 0x57: 1, 0x70: 2}
#: DLE DC4 fn: parameter bytes after fn.
DC4_FIXED: dict[int, int] = {1: 2, 2: 2, 3: 2, 7: 1, 8: 7}


def _le(buf: bytes | bytearray, i: int, n: int) -> int:
    return int.from_bytes(buf[i:i + n], "little")


def command_length(buf: bytes | bytearray) -> int | None:
    """Length of the command at the start of ``buf`` (which starts with a control byte),
    or None when more bytes are needed."""
    n = len(buf)
    first = buf[0]
    if first not in (ESC, GS, FS, DLE):
        return 1
    if n < 2:
        return None
    op = buf[1]
    if first == DLE:
        if op in (EOT, ENQ):
            if n < 3:
                return None
            return 4 if op == EOT and buf[2] in (7, 8) else 3
        if op == DC4:
            if n < 3:
                return None
            return 3 + DC4_FIXED.get(buf[2], 0)
        return 1  # a lone DLE: a plain control byte
    if first == ESC:
        return _esc_length(buf, op, n)
    if first == GS:
        return _gs_length(buf, op, n)
    return _fs_length(buf, op, n)


def _esc_length(buf: bytes | bytearray, op: int, n: int) -> int | None:
    if op in ESC_FIXED:
        return 2 + ESC_FIXED[op]
    if op == 0x2A:  # ESC * m nL nH d: bit image, 1 or 3 bytes per column
        if n < 5:
            return None
        cols = _le(buf, 3, 2)
        return 5 + cols * (1 if buf[2] in (0, 1) else 3)
    if op == 0x44:  # ESC D n1..nk NUL: tab stops
        end = buf.find(0, 2, 2 + 33)
        if end < 0:
            return None if n < 2 + 33 else 2 + 33
        return end + 1
    if op == 0x26:  # ESC & y c1 c2 [x d1..d(y*x)] per character
        if n < 5:
            return None
        y, c1, c2 = buf[2], buf[3], buf[4]
        i = 5
        for _ in range(max(0, c2 - c1 + 1)):
            if n <= i:
                return None
            i += 1 + y * buf[i]
        return i
    if op == 0x28:  # ESC ( x pL pH data
        return None if n < 5 else 5 + _le(buf, 3, 2)
    return 2


def _gs_length(buf: bytes | bytearray, op: int, n: int) -> int | None:
    if op in GS_FIXED:
        return 2 + GS_FIXED[op]
    if op == 0x28:  # GS ( x pL pH data
        return None if n < 5 else 5 + _le(buf, 3, 2)
    if op == 0x38:  # GS 8 x p1..p4 data
        return None if n < 7 else 7 + _le(buf, 3, 4)
    if op == 0x2A:  # GS * x y d: downloaded bit image, x*y*8 bytes
        return None if n < 4 else 4 + buf[2] * buf[3] * 8
    if op == 0x56:  # GS V m [n]
        if n < 3:
            return None
        return 4 if buf[2] >= 65 else 3
    if op == 0x6B:  # GS k m: barcode
        if n < 3:
            return None
        if buf[2] <= 6:
            end = buf.find(0, 3)
            return None if end < 0 else end + 1
        return None if n < 4 else 4 + buf[3]
    if op in (0x76, 0x51):  # GS v 0 m xL xH yL yH d / GS Q 0 ...: raster image
        return None if n < 8 else 8 + _le(buf, 4, 2) * _le(buf, 6, 2)
    return 2


def _fs_length(buf: bytes | bytearray, op: int, n: int) -> int | None:
    if op in FS_FIXED:
        return 2 + FS_FIXED[op]
    if op == 0x32:  # FS 2 c1 c2 d1..d72: user-defined Kanji
        return 4 + 72
    if op == 0x28:  # FS ( x pL pH data
        return None if n < 5 else 5 + _le(buf, 3, 2)
    if op == 0x71:  # FS q n [xL xH yL yH d1..dk] x n: NV bit images
        if n < 3:
            return None
        i = 3
        for _ in range(buf[2]):
            if n < i + 4:
                return None
            i += 4 + _le(buf, i, 2) * _le(buf, i + 2, 2) * 8
        return i
    return 2
