"""``sim://card-reader``: a framed serial magstripe reader on a real pty.

Speaks the framing of a ``profile`` (frames.PROFILES; the driver may hand it an
overridden profile): answers the echo command with the same payload and the version
command with a version text, NAKs frames with a bad LRC and unknown commands.

Knobs (besides latency_ms, no_answer, garbage, drop_after_bytes):

    profile     framing profile (default generic-len)
    nak_once    NAK the first frame, then answer normally
    nak_always  NAK every frame
    bad_lrc     send replies (and framed swipes) with a wrong LRC byte
    loopback    echo every byte back unchanged (a TX-RX loopback plug on the port)
    swipe       test card swiped when the technician is asked to swipe (``none``: nobody swipes)

Tests push a swipe themselves with ``sim.swipe(track_bytes)``: the track text goes out
unsolicited, framed like the reader's other replies. The test cards carry published
test PANs only.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

from posagent.core.errors import ProtocolError
from posagent.drivers.cardreader.frames import PROFILES, FrameProfile, decode, encode, frame_end, get_profile
from posagent.drivers.cardreader.tracks import track_lrc
from posagent.drivers.simulator import ByteSimulator, KnobSpec

#: Published Visa test account (EMV test cards); never a real card.
TEST_PAN = b"4761739001010010"


def _track(number: int, body: bytes, lrc: bool = True, bad_lrc: bool = False) -> bytes:
    start = b"%" if number == 1 else b";"
    text = start + body + b"?"
    if not lrc:
        return text
    value = track_lrc(text, number)
    if bad_lrc:
        value = value ^ 0x01
    return text + bytes((value,))


def _visa(track1: bool = True, lrc: bool = True, bad_lrc2: bool = False) -> bytes:
    t1 = _track(1, b"B" + TEST_PAN + b"^TEST/CARD^30122010000000000000", lrc) if track1 else b""
    t2 = _track(2, TEST_PAN + b"=30122010000000000000", lrc, bad_lrc=bad_lrc2)
    return t1 + t2


#: Test card name -> the ASCII a reader sends for one swipe.
TEST_CARDS: dict[str, bytes] = {
    "visa": _visa(),
    "visa-nolrc": _visa(lrc=False),
    "track2": _visa(track1=False),
    "bad-lrc": _visa(bad_lrc2=True),
    "no-end": b"%B" + TEST_PAN + b"^TEST/CARD^3012201000" + _track(2, TEST_PAN + b"=30122010000000000000"),
    "unreadable": b"%E?;E?",
}


class CardReaderSim(ByteSimulator):
    family = "card-reader"
    knobs: ClassVar[dict[str, KnobSpec]] = {
        "profile": KnobSpec(str, "generic-len", tuple(PROFILES), "framing profile"),
        "nak_once": KnobSpec(bool, False, help="NAK the first frame"),
        "nak_always": KnobSpec(bool, False, help="NAK every frame"),
        "bad_lrc": KnobSpec(bool, False, help="replies carry a wrong LRC"),
        "loopback": KnobSpec(bool, False, help="echo all bytes back (loopback plug)"),
        "swipe": KnobSpec(str, "visa", (*TEST_CARDS, "none"), "test card swiped when asked"),
        "version": KnobSpec(str, "POSAGENT SIM READER 1.0", help="version text"),
    }

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        #: The framing in use; the driver may replace it with its overridden profile before start().
        self.profile: FrameProfile = get_profile(self.k["profile"])
        self._pending = bytearray()
        self._naks = 0
        self.frames = 0  # frames received, for tests
        self.swipes = 0
        self._fd: int | None = None
        self._fd_ready = threading.Event()
        self._write_lock = threading.Lock()

    # -- requests --------------------------------------------------------------
    def on_bytes(self, data: bytes) -> bytes:
        if self.k["loopback"]:
            return data
        p = self.profile
        self._pending += data
        out = bytearray()
        for _ in range(64):  # bounded: each pass consumes a frame or stops
            start = self._pending.find(bytes((p.stx,)))
            if start < 0:
                self._pending.clear()
                break
            del self._pending[:start]
            end = frame_end(self._pending, p)
            if end is None:
                if len(self._pending) > 1024:
                    self._pending.clear()
                break
            frame = bytes(self._pending[:end])
            del self._pending[:end]
            out += self._answer(frame)
        return bytes(out)

    def _answer(self, frame: bytes) -> bytes:
        p = self.profile
        self.frames += 1
        nak = bytes((p.nak,))
        try:
            payload = decode(frame, p)
        except ProtocolError:
            return nak
        if self.k["nak_always"] or (self.k["nak_once"] and self._naks == 0):
            self._naks += 1
            return nak
        if p.echo_cmd and payload.startswith(p.echo_cmd):
            reply = payload
        elif p.version_cmd and payload == p.version_cmd:
            reply = self.k["version"].encode("ascii", "replace")
        else:
            return nak
        return self._reply(reply)

    def _reply(self, payload: bytes) -> bytes:
        p = self.profile
        frame = bytearray(encode(payload, p))
        if self.k["bad_lrc"]:
            frame[-1] ^= 0x5A
        return (bytes((p.ack,)) if p.ack_before_reply else b"") + bytes(frame)

    def garbage_reply(self, data: bytes) -> bytes:
        return b"\xff\xfe garbage \x00"

    # -- unsolicited swipes ----------------------------------------------------
    def _serve_fd(self, fd: int, wake: int) -> None:
        self._fd = fd
        self._fd_ready.set()
        try:
            super()._serve_fd(fd, wake)
        finally:
            self._fd = None

    def swipe(self, tracks: bytes | bytearray) -> None:
        """Send one swipe's track text, framed as the profile frames swipes."""
        p = self.profile
        data = encode(bytes(tracks), p) if p.swipe_framed else bytes(tracks) + b"\r"
        if self.k["bad_lrc"] and p.swipe_framed:
            data = data[:-1] + bytes((data[-1] ^ 0x5A,))
        if not self._fd_ready.wait(2.0) or self._fd is None:
            raise RuntimeError("simulated reader is not serving")
        with self._write_lock:
            os.write(self._fd, data)
        self.swipes += 1

    def on_prompt(self, what: str) -> None:
        """The simulated technician: swipes the ``swipe`` knob's card when asked to."""
        card = self.k["swipe"]
        if what == "swipe" and card != "none":
            self.swipe(TEST_CARDS[card])
