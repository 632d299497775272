"""The card-reader driver's options: ``[device.options]`` of a ``card-reader`` device,
and the framing profile they give (a built-in profile with single fields overridden)."""

from __future__ import annotations

from dataclasses import dataclass

from posagent.config.urls import parse_url
from posagent.core.values import Duration
from posagent.drivers.cardreader import frames
from posagent.drivers.cardreader.frames import FrameProfile


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
