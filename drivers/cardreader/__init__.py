"""Driver ``card-reader``: magnetic-stripe readers on a serial line, USB, or as a keyboard wedge.

URLs: ``serial:///dev/ttyUSB0?baudrate=9600`` (framed command protocol, see frames.py),
``sim://card-reader?...``, ``usb://VID:PID`` (presence, descriptor strings, kernel
binding), ``evdev://?name=...`` (a keyboard-wedge reader: presence, swipes as keystrokes).

Checks:

- ``echo`` (internal): the profile's echo command with random bytes each run (the reply
  must carry them back, its LRC must match), or its version command. Codes READER_OK,
  READER_NO_RESPONSE (unknown), READER_NAK, READER_BAD_CHECKSUM, READER_ECHO_MISMATCH
  (fail), READER_PROTOCOL_ERROR (unknown).
- ``loopback`` (internal, option ``loopback_plug``): random blocks through a TX-RX
  loopback plug, verified byte for byte, with throughput against the wire limit of the
  baud rate (10 bits per byte: start, 8 data, stop).
- ``presence`` (internal, usb: and evdev: URLs): READER_OK / READER_NOT_PRESENT.
- ``swipe`` (interactive): asks for a swipe, waits ``swipe_timeout``, and checks the
  tracks (tracks.py). Card data stays in one bytearray that is overwritten after parsing;
  only the masked PAN (first 6, last 4) reaches the result. Codes READER_SWIPE_OK,
  READER_NO_SWIPE, READER_SWIPE_SKIPPED (unknown), READER_TRACK_ERROR (fail),
  READER_SWIPE_LUHN (warn).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from posagent.config.urls import DeviceURL, parse_url
from posagent.core.base import Check, CheckContext, Driver, Level, Result
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound
from posagent.core.i18n import N_, _
from posagent.drivers.cardreader import frames
from posagent.drivers.cardreader.checks import loopback, presence
from posagent.drivers.cardreader.codes import CODES
from posagent.drivers.cardreader.frames import FrameProfile
from posagent.drivers.cardreader.options import CardReaderOptions
from posagent.drivers.cardreader.swipe import SwipeRead, swipe_result, wait_serial_swipe, wait_wedge_swipe
from posagent.drivers.cardreader.tracks import wipe
from posagent.drivers.simulator import Simulator
from posagent.drivers.transport import Stream
from posagent.drivers.transport.link import ErrorTable, Link, Remap
from posagent.drivers.transport.stream import ByteStream

__all__ = ["CardReaderDriver", "CardReaderOptions", "frames"]

#: Opening failed because the port or device is not there.
OPEN_ERRORS: ErrorTable = {DeviceNotFound: Remap(code="READER_NOT_PRESENT")}


_PROTOCOL_HINT = N_("The reader answers in an unknown way: check the profile option and the baud rate.")


#: Python modules this driver needs, per URL scheme (Driver.needs).
NEEDS = {"usb": ("usb", "pyusb", "pip install pyusb; apt-get install libusb-1.0-0"),
         "evdev": ("evdev", "python-evdev", "pip install evdev (Debian: apt-get install python3-evdev)")}


class CardReaderDriver(Driver):
    name = "card-reader"
    family = "reader"
    description = "magnetic-stripe card reader: serial echo/version, loopback plug, USB presence, swipe test"
    schemes = ("serial", "sim", "usb", "evdev")
    shares = ("guest", "owner")  # the POS application reads the cards; posagent asks between swipes
    #: A reader gone silent or garbled on a port held open (owner): the link, not the reader.
    repairable = frozenset({"READER_NO_RESPONSE", "READER_BAD_CHECKSUM", "READER_BAD_FRAME", "READER_PROTOCOL_ERROR"})
    needs = NEEDS
    url_example = "serial:///dev/ttyUSB0?baudrate=9600"
    Options = CardReaderOptions
    codes = CODES

    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        self._profile: FrameProfile = self.options.frame_profile()
        p = self._profile
        table = bytearray(range(256))
        for control in {p.stx, p.etx, p.ack, p.nak}:
            table[control] = 0x55
        self._nonce_table = bytes(table)
        # A simulated reader speaks this driver's (possibly overridden) framing profile.
        url = device.url
        knobs = {"profile": self.options.profile} if url is not None and url.host == "card-reader" else {}
        self._link = Link(device.url, where=f"card reader {device.name}", open_errors=OPEN_ERRORS,
                          sim_knobs=knobs, sim_setup=self._sim_setup, share=self.share)

    def repair(self, result: Result, deadline: float) -> list[str]:
        """docs/self-repair.md: as owner, the serial port reopened once per fault episode (its
        settings applied again); nothing is sent to the reader. A guest opens it every time."""
        if self._url.scheme not in ("serial", "sim") or result.code not in self.repairable:
            return []
        return self._link.reopen(deadline)

    def _sim_setup(self, sim: Simulator) -> None:
        if hasattr(sim, "profile"):
            sim.profile = self._profile

    def check_environment(self) -> str | None:
        """The URL's needs, and python-evdev for a keyboard-wedge reader (``wedge``)."""
        wedge = self.missing("evdev") if self.options.wedge.startswith("evdev:") else None
        return self.missing(self._url.scheme) or wedge

    @property
    def _url(self) -> DeviceURL:
        assert self.device.url is not None
        return self.device.url

    def _baud(self) -> int | None:
        if self._url.scheme != "serial":
            return None  # a pty or socket has no wire speed
        return int(self._url.params.get("baudrate", 9600))  # type: ignore[call-overload]

    # -- status and checks ---------------------------------------------------------
    def status(self) -> Result:
        scheme = self._url.scheme
        if scheme in ("usb", "evdev"):
            return presence(self._url, self.options)
        if self.options.loopback_plug:
            return self._loopback(time.monotonic() + self.timeout, total=64)
        return self._echo()

    def checks(self) -> list[Check]:
        opts: CardReaderOptions = self.options
        out: list[Check] = []
        scheme = self._url.scheme
        if scheme in ("usb", "evdev"):
            out.append(Check("presence", Level.INTERNAL, lambda ctx: presence(self._url, self.options),
                             "reader connected"))
        elif opts.loopback_plug:
            baud = self._baud() or 115200
            wire = opts.loopback_bytes * 10.0 / baud
            out.append(Check("loopback", Level.INTERNAL, lambda ctx: self._loopback(ctx.deadline),
                             "bytes through a TX-RX loopback plug", timeout=max(self.timeout, wire * 2 + 3.0)))
        else:
            out.append(Check("echo", Level.INTERNAL, lambda ctx: self._echo(), "command round trip"))
        if not opts.loopback_plug:
            out.append(Check("swipe", Level.INTERACTIVE, self._swipe, "swipe a test card",
                             timeout=opts.swipe_timeout + 15.0))
        return out

    # -- echo / version ------------------------------------------------------------
    def _echo(self) -> Result:
        return self._link.exchange(self._echo_on)

    def _echo_on(self, stream: Stream) -> Result:
        p = self._profile
        command = self.options.command or p.default_command
        if command == "echo":
            # Random bytes with the control bytes mapped away, in one C-level pass.
            nonce = secrets.token_bytes(self.options.echo_bytes).translate(self._nonce_table)
            payload = p.echo_cmd + nonce
        else:
            payload = p.version_cmd
        t0 = time.perf_counter()
        try:
            ex = frames.exchange(stream, p, payload)
        except DeviceIOError:
            raise  # the link broke: the Link reopens a stale one once, else the runner reports it
        except DeviceError as e:
            return self._error_result(e, command)
        m: dict[str, Any] = {"reply_ms": round((time.perf_counter() - t0) * 1000, 2), "tries": ex.tries,
                             "naks": ex.naks, "profile": p.name}
        if command == "echo":
            if ex.reply != payload:
                self._link.reset()
                where = next((i for i, (a, b) in enumerate(zip(ex.reply, payload, strict=False)) if a != b),
                             min(len(ex.reply), len(payload)))
                return Result.fail("READER_ECHO_MISMATCH", f"echo came back different from byte {where} "
                                   f"({len(ex.reply)} of {len(payload)} bytes)", measurements=m)
            m["echo_bytes"] = len(nonce)
            return Result.ok("READER_OK", f"reader echoed {len(nonce)} random bytes in {m['reply_ms']:g} ms"
                             + (f" after {ex.naks} NAK" if ex.naks else ""), measurements=m)
        text = ex.reply.decode("ascii", "replace").strip()
        if not text or not text.isprintable():
            return Result.unknown("READER_PROTOCOL_ERROR", "version reply is not text", measurements=m)
        return Result.ok("READER_OK", f"reader answered version '{text[:60]}' in {m['reply_ms']:g} ms",
                         measurements=m, fields={"firmware": text[:60]})

    def _error_result(self, e: DeviceError, command: str) -> Result:
        """The command's answer was wrong (silence, NAK, a bad frame): the result names the
        command and the framing profile, and the next exchange starts on a fresh port. The
        one place this driver makes a result from an error."""
        self._link.reset()
        return Result(e.status, e.code, f"{command} command: {e}",
                      measurements={**e.facts, "profile": self._profile.name})

    # -- loopback plug -------------------------------------------------------------
    def _loopback(self, deadline: float, total: int | None = None) -> Result:
        return self._link.exchange(
            lambda s: loopback(s, self.options, self._baud(), deadline, total, self._link.reset))

    # -- swipe -----------------------------------------------------------------------
    def _swipe(self, ctx: CheckContext) -> Result:
        opts: CardReaderOptions = self.options
        wedge = opts.wedge or (self._url.raw if self._url.scheme == "evdev" else "")
        if not wedge and self._url.scheme == "usb":
            return Result.unknown("READER_SWIPE_UNSUPPORTED", "a USB reader's swipes need the wedge option "
                                  "(its keyboard device)")
        if ctx.prompt is not None:
            answer = ctx.prompt(_("Card reader: have a magnetic test card ready. Enter = start, s = skip:"))
            if answer.strip().lower() in ("s", "skip"):
                return Result.unknown("READER_SWIPE_SKIPPED", "swipe test skipped by the technician")
        limit = min(float(opts.swipe_timeout), max(1.0, ctx.remaining() - 2.0))
        buf = bytearray(1024)
        if wedge:
            got = wait_wedge_swipe(parse_url(wedge), buf, limit, ctx.say)
        else:
            try:
                got = self._link.exchange(lambda s: self._wait_swipe(s, buf, limit, ctx), retry=False)
            except BaseException:
                wipe(buf)
                self._link.reset()
                raise
        return swipe_result(buf, got, self._profile, opts.track_lrc, limit)

    def _wait_swipe(self, stream: ByteStream, buf: bytearray, limit: float, ctx: CheckContext) -> SwipeRead:
        return wait_serial_swipe(stream, self._profile, buf, limit, ctx.say)

    def close(self) -> None:
        self._link.close()  # waits a little for a check in progress (a hung one holds the lock), then closes

