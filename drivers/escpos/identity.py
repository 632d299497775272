"""The ESC/POS driver's identity part: GS I asked, remembered and reported.

A mixin of ``EscposDriver`` (``posagent.drivers.escpos``): GS I 1, 2, 3 and 65, 66, 67
are asked up to the first one left unanswered; the answer (or the silence) is remembered
in the driver instance and in the state file, and a remembered silence is asked again
only after ``IDENTITY_RETRY_S``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from posagent.core.base import CheckContext, Result
from posagent.core.errors import DeviceError, DeviceTimeout, ProtocolError
from posagent.drivers.escpos.counters import CounterStore, IdentityMemo
from posagent.drivers.escpos.status import (
    ID_BYTE_QUERIES,
    ID_STRING_END,
    ID_STRING_MAX,
    ID_STRING_QUERIES,
    EscposStatus,
    Identity,
    check_id_byte,
    gs_i,
    identity_from,
    parse_id_string,
)

log = logging.getLogger("posagent.drivers.escpos")
T = TypeVar("T")

IDENTITY_RETRY_S = 3600.0  # a printer that ignored GS I is asked again after this long


class IdentityMixin:
    """GS I for ``EscposDriver``; relies on the driver's link, status and state file."""

    options: Any
    _id_memo: IdentityMemo | None  # GS I as asked by this instance
    _stored_memo: IdentityMemo | None  # GS I as remembered in the state file

    if TYPE_CHECKING:  # provided by EscposDriver
        def _where(self) -> str:
            ...  # declared for mypy; the driver class provides it

        def _exchange(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
            ...  # declared for mypy; the driver class provides it

        def _store(self, update: Callable[[CounterStore], object]) -> None:
            ...  # declared for mypy; the driver class provides it

        def _read_counters(self) -> object:
            ...  # declared for mypy; the driver class provides it

        def read_status(self) -> EscposStatus:
            ...  # declared for mypy; the driver class provides it

    def _maybe_identity(self, st: EscposStatus) -> None:
        """For the test slip: ask GS I only when nothing is remembered (a remembered
        silence is asked again after IDENTITY_RETRY_S), and only while online: an offline
        printer holds GS I in its buffer."""
        if st.offline or self._memo_answered() or self._silence_remembered():
            return
        try:
            self.read_identity()
        except DeviceError as e:  # identity is best effort; the status stands
            log.info("%s: identity not read: %s", self._where(), e)

    def _memo(self) -> IdentityMemo | None:
        """What GS I gave when last asked: this instance's answer or the state file's, the newer."""
        mine, stored = self._id_memo, self._stored_memo
        if mine is None or (stored is not None and stored.asked_unix > mine.asked_unix):
            return stored
        return mine

    def _memo_answered(self) -> bool:
        memo = self._memo()
        return memo is not None and memo.answered

    def _silence_remembered(self) -> bool:
        """GS I went unanswered less than IDENTITY_RETRY_S ago: do not wait for it again."""
        memo = self._memo()
        return memo is not None and not memo.answered and memo.age(time.time()) < IDENTITY_RETRY_S

    @property
    def _identity(self) -> Identity | None:
        memo = self._memo()
        return identity_from(memo.ids, memo.strings) if memo is not None and memo.answered else None

    def read_identity(self) -> Identity:
        """GS I 1, 2, 3 and 65, 66, 67 up to the first one left unanswered (not an error);
        remembered in this instance and in the state file."""
        ids, strings = self._exchange(self._identity_on)
        memo = IdentityMemo(ids, strings, time.time())
        self._id_memo = memo
        self._store(lambda store: store.remember_identity(memo))
        return identity_from(ids, strings)

    def _identity_on(self, s: Any) -> tuple[dict[int, int], dict[int, str]]:
        timeout = self.options.identity_timeout
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

    def _check_identity(self, ctx: CheckContext) -> Result:
        st = self.read_status()
        if st.offline:
            return Result.ok("PRINTER_ID_NOT_READ", "identity not read: the printer is offline and answers "
                             "GS I only when online (see the status check)")
        self._read_counters()  # refresh what the state file remembers
        memo = self._memo()
        if memo is not None and self._silence_remembered():
            asked = dt.datetime.fromtimestamp(memo.asked_unix).astimezone().strftime("%H:%M")
            return Result.ok("PRINTER_ID_NOT_REPORTED", "the printer answers status but not GS I (model and "
                             f"firmware not reported; remembered from {asked}, asked again after "
                             f"{IDENTITY_RETRY_S / 3600:g} h)", fields={"model": None, "firmware": None})
        ident = self.read_identity()
        fields = {"model": ident.model, "firmware": ident.firmware_text, **ident.type_flags}
        if not ident.answered:
            return Result.ok("PRINTER_ID_NOT_REPORTED", "the printer answers status but not GS I "
                             "(model and firmware not reported)", fields=fields)
        parts = [ident.model or "model not reported", f"firmware {ident.firmware_text or 'not reported'}"]
        parts += [name.replace("_", " ") for name, on in ident.type_flags.items() if on]
        return Result.ok("PRINTER_ID_OK", ", ".join(parts), fields=fields)
