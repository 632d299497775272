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

import operator
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from posagent.config.urls import DeviceURL, parse_url
from posagent.config.values import Duration
from posagent.core.base import Check, CheckContext, Driver, Level, Missing, Result, Status
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound, DeviceTimeout
from posagent.core.i18n import N_, _
from posagent.drivers.cardreader import frames
from posagent.drivers.cardreader.frames import FrameProfile
from posagent.drivers.transport.stream import ByteStream, open_stream


@dataclass(frozen=True)
class CardReaderOptions:
    profile: str = "generic-len"  # idtech | star | generic-len (frames.PROFILES)
    command: str = ""  # echo | version; "" = the profile's default
    echo_command: str = ""  # hex, e.g. "45"; "" = the profile's
    version_command: str = ""  # hex, e.g. "5222"
    echo_bytes: int = 8  # random bytes per echo
    # Framing overrides (unset = the profile's value):
    stx: int | None = None
    etx: int | None = None
    length_byte: bool | None = None
    lrc_span: str = ""
    ack: int | None = None
    nak: int | None = None
    ack_before_reply: bool | None = None
    reply_timeout: Duration | None = None
    retries_on_nak: int | None = None
    swipe_framed: bool | None = None
    # Loopback-plug mode: the port's TX is wired to its RX; tests the UART and cable.
    loopback_plug: bool = False
    loopback_bytes: int = 1024
    loopback_block: int = 128
    # Swipe test:
    swipe_timeout: Duration = Duration(30.0)
    track_lrc: str = "auto"  # auto | yes | no: does the reader send each track's LRC?
    wedge: str = ""  # evdev: (or sim://keypad) URL of a keyboard-wedge reader's keystrokes
    interface: int = 0  # usb: interface whose kernel binding is reported

    def __post_init__(self) -> None:
        p = self.frame_profile()
        cmd = self.command or p.default_command
        if cmd not in frames.COMMANDS:
            raise ValueError(f"command must be echo or version, not '{self.command}'")
        if cmd == "echo" and not p.echo_cmd:
            raise ValueError(f"profile {p.name} has no echo command: set command = \"version\" or echo_command")
        if cmd == "version" and not p.version_cmd:
            raise ValueError(f"profile {p.name} has no version command: set version_command")
        if not 1 <= self.echo_bytes <= 200:
            raise ValueError("echo_bytes must be between 1 and 200")
        if not (1 <= self.loopback_block <= 4096 and 1 <= self.loopback_bytes <= 1_000_000):
            raise ValueError("loopback_block must be 1-4096 and loopback_bytes 1-1000000")
        if self.track_lrc not in ("auto", "yes", "no"):
            raise ValueError("track_lrc must be auto, yes or no")
        if not 1 <= self.swipe_timeout <= 600:
            raise ValueError("swipe_timeout must be between 1s and 10m")
        if self.wedge:
            url = parse_url(self.wedge)
            if url.scheme not in ("evdev", "sim"):
                raise ValueError("wedge must be an evdev: URL (or sim://keypad?swipe=...)")

    def frame_profile(self) -> FrameProfile:
        base = frames.get_profile(self.profile)
        try:
            return base.with_overrides(
                stx=self.stx, etx=self.etx, length_byte=self.length_byte, lrc_span=self.lrc_span or None,
                ack=self.ack, nak=self.nak, ack_before_reply=self.ack_before_reply,
                timeout=float(self.reply_timeout) if self.reply_timeout is not None else None,
                retries_on_nak=self.retries_on_nak, swipe_framed=self.swipe_framed,
                echo_cmd=_hex(self.echo_command, "echo_command"), version_cmd=_hex(self.version_command,
                                                                                  "version_command"))
        except TypeError as e:
            raise ValueError(str(e)) from None


def _hex(text: str, what: str) -> bytes | None:
    if not text:
        return None
    try:
        return bytes.fromhex(text.replace("0x", "").replace(",", " "))
    except ValueError:
        raise ValueError(f"{what} must be hex bytes like \"52 22\", not '{text}'") from None


_PROTOCOL_HINT = N_("The reader answers in an unknown way: check the profile option and the baud rate.")


class CardReaderDriver(Driver):
    name = "card-reader"
    family = "reader"
    description = "magnetic-stripe card reader: serial echo/version, loopback plug, USB presence, swipe test"
    schemes = ("serial", "sim", "usb", "evdev")
    url_example = "serial:///dev/ttyUSB0?baudrate=9600"
    Options = CardReaderOptions
    hints: ClassVar[dict[str, str]] = {
        "READER_NO_RESPONSE": N_("Check the reader's cable and power, then power-cycle the reader (unplug it and "
                                 "plug it in again); check the baud rate in the config."),
        "READER_NAK": N_("The reader rejects every command: set the profile option to the reader's make "
                         "(idtech, star, generic-len)."),
        "READER_BAD_CHECKSUM": N_("Frames arrive corrupted: check the baud rate and parity, reseat or replace the "
                                  "cable, keep it away from power lines."),
        "READER_ECHO_MISMATCH": N_("The reader returns different bytes than sent: replace the cable or the reader."),
        "READER_PROTOCOL_ERROR": _PROTOCOL_HINT,
        "READER_BAD_FRAME": _PROTOCOL_HINT,
        "READER_BAD_LENGTH": _PROTOCOL_HINT,
        "READER_NOT_PRESENT": N_("Plug the reader in (USB or serial adapter) and check the URL in the config."),
        "READER_NO_KERNEL_DRIVER": N_("No kernel driver is bound: replug the reader; check that usbhid is loaded."),
        "READER_LOOPBACK_ERRORS": N_("Bytes came back wrong through the loopback plug: the port or cable is faulty."),
        "READER_TRACK_ERROR": N_("Check the card's stripe (scratched, dirty, demagnetised?) and swipe again "
                                 "steadily; clean the read head with a cleaning card; try another card; replace "
                                 "the reader if it persists."),
        "READER_SWIPE_LUHN": N_("The card's number fails its check digit: use a known good test card; if every "
                                "card fails, check the card's stripe and clean the read head."),
        "READER_NO_SWIPE": N_("No swipe arrived: swipe within the time limit, stripe towards the read head; if you "
                              "did, clean the head and check the reader's cable."),
        "READER_SWIPE_SKIPPED": N_("Run the interactive self-test at the terminal with a test card."),
        "READER_SWIPE_UNSUPPORTED": N_("Set the wedge option to the reader's keyboard device (evdev URL)."),
    }

    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        self._profile: FrameProfile = self.options.frame_profile()
        p = self._profile
        table = bytearray(range(256))
        for control in {p.stx, p.etx, p.ack, p.nak}:
            table[control] = 0x55
        self._nonce_table = bytes(table)
        self._stream: ByteStream | None = None
        self._lock = threading.RLock()

    def check_environment(self) -> str | None:
        import importlib.util

        needs = {"usb": ("usb", Missing("pyusb", "pip install pyusb; apt-get install libusb-1.0-0")),
                 "evdev": ("evdev", Missing("python-evdev", "pip install evdev"))}
        scheme = "evdev" if self.options.wedge.startswith("evdev:") else self._url.scheme
        for name in {self._url.scheme, scheme}:
            if name in needs and importlib.util.find_spec(needs[name][0]) is None:
                return needs[name][1]
        return None

    @property
    def _url(self) -> DeviceURL:
        assert self.device.url is not None
        return self.device.url

    # -- the byte stream -----------------------------------------------------------
    def _open(self) -> ByteStream:
        if self._stream is not None:
            return self._stream
        url = self._url
        try:
            if url.scheme == "sim":
                self._stream = self._open_sim(url)
            else:
                self._stream = open_stream(url)
        except DeviceNotFound as e:
            raise DeviceNotFound(str(e), code="READER_NOT_PRESENT", measurements=e.measurements) from None
        return self._stream

    def _open_sim(self, url: DeviceURL) -> ByteStream:
        """Start the simulator with this driver's (possibly overridden) framing profile."""
        from posagent.drivers.simulator import make_sim

        knobs = dict(url.params)
        if url.host == "card-reader":
            knobs.setdefault("profile", self.options.profile)
        sim = make_sim(url.host, knobs)
        if hasattr(sim, "profile"):
            sim.profile = self._profile
        handle = sim.start()
        try:
            stream = open_stream(handle.url)
        except BaseException:
            handle.stop()
            raise
        stream.sim = handle
        return stream

    def _reset(self) -> None:
        """Close the stream after a failed exchange; the next use reopens it."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _baud(self) -> int | None:
        if self._url.scheme != "serial":
            return None  # a pty or socket has no wire speed
        return int(self._url.params.get("baudrate", 9600))  # type: ignore[call-overload]

    # -- status and checks ---------------------------------------------------------
    def status(self) -> Result:
        scheme = self._url.scheme
        if scheme in ("usb", "evdev"):
            return self._presence()
        if self.options.loopback_plug:
            return self._loopback(time.monotonic() + self.timeout, total=64)
        return self._echo()

    def checks(self) -> list[Check]:
        opts: CardReaderOptions = self.options
        out: list[Check] = []
        scheme = self._url.scheme
        if scheme in ("usb", "evdev"):
            out.append(Check("presence", Level.INTERNAL, lambda ctx: self._presence(), "reader connected"))
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
    def _exchange(self, fn: Callable[[ByteStream], Result], retry: bool = True) -> Result:
        """Run ``fn(stream)`` under the lock; after a broken link on a stream that had been
        open since an earlier call (a replugged USB-serial adapter), reopen once."""
        with self._lock:
            for _attempt in (1, 2):
                fresh = self._stream is None
                stream = self._open()
                try:
                    return fn(stream)
                except DeviceIOError:
                    self._reset()
                    if fresh or not retry:
                        raise
            raise AssertionError("unreachable: the second attempt always opens a fresh stream")

    def _echo(self) -> Result:
        return self._exchange(self._echo_on)

    def _echo_on(self, stream: ByteStream) -> Result:
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
            raise
        except DeviceError as e:
            self._reset()
            status = Status.parse(e.status) if e.status in ("ok", "warn", "fail", "unknown") else Status.UNKNOWN
            return Result(status, e.code, f"{command} command: {e}", measurements={**e.measurements, "profile": p.name})
        m: dict[str, Any] = {"reply_ms": round((time.perf_counter() - t0) * 1000, 2), "tries": ex.tries,
                             "naks": ex.naks, "profile": p.name}
        if command == "echo":
            if ex.reply != payload:
                self._reset()
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

    # -- loopback plug -------------------------------------------------------------
    def _loopback(self, deadline: float, total: int | None = None) -> Result:
        return self._exchange(lambda stream: self._loopback_on(stream, deadline, total))

    def _loopback_on(self, stream: ByteStream, deadline: float, total: int | None) -> Result:
        opts: CardReaderOptions = self.options
        baud = self._baud()
        wire_bps = baud / 10.0 if baud else None
        want = total or opts.loopback_bytes
        stream.flush_input()
        checked = errors = 0
        t0 = time.perf_counter()
        for _round in range(want // max(1, opts.loopback_block) + 2):
            if checked >= want:
                break
            block = secrets.token_bytes(min(opts.loopback_block, want - checked))
            wait = (len(block) / wire_bps * 2 if wire_bps else 0.0) + 0.5
            wait = min(wait, max(0.05, deadline - time.monotonic() - 0.2))
            stream.write(block, timeout=wait + 1.0)
            try:
                back = stream.read_exact(len(block), wait)
            except DeviceTimeout:
                back = stream.read_available(0)
                errors += len(block) - len(back) + sum(map(operator.ne, block, back))
                checked += len(back)
                break
            errors += sum(map(operator.ne, block, back))
            checked += len(block)
        elapsed = time.perf_counter() - t0
        m: dict[str, Any] = {"bytes_checked": checked, "byte_errors": errors,
                             "throughput_bytes_per_s": round(checked / elapsed, 1) if elapsed > 0 else None}
        if wire_bps:
            m["baudrate"] = baud
            m["wire_limit_bytes_per_s"] = round(wire_bps, 1)
            if m["throughput_bytes_per_s"]:
                m["wire_efficiency_pct"] = round(100.0 * m["throughput_bytes_per_s"] / wire_bps, 1)
        if checked == 0:
            self._reset()
            return Result.unknown("READER_NO_RESPONSE", "nothing came back: is the loopback plug fitted on this "
                                  "port?", measurements=m)
        rate = f"{m['throughput_bytes_per_s']:g} B/s"
        limit = f" (wire limit {wire_bps:g} B/s at {baud} baud)" if wire_bps else " (no wire limit on this link)"
        if errors or checked < want:
            self._reset()
            return Result.fail("READER_LOOPBACK_ERRORS", f"{errors} byte error(s) in {want} bytes through the "
                               f"loopback plug, {rate}{limit}", measurements=m)
        return Result.ok("READER_LOOPBACK_OK", f"{checked} random bytes came back intact, {rate}{limit}",
                         measurements=m)

    # -- USB / evdev presence --------------------------------------------------------
    def _presence(self) -> Result:
        url = self._url
        if url.scheme == "evdev":
            from posagent.drivers.transport.evdev import open_device

            dev = open_device(url, "READER_NOT_PRESENT")
            try:
                return Result.ok("READER_OK", f"keyboard-wedge reader {dev.name} present", fields={"model": dev.name})
            finally:
                dev.close()
        from posagent.drivers.transport import usb as usbio

        vid, pid = int(url.params["vendor"]), int(url.params["product"])  # type: ignore[call-overload]
        ident = f"{vid:04x}:{pid:04x}"
        usb_dev = usbio.find_device(vid, pid)
        if usb_dev is None:
            return Result.unknown("READER_NOT_PRESENT", f"USB reader {ident} is not connected",
                                  measurements={"usb_id": ident, "reason": "not_connected"})
        info = usbio.describe(usb_dev, self.options.interface)
        name = " ".join(str(info[k]) for k in ("manufacturer", "product") if info.get(k)) or "USB reader"
        bound = info.get("kernel_driver_bound")
        m = {"kernel_driver_bound": bound, "bus": info.get("bus"), "address": info.get("address")}
        fields = {k: info[k] for k in ("manufacturer", "product", "serial") if info.get(k)}
        if info.get("product"):
            fields["model"] = info["product"]
        binding = {True: "kernel driver bound", False: "no kernel driver bound", None: "kernel binding unknown"}[bound]
        if bound is False and self.options.wedge:
            return Result.warn("READER_NO_KERNEL_DRIVER", f"{name} ({ident}) present but {binding}: its keystrokes "
                               "will not arrive", measurements=m, fields=fields)
        return Result.ok("READER_OK", f"{name} ({ident}) present, {binding}", measurements=m, fields=fields)

    # -- swipe -----------------------------------------------------------------------
    def _swipe(self, ctx: CheckContext) -> Result:
        from posagent.drivers.cardreader.swipe import swipe_result, wait_serial_swipe, wait_wedge_swipe
        from posagent.drivers.cardreader.tracks import wipe

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
            with self._lock:
                try:
                    got = wait_serial_swipe(self._open(), self._profile, buf, limit, ctx.say)
                except BaseException:
                    wipe(buf)
                    self._reset()
                    raise
        return swipe_result(buf, got, self._profile, opts.track_lrc, limit)

    def close(self) -> None:
        got = self._lock.acquire(timeout=2.0)  # a hung check may hold it; close anyway
        try:
            self._reset()
        except Exception:
            pass
        finally:
            if got:
                self._lock.release()

