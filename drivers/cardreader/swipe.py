"""The card reader's swipe test: wait for one swipe, check its tracks, keep no card data.

The track bytes go straight from the file descriptor into one caller-owned bytearray
(``os.readv``; no intermediate ``bytes``), are validated in place (frames.check, tracks.
parse_swipe on memoryviews) and the caller's ``swipe_result`` overwrites the buffer before
it returns. Nothing here logs; messages and measurements carry at most the masked PAN.
"""

from __future__ import annotations

import math
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from posagent.config.urls import DeviceURL
from posagent.core.base import Result
from posagent.core.errors import DeviceIOError, ProtocolError
from posagent.core.i18n import _
from posagent.drivers import transport
from posagent.drivers.cardreader import frames
from posagent.drivers.cardreader.frames import FrameProfile
from posagent.drivers.cardreader.tracks import SwipeInfo, parse_swipe, wipe
from posagent.drivers.transport.evdev import EventReader, KeyDevice, WedgeDecoder
from posagent.drivers.transport.stream import ByteStream

#: Unframed readers end a swipe with CR; without one, this much silence ends it.
IDLE_END = 0.3


@dataclass
class SwipeRead:
    length: int  # bytes in the buffer
    framed: bool
    start: int = 0  # frame bounds when framed and complete
    end: int | None = None
    wait_ms: float = 0.0


def _ms(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1000))


def wait_serial_swipe(stream: ByteStream, p: FrameProfile, buf: bytearray, limit: float,
                      say: Callable[[str], None] | None) -> SwipeRead:
    """Prompt, then read one swipe from the reader's line into ``buf``."""
    stream.flush_input()
    if say is not None:
        say(_("Card reader: swipe the card now ({seconds} s)").format(seconds=f"{limit:.0f}"))
    sim = getattr(stream.sim, "sim", None)
    if sim is not None and hasattr(sim, "on_prompt"):
        sim.on_prompt("swipe")  # the simulated technician swipes; the bytes still come over the pty
    poll = select.poll()
    poll.register(stream.fd, select.POLLIN | select.POLLPRI)
    view = memoryview(buf)
    t0 = time.monotonic()
    deadline = t0 + limit
    n = 0
    last = t0
    stx = bytes((p.stx,))
    for _round in range(100_000):  # bounded; every pass waits on poll or returns
        now = time.monotonic()
        if p.swipe_framed:
            start = buf.find(stx, 0, n)
            end = frames.frame_end(buf, p, start, n) if start >= 0 else None
            if end is not None:
                return SwipeRead(n, True, start, end, round((now - t0) * 1000, 1))
        elif n and (buf.find(b"\r", 0, n) >= 0 or now - last >= IDLE_END):
            return SwipeRead(n, False, wait_ms=round((now - t0) * 1000, 1))
        left = deadline - now
        if left <= 0 or n >= len(buf):
            break
        wait = min(left, IDLE_END) if n and not p.swipe_framed else left
        if not poll.poll(_ms(wait)):
            continue
        try:
            got = os.readv(stream.fd, [view[n:]])
        except BlockingIOError:
            continue
        except OSError as e:
            raise DeviceIOError(f"{stream.name}: link lost during the swipe ({os.strerror(e.errno or 0)})",
                                measurements={**stream.where, "reason": "link_lost"}) from None
        if not got:
            raise DeviceIOError(f"{stream.name}: connection closed during the swipe",
                                measurements={**stream.where, "reason": "closed"})
        n += got
        last = time.monotonic()
    return SwipeRead(n, p.swipe_framed, wait_ms=round((time.monotonic() - t0) * 1000, 1))


def wait_wedge_swipe(url: DeviceURL, buf: bytearray, limit: float, say: Callable[[str], None] | None) -> SwipeRead:
    """Grab a keyboard-wedge reader and turn its keystrokes into ASCII in ``buf``."""
    dev: KeyDevice = transport.open(url, kind="input", not_found_code="READER_NOT_PRESENT")
    reader: EventReader | None = None
    decoder = WedgeDecoder(buf)
    t0 = time.monotonic()
    try:
        EventReader(dev.fileno()).read(0)  # drop what was typed before the prompt
        dev.grab()  # keystrokes must not reach the POS application (or a shell)
        reader = EventReader(dev.fileno())
        if say is not None:
            say(_("Card reader: swipe the card now ({seconds} s)").format(seconds=f"{limit:.0f}"))
        deadline = t0 + limit
        for _round in range(100_000):
            now = time.monotonic()
            left = deadline - now
            if decoder.done or left <= 0:
                break
            try:
                events = reader.read(min(left, IDLE_END) if decoder.length else left)
            except EOFError:
                break
            if not events and decoder.length:
                break  # silence after data: the reader sent no Enter
            for ev in events:
                decoder.feed(ev)
    finally:
        if reader is not None:
            reader.wipe()
        dev.ungrab()
        dev.close()
    return SwipeRead(decoder.length, False, wait_ms=round((time.monotonic() - t0) * 1000, 1))


def swipe_result(buf: bytearray, got: SwipeRead, p: FrameProfile, track_lrc: str, limit: float) -> Result:
    """Grade the swipe in ``buf`` and overwrite ``buf``, whatever happens."""
    try:
        m: dict[str, Any] = {"wait_ms": got.wait_ms, "bytes": got.length}
        if got.length == 0:
            return Result.unknown("READER_NO_SWIPE", f"no swipe arrived within {limit:.0f} s", measurements=m)
        view = memoryview(buf)
        if got.framed:
            if got.end is None:
                return Result.fail("READER_TRACK_ERROR", "swipe data arrived but its frame never ended",
                                   measurements=m)
            try:
                s, e = frames.check(view[got.start:got.end], p)
            except ProtocolError as err:
                code = "READER_BAD_CHECKSUM" if err.code == "READER_BAD_CHECKSUM" else "READER_TRACK_ERROR"
                what = "failed its LRC check" if code == "READER_BAD_CHECKSUM" else "was malformed"
                return Result.fail(code, f"the swipe's frame {what}", measurements=m)
            info = parse_swipe(view[got.start + s:got.start + e], None, track_lrc)
        else:
            info = parse_swipe(view, got.length, track_lrc)
        del view
        return _grade(info, m)
    finally:
        wipe(buf)


def _grade(info: SwipeInfo, m: dict[str, Any]) -> Result:
    for n, t in sorted(info.tracks.items()):
        m[f"track{n}"] = "ok" if t.well_formed else ("bad" if t.read else "unreadable")
        m[f"track{n}_lrc"] = t.lrc
    card = ""
    if info.masked_pan:
        m["masked_pan"] = info.masked_pan
        card = f"; card {info.masked_pan}"
    if info.luhn_ok is not None:
        m["luhn_ok"] = info.luhn_ok
    if not info.tracks:
        return Result.fail("READER_TRACK_ERROR", "data arrived but held no track (no start sentinel)", measurements=m)
    problems = [p for _, t in sorted(info.tracks.items()) for p in t.problems]
    read = ", ".join(str(n) for n in info.read_tracks) or "none"
    if problems:
        return Result.fail("READER_TRACK_ERROR", f"tracks read: {read}; " + "; ".join(problems) + card,
                           measurements=m)
    if not any(n in info.tracks for n in (1, 2)):
        return Result.fail("READER_TRACK_ERROR", f"only track {read} read; tracks 1 and 2 are missing{card}",
                           measurements=m)
    lrc_ok = [str(n) for n, t in sorted(info.tracks.items()) if t.lrc == "ok"]
    lrc = f", LRC ok on {', '.join(lrc_ok)}" if lrc_ok else ", no LRC sent"
    if info.luhn_ok is False:
        return Result.warn("READER_SWIPE_LUHN", f"tracks {read} read and well formed{lrc}, but the account number "
                           f"fails its check digit{card}", measurements=m)
    return Result.ok("READER_SWIPE_OK", f"tracks {read} read and well formed{lrc}{card}", measurements=m)
