"""The ESC/POS driver's identity part: GS I asked, remembered and reported.

``IdentityReader`` is composed into ``EscposDriver`` (``posagent.drivers.escpos``): GS I
1, 2, 3 and 65, 66, 67 are asked through the printer's ``Link`` up to the first one left
unanswered; the answer (or the silence) is remembered in the reader (for as long as the
link stays open) and in the state file, and a remembered silence is asked again only
after ``IDENTITY_RETRY_S``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from posagent.core.base import CheckContext, Result
from posagent.core.errors import DeviceError, DeviceTimeout, ProtocolError
from posagent.drivers.escpos.counters import IdentityMemo, PrinterState
from posagent.drivers.escpos.options import EscposOptions
from posagent.drivers.escpos.status import (
    ID_BYTE_QUERIES,
    ID_MAKER,
    ID_MODEL_NAME,
    ID_STRING_END,
    ID_STRING_MAX,
    ID_STRING_QUERIES,
    EscposStatus,
    Identity,
    check_id_byte,
    gs_i,
    identity_from,
    identity_from_device_id,
    parse_id_string,
)
from posagent.drivers.transport.link import Link

log = logging.getLogger("posagent.drivers.escpos")

IDENTITY_RETRY_S = 3600.0  # a printer that ignored GS I is asked again after this long


class IdentityReader:
    """GS I for one printer: asked through its link, remembered here and in the state file."""

    def __init__(self, link: Link, options: EscposOptions, state: PrinterState,
                 read_status: Callable[[], EscposStatus], where: str) -> None:
        self._link = link
        self._options = options
        self._state = state
        self._read_status = read_status
        self._where = where
        self.memo: IdentityMemo | None = None  # GS I as asked by this reader on the open link

    def forget(self) -> None:
        """The link closed: a reconnect may be another printer (the state file's memory stays)."""
        self.memo = None

    def maybe_read(self, st: EscposStatus) -> None:
        """For the test slip: ask GS I only when nothing is remembered (a remembered
        silence is asked again after IDENTITY_RETRY_S), and only while online: an offline
        printer holds GS I in its buffer."""
        if st.offline or self._answered() or self._silence_remembered():
            return
        try:
            self.read()
        except DeviceError as e:  # identity is best effort; the status stands
            log.info("%s: identity not read: %s", self._where, e)

    def _remembered(self) -> IdentityMemo | None:
        """What GS I gave when last asked: this reader's answer or the state file's, the newer."""
        mine, stored = self.memo, self._state.memo
        if mine is None or (stored is not None and stored.asked_unix > mine.asked_unix):
            return stored
        return mine

    def _answered(self) -> bool:
        memo = self._remembered()
        return memo is not None and memo.answered

    def _silence_remembered(self) -> bool:
        """GS I went unanswered less than IDENTITY_RETRY_S ago: do not wait for it again."""
        memo = self._remembered()
        return memo is not None and not memo.answered and memo.age(time.time()) < IDENTITY_RETRY_S

    @property
    def identity(self) -> Identity | None:
        """The identity last answered (here or in the state file), None if none was."""
        memo = self._remembered()
        return identity_from(memo.ids, memo.strings) if memo is not None and memo.answered else None

    def read(self) -> Identity:
        """GS I 1, 2, 3 and 65, 66, 67 up to the first one left unanswered (not an error);
        remembered in this reader and in the state file."""
        ids, strings = self._link.exchange(self._ask)
        memo = IdentityMemo(ids, strings, time.time())
        self.memo = memo
        self._state.update(lambda store: store.remember_identity(memo))
        return identity_from(ids, strings)

    def _ask(self, s: Any) -> tuple[dict[int, int], dict[int, str]]:
        device_id = getattr(s, "device_id", None)
        if callable(device_id):  # a guest's /dev/usb/lpN: the IEEE 1284 ID, nothing written
            ident = identity_from_device_id(device_id())
            return {}, {k: v for k, v in ((ID_MAKER, ident.maker), (ID_MODEL_NAME, ident.model_name)) if v}
        timeout = self._options.identity_timeout
        ids: dict[int, int] = {}
        strings: dict[int, str] = {}
        for n in (*ID_BYTE_QUERIES, *ID_STRING_QUERIES):
            s.flush_input()
            s.write(gs_i(n), timeout=timeout)
            try:
                if n in ID_BYTE_QUERIES:
                    ids[n] = check_id_byte(n, s.read_exact(1, timeout))
                else:
                    strings[n] = parse_id_string(n, self._read_id_string(s, n, timeout))
            except DeviceTimeout:
                break  # a printer that ignores one GS I ignores the rest: spare their waits
        return ids, strings

    @staticmethod
    def _read_id_string(s: Any, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        out = bytearray()
        for _ in range(ID_STRING_MAX + 2):
            out += s.read_exact(1, max(0.0, deadline - time.monotonic()))
            if out[-1] == ID_STRING_END and len(out) > 1:
                return bytes(out)
        raise ProtocolError(f"GS I {n}: no 00 terminator within {ID_STRING_MAX + 2} bytes",
                            code="PRINTER_PROTOCOL_ERROR")

    def check(self, ctx: CheckContext) -> Result:
        """The ``identity`` check: model and firmware, or why they are not reported."""
        st = self._read_status()
        if st.offline:  # not a pass: nothing was checked (the status check says why it is offline)
            return Result.unknown("PRINTER_ID_NOT_READ", "identity not read: the printer is offline and "
                                  "answers GS I only when online (see the status check)")
        self._state.counters()  # refresh what the state file remembers
        memo = self._remembered()
        if memo is not None and self._silence_remembered():
            asked = dt.datetime.fromtimestamp(memo.asked_unix).astimezone().strftime("%H:%M")
            return Result.ok("PRINTER_ID_NOT_REPORTED", "the printer answers status but not GS I (model and "
                             f"firmware not reported; remembered from {asked}, asked again after "
                             f"{IDENTITY_RETRY_S / 3600:g} h)", fields={"model": None, "firmware": None})
        ident = self.read()
        fields = {"model": ident.model, "firmware": ident.firmware_text, **ident.type_flags}
        if not ident.answered:
            return Result.ok("PRINTER_ID_NOT_REPORTED", "the printer answers status but not GS I "
                             "(model and firmware not reported)", fields=fields)
        parts = [ident.model or "model not reported", f"firmware {ident.firmware_text or 'not reported'}"]
        parts += [name.replace("_", " ") for name, on in ident.type_flags.items() if on]
        return Result.ok("PRINTER_ID_OK", ", ".join(parts), fields=fields)
