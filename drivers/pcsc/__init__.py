"""Driver ``pcsc``: chip-card (IC) readers through PC/SC (pcscd), using pyscard.

URL: ``pcsc://?reader=NAME-PREFIX`` picks the first reader whose name starts with the
prefix (case-insensitive); ``pcsc://`` picks the first reader pcscd lists.

- ``status()`` / internal check ``status``: pcscd reachable, the reader present, the card
  state (absent / present / mute) from ``SCardGetStatusChange``, the ATR when a card is
  present (pcscd already holds it: nothing is sent to the card), and the reader's vendor,
  model and firmware where the reader driver reports them (read once per reader through a
  direct connection, which does not power the card).
- External check ``card`` (a test card inserted; at the interactive level the technician
  is asked to insert one): connect, ATR, then ``SELECT`` of the PPSE ``2PAY.SYS.DDF01``
  and the PSE ``1PAY.SYS.DDF01``. Only the ATR and the status words are kept; the
  response data is dropped unread.

Grading (design.md "Status by condition"):

| code | status | when |
| --- | --- | --- |
| PCSC_OK | ok | reader ready (with or without a card); the card answered SELECT with 9000/61xx/6Cxx |
| PCSC_NO_SERVICE | unknown | pcscd not running or its socket unreachable |
| READER_NOT_PRESENT | unknown | no reader matches the configured name, or pcscd lists it as unavailable |
| READER_BUSY | unknown | another program holds the reader exclusively |
| CARD_ABSENT | unknown | the card check found no card to test (or it was pulled mid-test) |
| CARD_MUTE | warn in status, fail in the card check | a card is inserted but gives no ATR |
| CARD_NO_ANSWER | fail | the card gave an ATR but no status words to SELECT |
| CARD_SW_ERROR | warn | the card answered SELECT with an ISO 7816 error such as 6A82: the reader and |
|               |      | the card talk, but the card is not a payment card (use an EMV test card) |
| CARD_SW_ERROR | unknown | the status words are not valid ISO 7816 (garbage) |
| PCSC_ERROR | unknown | any other PC/SC failure (the message carries the SCARD code) |

The PC/SC calls, codes and grading helpers live in ``pcsc_proto``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

from posagent.core.base import Check, CheckContext, Driver, Level, Missing, Result
from posagent.core.errors import DeviceError
from posagent.core.i18n import _
from posagent.core.values import Duration
from posagent.drivers.pcsc.codes import CODES
from posagent.drivers.pcsc.proto import (
    E_READER_UNAVAILABLE,
    PPSE,
    PROTOCOL_T0,
    PROTOCOL_T1,
    PSE,
    Session,
    atr_hex,
    card_state,
    grade_select,
    import_scard,
    pick_reader,
)


@dataclass(frozen=True)
class PcscOptions:
    #: Interactive level: how long to wait for the technician to insert a test card.
    card_wait: Duration = Duration(30.0)
    #: Read the reader's vendor, model and firmware (one direct connection per reader, cached).
    read_attributes: bool = True

    def __post_init__(self) -> None:
        if not 1.0 <= self.card_wait <= 600.0:
            raise ValueError("card_wait must be between 1s and 600s")


#: Python modules this driver needs, per URL scheme (Driver.needs).
NEEDS = {"*": ("smartcard", "pyscard", "pip install 'posagent[pcsc]' (Debian: apt-get install python3-pyscard)")}


class PcscDriver(Driver):
    name = "pcsc"
    family = "reader"
    description = "chip-card reader through PC/SC (pcscd): reader, card presence, ATR, SELECT PSE"
    schemes = ("pcsc",)
    shares = ("guest",)  # pcscd shares the reader (SCARD_SHARE_SHARED)
    needs = NEEDS
    url_example = "pcsc://?reader=ACS"
    Options = PcscOptions
    codes = CODES

    def __init__(self, device: Any, env: Any) -> None:
        super().__init__(device, env)
        url = device.url
        self.prefix = str(url.params.get("reader", "")) if url is not None else ""
        self._attrs: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def check_environment(self) -> str | None:
        try:
            import_scard()
        except DeviceError as e:
            package, install = e.measurements.get("package"), e.measurements.get("install")
            return Missing(package, install, str(e)) if package and install else str(e)
        return None

    def checks(self) -> list[Check]:
        opts: PcscOptions = self.options
        return [Check("status", Level.INTERNAL, lambda ctx: self.status(), "pcscd, reader, card state, ATR"),
                Check("card", Level.EXTERNAL, self.card_check, "a test card answers SELECT PSE/PPSE",
                      timeout=self.timeout + opts.card_wait)]

    # -- internal level ---------------------------------------------------------------------
    def status(self) -> Result:
        with Session() as pc:
            return self._status(pc)[0]

    def _reader(self, pc: Session) -> tuple[str | None, Result | None]:
        names = pc.readers()
        reader = pick_reader(names, self.prefix)
        if reader is not None:
            return reader, None
        want = f"no reader named '{self.prefix}...'" if self.prefix else "no reader"
        seen = f"pcscd lists: {', '.join(names)}" if names else "pcscd lists no reader"
        facts: dict[str, Any] = {"reason": "no_match" if names else "no_reader"}
        if self.prefix:
            facts["reader"] = self.prefix
        if names:
            facts["readers"] = ", ".join(names)
        return None, Result.unknown("READER_NOT_PRESENT", f"{want} ({seen})", fields={"reader_present": False},
                                    measurements=facts)

    def _status(self, pc: Session) -> tuple[Result, str | None, int]:
        """(result, reader name, event state)."""
        reader, missing = self._reader(pc)
        if reader is None or missing is not None:
            return missing or Result.unknown("READER_NOT_PRESENT", "no reader",
                                             measurements={"reason": "no_reader"}), None, 0
        got = pc.state(reader)  # an UNAWARE query returns at once
        if got is None:
            raise DeviceError(f"pcscd did not report the state of reader '{reader}'", code="PCSC_ERROR",
                              measurements={"reader": reader, "reason": "no_state"})
        event, atr = got
        fields: dict[str, Any] = {"reader": reader, "reader_present": True}
        state = card_state(event)
        if state in ("unavailable", "unknown"):
            return Result.unknown("READER_NOT_PRESENT", f"pcscd lists reader '{reader}' but cannot use it "
                                  f"(state 0x{event & 0xFFFF:04X})", fields={**fields, "reader_present": False},
                                  measurements={"reason": "unusable"}), \
                reader, event
        fields.update(self._attributes(pc, reader))
        fields["card_present"] = state != "absent"
        if state == "present" and atr:
            fields["atr"] = atr_hex(atr)
            return Result.ok("PCSC_OK", f"reader '{reader}' ready, card present, ATR {fields['atr']}",
                             fields=fields), reader, event
        if state == "absent":
            return Result.ok("PCSC_OK", f"reader '{reader}' ready, no card", fields=fields), reader, event
        return Result.warn("CARD_MUTE", f"reader '{reader}': a card is inserted but gives no ATR",
                           fields=fields), reader, event

    def _attributes(self, pc: Session, reader: str) -> dict[str, str]:
        if not self.options.read_attributes:
            return {}
        with self._lock:
            if reader in self._attrs:
                return self._attrs[reader]
        try:
            attrs = pc.attributes(reader)
        except DeviceError:
            return {}  # busy or vanished: try again next time
        with self._lock:
            self._attrs[reader] = attrs
        return attrs

    # -- external / interactive level ------------------------------------------------------
    def card_check(self, ctx: CheckContext) -> Result:
        with Session() as pc:
            result, reader, event = self._status(pc)
            if reader is None or result.code not in ("PCSC_OK", "CARD_MUTE"):
                return result
            if not result.fields.get("card_present"):
                if ctx.level < Level.INTERACTIVE:
                    return Result.unknown("CARD_ABSENT", f"no card in reader '{reader}': a test card is needed for "
                                          "this check", fields=result.fields)
                if self._wait_for_card(pc, reader, event, ctx) is None:
                    return Result.unknown("CARD_ABSENT", f"no card was inserted into reader '{reader}' in time",
                                          fields=result.fields)
            return self._exchange(pc, reader, result.fields)

    def _wait_for_card(self, pc: Session, reader: str, event: int, ctx: CheckContext) -> int | None:
        wait = min(float(self.options.card_wait), max(0.0, ctx.remaining() - 2.0))
        if ctx.say is not None:
            ctx.say(_("Insert a test card into reader {reader} (waiting up to {seconds} s)").format(
                reader=reader, seconds=int(wait)))
        deadline = time.monotonic() + wait
        for _i in range(int(wait) + 2):  # one-second slices; each returns at once on a change
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = pc.state(reader, event, int(min(left, 1.0) * 1000))
            if got is None:
                continue
            event = got[0]
            if card_state(event) in ("present", "mute"):
                return event
            if card_state(event) == "unavailable":
                pc.check(E_READER_UNAVAILABLE, f"reader '{reader}' went away", reader)
        return None

    def _exchange(self, pc: Session, reader: str, fields: dict[str, Any]) -> Result:
        fields = {k: v for k, v in fields.items() if k != "atr"}
        fields["card_present"] = True
        t0 = time.perf_counter()
        handle, proto = pc.connect_card(reader)
        try:
            m: dict[str, Any] = {"connect_ms": round((time.perf_counter() - t0) * 1000.0, 2)}
            hr, _name, _state, _proto, atr = pc.call("SCardStatus", handle)
            pc.check(hr, f"cannot read the card's state in reader '{reader}'", reader)
            if not atr:
                return Result.fail("CARD_MUTE", f"the card in reader '{reader}' gave no ATR", fields=fields,
                                   measurements=m)
            fields["atr"] = atr_hex(atr)
            fields["protocol"] = {PROTOCOL_T0: "T=0", PROTOCOL_T1: "T=1"}.get(int(proto), str(proto))
            t1 = time.perf_counter()
            sws: dict[str, int | None] = {}
            for name, aid in (("PPSE", PPSE), ("PSE", PSE)):
                sws[name] = pc.select_sw(handle, proto, aid)
                if sws[name] is None:
                    break  # a card that dropped one SELECT is not sent another
            m["select_ms"] = round((time.perf_counter() - t1) * 1000.0, 2)
        finally:
            pc.disconnect(handle)
        result = grade_select(sws, fields)
        return dataclasses.replace(result, measurements=m, message=f"ATR {fields['atr']}; {result.message}")
