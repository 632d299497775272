"""PC/SC building blocks for the ``pcsc`` driver: pcsc-lite codes and states, the pure
grading helpers (unit-tested without pcscd), and ``Session``, one PC/SC context in which
every pyscard call is wrapped so that no pyscard exception or traceback reaches a user.

pyscard is imported only when a Session opens (or the environment check runs).
"""

from __future__ import annotations

from typing import Any

from posagent.core.base import Result
from posagent.core.errors import DeviceError

# pcsc-lite return codes (pcsclite.h) and reader states.
E_NOT_TRANSACTED = 0x80100016
E_NO_SERVICE = 0x8010001D
E_SERVICE_STOPPED = 0x8010001E
E_NO_READERS_AVAILABLE = 0x8010002E
E_NO_SMARTCARD = 0x8010000C
E_UNKNOWN_READER = 0x80100009
E_READER_UNAVAILABLE = 0x80100017
E_SHARING_VIOLATION = 0x8010000B
E_TIMEOUT = 0x8010000A
W_UNSUPPORTED_CARD = 0x80100065
W_UNRESPONSIVE_CARD = 0x80100066
W_UNPOWERED_CARD = 0x80100067
W_RESET_CARD = 0x80100068
W_REMOVED_CARD = 0x80100069

STATE_UNAWARE = 0x0
STATE_CHANGED = 0x2
STATE_UNKNOWN = 0x4
STATE_UNAVAILABLE = 0x8
STATE_EMPTY = 0x10
STATE_PRESENT = 0x20
STATE_MUTE = 0x200

SCOPE_USER = 0
SHARE_SHARED = 2
SHARE_DIRECT = 3
PROTOCOL_T0 = 1
PROTOCOL_T1 = 2
LEAVE_CARD = 0

# PC/SC attribute tags (SCARD_ATTR_VALUE(class, tag)).
ATTR_VENDOR_NAME = 0x10100
ATTR_VENDOR_IFD_TYPE = 0x10101
ATTR_VENDOR_IFD_VERSION = 0x10102

PPSE = b"2PAY.SYS.DDF01"
PSE = b"1PAY.SYS.DDF01"

NOT_INSTALLED = "pyscard is not installed: pip install 'posagent[pcsc]' (needs swig and libpcsclite-dev)"

_SW_TEXT = {
    0x6A82: "file or application not found",
    0x6A81: "function not supported",
    0x6A86: "incorrect P1/P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6985: "conditions of use not satisfied",
    0x6999: "applet selection failed",
    0x6283: "selected file deactivated",
    0x6700: "wrong length",
}


# -- pure helpers (unit-tested) ------------------------------------------------------------
def pick_reader(names: list[str], prefix: str) -> str | None:
    """The first reader whose name starts with ``prefix`` (case-insensitive); any reader if no prefix."""
    if not prefix:
        return names[0] if names else None
    want = prefix.casefold()
    return next((n for n in names if n.casefold().startswith(want)), None)


def card_state(event_state: int) -> str:
    """present | absent | mute | unavailable | unknown, from an event state (counter masked off)."""
    s = event_state & 0xFFFF
    if s & (STATE_UNKNOWN | STATE_UNAVAILABLE):
        return "unavailable"
    if s & STATE_MUTE:
        return "mute"
    if s & STATE_PRESENT:
        return "present"
    if s & STATE_EMPTY:
        return "absent"
    return "unknown"


def atr_hex(atr: list[int] | bytes) -> str:
    return " ".join(f"{b & 0xFF:02X}" for b in atr)


def sw_text(sw: int) -> str:
    text = _SW_TEXT.get(sw)
    return f"{sw:04X} {text}" if text else f"{sw:04X}"


def sw_answered(sw: int) -> bool:
    """Is ``sw`` a status word ISO 7816-4 defines (the card answered)? 60xx is a procedure byte."""
    sw1 = sw >> 8
    return (0x61 <= sw1 <= 0x6F) or (0x90 <= sw1 <= 0x9F)


def sw_success(sw: int) -> bool:
    """9000, 61xx (more data), 6Cxx (ask again with Le=xx): the application was found."""
    return sw == 0x9000 or sw >> 8 in (0x61, 0x6C)


def grade_select(sws: dict[str, int | None], fields: dict[str, Any]) -> Result:
    """Grade the SELECT answers (name -> SW, None = no status words). See the module table."""
    for name, sw in sws.items():
        fields[f"sw_{name.lower()}"] = f"{sw:04X}" if sw is not None else None
    answered = [sw for sw in sws.values() if sw is not None]
    fields["card_answered"] = bool(answered) and all(sw_answered(sw) for sw in answered)
    said = ", ".join(f"{n} {sw_text(sw) if sw is not None else 'no answer'}" for n, sw in sws.items())
    if not answered:
        return Result.fail("CARD_NO_ANSWER", f"the card gave an ATR but no status words to SELECT ({said})",
                           fields=fields)
    good = [n for n, sw in sws.items() if sw is not None and sw_success(sw)]
    if good:
        return Result.ok("PCSC_OK", f"card answered SELECT {'/'.join(good)} as a payment card ({said})",
                         fields=fields)
    if not fields["card_answered"]:
        return Result.unknown("CARD_SW_ERROR", f"the card's status words are not valid ISO 7816 ({said})",
                              fields=fields)
    return Result.warn("CARD_SW_ERROR", f"the card answered but is not a payment card ({said})", fields=fields)


def firmware_text(raw: list[int] | bytes) -> str | None:
    """SCARD_ATTR_VENDOR_IFD_VERSION (a little-endian DWORD 0xMMmmbbbb; CCID puts bcdDevice in MMmm)."""
    if len(raw) < 4:
        return None
    v = int.from_bytes(bytes(b & 0xFF for b in raw[:4]), "little")
    major, minor, build = v >> 24, (v >> 16) & 0xFF, v & 0xFFFF
    return f"{major:x}.{minor:02x}" + (f".{build}" if build else "")


def attr_text(raw: list[int] | bytes) -> str | None:
    text = bytes(b & 0xFF for b in raw).split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return "".join(c for c in text if c.isprintable())[:64] or None


# -- the PC/SC session ---------------------------------------------------------------------
def import_scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as e:
        if getattr(e, "name", "") in ("smartcard", "smartcard.scard"):
            raise DeviceError(NOT_INSTALLED, code="DRIVER_UNAVAILABLE", measurements={
                "package": "pyscard", "install": "pip install 'posagent[pcsc]'"}) from e
        raise DeviceError(f"pyscard cannot load its PC/SC library: {e}", code="DRIVER_UNAVAILABLE",
                          measurements={"package": "libpcsclite1", "install": "apt-get install libpcsclite1"}) from e
    return scard


_CODE_OF_HR = {
    E_NO_SERVICE: ("PCSC_NO_SERVICE", "unknown"), E_SERVICE_STOPPED: ("PCSC_NO_SERVICE", "unknown"),
    E_UNKNOWN_READER: ("READER_NOT_PRESENT", "unknown"), E_READER_UNAVAILABLE: ("READER_NOT_PRESENT", "unknown"),
    E_NO_SMARTCARD: ("CARD_ABSENT", "unknown"), W_REMOVED_CARD: ("CARD_ABSENT", "unknown"),
    W_UNRESPONSIVE_CARD: ("CARD_MUTE", "fail"), W_UNPOWERED_CARD: ("CARD_MUTE", "fail"),
    W_UNSUPPORTED_CARD: ("CARD_MUTE", "fail"), E_SHARING_VIOLATION: ("READER_BUSY", "unknown"),
    E_NOT_TRANSACTED: ("CARD_NO_ANSWER", "fail"), W_RESET_CARD: ("CARD_NO_ANSWER", "unknown"),
}


class Session:
    """One PC/SC context. Every pyscard call is wrapped; a failing return code raises a
    DeviceError whose code says what it means (pcscd down, reader gone, card mute...)."""

    def __init__(self) -> None:
        self.scard = import_scard()
        self.ctx: Any = None
        hr, ctx = self.call("SCardEstablishContext", SCOPE_USER)
        self.check(hr, "cannot reach pcscd")
        self.ctx = ctx

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            try:
                self.scard.SCardReleaseContext(self.ctx)
            except Exception:
                pass
            self.ctx = None

    def call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.scard, fn)(*args)
        except Exception as e:  # pyscard raises SystemError/TypeError/its own errors
            raise DeviceError(f"PC/SC call {fn} failed: {type(e).__name__}: {e}", code="PCSC_ERROR",
                              measurements={"pcsc_call": fn, "exception": type(e).__name__}) from e

    def explain(self, hr: int) -> str:
        try:
            text = str(self.scard.SCardGetErrorMessage(hr)).strip().rstrip(".")
        except Exception:
            text = "PC/SC error"
        return f"{text} (0x{hr & 0xFFFFFFFF:08X})"

    def check(self, hr: int, what: str, reader: str = "") -> None:
        hr &= 0xFFFFFFFF
        if hr == 0:
            return
        code, status = _CODE_OF_HR.get(hr, ("PCSC_ERROR", "unknown"))
        if code == "PCSC_NO_SERVICE":
            what = "pcscd is not running or its socket is unreachable"
        facts: dict[str, Any] = {"pcsc_code": f"0x{hr:08X}"}
        if reader:
            facts["reader"] = reader
        if code == "READER_NOT_PRESENT":
            facts["reason"] = "unusable"
        raise DeviceError(f"{what}: {self.explain(hr)}", code=code, status=status, measurements=facts)

    def readers(self) -> list[str]:
        hr, names = self.call("SCardListReaders", self.ctx, [])
        if hr & 0xFFFFFFFF == E_NO_READERS_AVAILABLE:
            return []
        self.check(hr, "cannot list readers")
        return [str(n) for n in names]

    def state(self, reader: str, current: int = STATE_UNAWARE, timeout_ms: int = 0) -> tuple[int, list[int]] | None:
        """(event state, ATR) of ``reader``; None when ``timeout_ms`` passed without a change."""
        hr, states = self.call("SCardGetStatusChange", self.ctx, timeout_ms, [(reader, current)])
        if hr & 0xFFFFFFFF == E_TIMEOUT:
            return None
        self.check(hr, f"cannot read the state of reader '{reader}'", reader)
        _name, event, atr = states[0]
        return int(event), list(atr)

    def attributes(self, reader: str) -> dict[str, str]:
        """vendor / model / firmware where the reader driver reports them; {} if it cannot say."""
        hr, handle, _proto = self.call("SCardConnect", self.ctx, reader, SHARE_DIRECT, 0)
        self.check(hr, f"cannot open reader '{reader}'", reader)
        out: dict[str, str] = {}
        try:
            for key, tag, fmt in (("vendor", ATTR_VENDOR_NAME, attr_text), ("model", ATTR_VENDOR_IFD_TYPE, attr_text),
                                  ("firmware", ATTR_VENDOR_IFD_VERSION, firmware_text)):
                hr, raw = self.call("SCardGetAttrib", handle, tag)
                value = fmt(raw) if hr == 0 and raw else None
                if value:
                    out[key] = value
        finally:
            self.disconnect(handle)
        return out

    def disconnect(self, handle: Any) -> None:
        try:
            self.scard.SCardDisconnect(handle, LEAVE_CARD)
        except Exception:
            pass

    def connect_card(self, reader: str) -> tuple[Any, int]:
        """A shared connection to the card (pcscd powers it and negotiates T=0/T=1)."""
        hr, handle, proto = self.call("SCardConnect", self.ctx, reader, SHARE_SHARED, PROTOCOL_T0 | PROTOCOL_T1)
        self.check(hr, f"cannot connect to the card in reader '{reader}'", reader)
        return handle, int(proto)

    def select_sw(self, handle: Any, proto: int, aid: bytes) -> int | None:
        """SELECT by name; returns the status word only (the response data is never kept).
        None: the card did not answer; a card pulled out raises CARD_ABSENT."""
        apdu = [0x00, 0xA4, 0x04, 0x00, len(aid), *aid, 0x00]
        hr, resp = self.call("SCardTransmit", handle, proto, apdu)
        if hr & 0xFFFFFFFF in (E_NOT_TRANSACTED, W_UNRESPONSIVE_CARD, E_TIMEOUT):
            return None
        self.check(hr, f"SELECT {aid.decode()} failed (card removed during the test?)")
        sw = (resp[-2] << 8 | resp[-1]) if len(resp) >= 2 else None
        del resp
        return sw
