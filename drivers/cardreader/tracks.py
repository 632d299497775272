"""Magnetic-stripe track data (ISO/IEC 7811, 7813, 4909) as a reader sends it in ASCII.

What is checked, per track:

- start and end sentinels: track 1 ``%`` ... ``?``, tracks 2 and 3 ``;`` ... ``?`` (``+`` is
  accepted as track 3's start, as some readers send it);
- the character set: track 1 uses the 6-bit alphabet (ASCII 0x20-0x5F), tracks 2 and 3 the
  4-bit one (ASCII 0x30-0x3F);
- the LRC character after the end sentinel, when the reader transmits it: each bit of the
  LRC is the even parity (XOR) of that bit over every character from start sentinel to
  end sentinel inclusive, so its value is the XOR of the character codes (ASCII minus 0x20
  on track 1, minus 0x30 on tracks 2-3);
- the per-character parity bit is not visible: a reader that sends ASCII has already
  checked it and stripped it (a parity error shows up as a track it reports unreadable,
  e.g. MagTek's ``%E?``), so only the character set and the LRC can be checked here;
- ISO 7813 layout: track 1 format code ``B``, PAN (<= 19 digits) ``^`` name (2-26) ``^``
  expiry YYMM and service code (7 digits); track 2 PAN ``=`` expiry and service code;
  maximum lengths 79 / 40 / 107 characters; the PAN's Luhn check digit.

Card data stays in the caller's bytearray: the parser works on a memoryview, makes no
``str`` or ``bytes`` copy of track content, and returns only what a report may carry
(which tracks read, problems, the masked PAN: first 6 and last 4 digits). ``wipe()``
overwrites the buffer afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_PCT, _SEMI, _PLUS, _QM = 0x25, 0x3B, 0x2B, 0x3F
_CARET, _EQ = 0x5E, 0x3D
_TERMINATORS = (0x0D, 0x0A, 0x03)

#: track number -> (first ASCII, last ASCII, code offset, maximum characters incl. sentinels and LRC)
_ALPHABET = {1: (0x20, 0x5F, 0x20, 79), 2: (0x30, 0x3F, 0x30, 40), 3: (0x30, 0x3F, 0x30, 107)}
LRC_MODES = ("auto", "yes", "no")


def wipe(buf: bytearray) -> None:
    """Overwrite ``buf`` in place with zeros (same storage, same length)."""
    buf[:] = bytes(len(buf))


def track_lrc(track: bytes | bytearray | memoryview, number: int) -> int:
    """The ASCII LRC character of a whole track from start through end sentinel."""
    offset = _ALPHABET[number][2]
    x = 0
    for c in track:
        x ^= c - offset
    return (x & (0x3F if number == 1 else 0x0F)) + offset


@dataclass
class TrackInfo:
    number: int
    read: bool = False  # present and not reported unreadable by the reader
    end_sentinel: bool = False
    lrc: str = "absent"  # ok | bad | absent (the reader did not send it)
    well_formed: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class SwipeInfo:
    tracks: dict[int, TrackInfo] = field(default_factory=dict)
    masked_pan: str | None = None
    luhn_ok: bool | None = None
    stray_bytes: int = 0

    @property
    def read_tracks(self) -> list[int]:
        return sorted(n for n, t in self.tracks.items() if t.read)

    @property
    def good(self) -> bool:
        """At least track 1 or 2 read, and every track seen is well formed."""
        return bool(self.tracks) and any(n in self.tracks for n in (1, 2)) and \
            all(t.well_formed for t in self.tracks.values())


def mask_pan(pan: bytes | bytearray | memoryview) -> str:
    """First 6 and last 4 digits, the rest '*'; short numbers show the last 4 only."""
    n = len(pan)
    if n >= 13:
        keep_head, keep_tail = 6, 4
    else:
        keep_head, keep_tail = 0, min(4, max(0, n - 4))
    head = bytes(pan[:keep_head]).decode("ascii", "replace")
    tail = bytes(pan[n - keep_tail:]).decode("ascii", "replace") if keep_tail else ""
    return head + "*" * (n - keep_head - keep_tail) + tail


def luhn_ok(digits: memoryview) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = c - 0x30
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _all_digits(view: memoryview) -> bool:
    return all(0x30 <= c <= 0x39 for c in view)


def _find(view: memoryview, byte: int, start: int, end: int) -> int:
    for i in range(start, end):
        if view[i] == byte:
            return i
    return -1


def _layout(view: memoryview, number: int, t: TrackInfo) -> tuple[int, int] | None:
    """ISO 7813 layout of a track's content ``view`` (between the sentinels); returns the
    PAN's (start, end) within ``view`` when the layout is right."""
    n = len(view)
    if number == 1:
        if n < 1 or view[0] != 0x42:  # 'B'
            t.problems.append("track 1 format code is not B")
            return None
        sep1 = _find(view, _CARET, 1, n)
        sep2 = _find(view, _CARET, sep1 + 1, n) if sep1 > 0 else -1
        if sep1 < 0 or sep2 < 0:
            t.problems.append("track 1 lacks the two ^ field separators")
            return None
        pan, name_len, tail = (1, sep1), sep2 - sep1 - 1, view[sep2 + 1:]
        if not 2 <= name_len <= 26:
            t.problems.append("track 1 name field is not 2-26 characters")
            return None
    elif number == 2:
        sep = _find(view, _EQ, 0, n)
        if sep < 0:
            t.problems.append("track 2 lacks the = field separator")
            return None
        pan, tail = (0, sep), view[sep + 1:]
    else:
        return None
    if not (1 <= pan[1] - pan[0] <= 19 and _all_digits(view[pan[0]:pan[1]])):
        t.problems.append(f"track {number} account number is not 1-19 digits")
        return None
    if len(tail) < 7 or not _all_digits(tail[:7]):
        t.problems.append(f"track {number} expiry date and service code are not 7 digits")
        return None
    return pan


def _parse_track(view: memoryview, i: int, end: int, number: int, mode: str,
                 info: SwipeInfo) -> tuple[int, tuple[int, int] | None]:
    """Parse the track whose start sentinel is at ``view[i]``; returns (next index, PAN span
    in ``view``)."""
    t = TrackInfo(number)
    info.tracks[number] = t
    lo, hi, _, max_len = _ALPHABET[number]
    stop = i + 1
    while stop < end and view[stop] not in (_QM, _PCT, _SEMI, *_TERMINATORS):
        stop += 1
    if stop >= end or view[stop] != _QM:  # the next track or the end came first
        t.read = True
        t.problems.append(f"track {number} has no end sentinel")
        return stop, None
    t.end_sentinel = True
    content = view[i + 1:stop]
    nxt = stop + 1
    if len(content) == 1 and content[0] == 0x45:  # 'E': the reader could not read this track
        t.problems.append(f"track {number} unreadable (reader reported an error)")
        return nxt, None
    t.read = True
    lrc_here = nxt < end and _lrc_follows(view, nxt, end, mode, track_lrc(view[i:stop + 1], number))
    if lrc_here:
        t.lrc = "ok" if view[nxt] == track_lrc(view[i:stop + 1], number) else "bad"
        nxt += 1
    elif mode == "yes":
        t.lrc = "bad"
        t.problems.append(f"track {number} LRC missing")
    if t.lrc == "bad" and lrc_here:
        t.problems.append(f"track {number} LRC does not match")
    if not all(lo <= c <= hi for c in content):
        t.problems.append(f"track {number} has characters outside its alphabet")
    length = stop - i + 1 + (1 if lrc_here else 0)
    if length > max_len:
        t.problems.append(f"track {number} is longer than {max_len} characters")
    pan = _layout(content, number, t) if not t.problems else None
    t.well_formed = not t.problems
    return nxt, (pan[0] + i + 1, pan[1] + i + 1) if pan else None


def _lrc_follows(view: memoryview, k: int, end: int, mode: str, expected: int) -> bool:
    """Is ``view[k]`` (the byte after an end sentinel) the track's LRC character?"""
    if mode == "no":
        return False
    if mode == "yes":
        return True
    c = view[k]
    if c in _TERMINATORS:
        return False
    if c in (_PCT, _SEMI, _PLUS):
        # A start sentinel, unless it equals the LRC and what follows cannot be a track.
        after = view[k + 1] if k + 1 < end else None
        return c == expected and (after is None or after in (_PCT, _SEMI, _PLUS, *_TERMINATORS))
    return True


def parse_swipe(buf: bytearray | memoryview, length: int | None = None, track_lrc_mode: str = "auto") -> SwipeInfo:
    """Parse the tracks in ``buf[:length]`` (ASCII, as a reader sends one swipe)."""
    if track_lrc_mode not in LRC_MODES:
        raise ValueError(f"track_lrc must be one of {', '.join(LRC_MODES)}")
    view = memoryview(buf)
    end = len(view) if length is None else length
    info = SwipeInfo()
    pans: dict[int, tuple[int, int]] = {}
    i = 0
    for _ in range(end + 1):  # bounded: every pass consumes at least one byte
        if i >= end:
            break
        c = view[i]
        number = 0
        if c == _PCT and 1 not in info.tracks:
            number = 1
        elif c == _SEMI and 2 not in info.tracks:
            number = 2
        elif c in (_SEMI, _PLUS) and 3 not in info.tracks:
            number = 3
        if not number:
            if c not in _TERMINATORS and c not in (0x20, 0x00):
                info.stray_bytes += 1
            i += 1
            continue
        i, pan = _parse_track(view, i, end, number, track_lrc_mode, info)
        if pan:
            pans[number] = pan
    _pan_summary(view, pans, info)
    return info


def _pan_summary(view: memoryview, pans: dict[int, tuple[int, int]], info: SwipeInfo) -> None:
    if not pans:
        return
    if 1 in pans and 2 in pans:
        a, b = pans[1], pans[2]
        if view[a[0]:a[1]] != view[b[0]:b[1]]:
            for n in (1, 2):
                info.tracks[n].problems.append("account numbers of tracks 1 and 2 differ")
                info.tracks[n].well_formed = False
    s, e = pans.get(2) or pans[1]
    info.masked_pan = mask_pan(view[s:e])
    info.luhn_ok = luhn_ok(view[s:e])
