"""Pure decoding of ESC/POS status replies: ``DLE EOT n`` (n = 1..4) and ``GS I n``.

No I/O here. Every ``DLE EOT`` reply is one byte matching ``0xx1xx10``
(``(b & 0x93) == 0x12``); anything else is not a status and raises ProtocolError. The
bits are decoded from the tables below (Epson ESC/POS reference, TM-U220A/TM-T88III
specifications), and ``grade()`` turns a decoded status into findings per the design's
status table: paper near-end and auto-recoverable errors warn; paper end, cover open,
cutter/mechanical/unrecoverable errors and offline fail.

Sample replies (the manual's example table)::

    situation        EOT1 EOT2 EOT3 EOT4
    all ok           12   12   12   12
    out of paper     1A   32   12   7E (or 72)
    cover open       1A   16   12   12
    autocutter jam   1A   52   1A   12
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from posagent.core.base import Status
from posagent.core.errors import ProtocolError

DLE, EOT, ENQ, GS = 0x10, 0x04, 0x05, 0x1D

#: Fixed bits of every DLE EOT reply: bit 0 = 0, bit 1 = 1, bit 4 = 1, bit 7 = 0.
EOT_REPLY_MASK = 0x93
EOT_REPLY_FIXED = 0x12
#: Fixed bits of GS I 1-byte IDs and GS r replies: bits 4 and 7 are 0 (``0xx0xxxx``).
ID_REPLY_MASK = 0x90
#: Header and terminator of GS I string replies (n = 65..69): ``5F <ASCII> 00``.
ID_STRING_HEADER = 0x5F
ID_STRING_END = 0x00
ID_STRING_MAX = 80

PRINTER, OFFLINE_CAUSE, ERROR_CAUSE, PAPER_SENSOR = 1, 2, 3, 4
EOT_KINDS = (PRINTER, OFFLINE_CAUSE, ERROR_CAUSE, PAPER_SENSOR)

#: n -> (flag name, mask). A flag is set when any bit of its mask is 1 (the paper-sensor
#: flags are 2-bit pairs the printer sets together; one bit alone still counts, so a
#: half-set pair never hides a paper problem).
EOT_BITS: dict[int, tuple[tuple[str, int], ...]] = {
    PRINTER: (                           # DLE EOT 1, printer status
        ("drawer_pin3_high", 0x04),      # 16: drawer kick-out connector pin 3 HIGH
        ("offline", 0x08),               # 1A: offline
        ("waiting_online_recovery", 0x20),  # 32: waiting for online recovery (newer models)
        ("feed_button", 0x40),           # 52: FEED button pressed (newer models)
    ),
    OFFLINE_CAUSE: (                     # DLE EOT 2, offline cause
        ("cover_open", 0x04),            # 16: cover open
        ("paper_feeding", 0x08),         # 1A: paper being fed by the FEED button
        ("stopped_by_paper_end", 0x20),  # 32: printing stopped by paper end
        ("error", 0x40),                 # 52: an error occurred (cause in DLE EOT 3)
    ),
    ERROR_CAUSE: (                       # DLE EOT 3, error cause
        ("mechanical_error", 0x04),      # 16: mechanical (home position / carriage) error
        ("autocutter_error", 0x08),      # 1A: autocutter error
        ("unrecoverable_error", 0x20),   # 32: unrecoverable error
        ("auto_recoverable_error", 0x40),  # 52: automatically recoverable (head temperature)
    ),
    PAPER_SENSOR: (                      # DLE EOT 4, roll-paper sensor
        ("paper_near_end", 0x0C),        # 1E: near-end sensor: paper near its end
        ("paper_end", 0x60),             # 72: end sensor: no paper (7E: both sensors)
    ),
}


def is_eot_reply(b: int) -> bool:
    """True when ``b`` has the fixed bits of a DLE EOT reply (``0xx1xx10``)."""
    return (b & EOT_REPLY_MASK) == EOT_REPLY_FIXED


def eot_query(n: int) -> bytes:
    """The bytes of ``DLE EOT n``."""
    query = _EOT_QUERIES.get(n)
    if query is None:
        raise ValueError(f"DLE EOT n must be 1..4, not {n}")
    return query


_EOT_QUERIES = {n: bytes((DLE, EOT, n)) for n in EOT_KINDS}


def check_eot_reply(n: int, data: bytes) -> int:
    """The reply byte to ``DLE EOT n``, or ProtocolError when ``data`` is not one."""
    if n not in EOT_KINDS:
        raise ValueError(f"DLE EOT n must be 1..4, not {n}")
    if len(data) != 1:
        raise ProtocolError(f"DLE EOT {n}: expected 1 status byte, got {len(data)}")
    b = data[0]
    if not is_eot_reply(b):
        raise ProtocolError(f"DLE EOT {n}: reply 0x{b:02X} is not a status byte (fixed bits 0xx1xx10 wrong)")
    return b


def decode_flags(n: int, b: int) -> dict[str, bool]:
    """Flag name -> value for a validated reply byte ``b`` to ``DLE EOT n``."""
    return {name: bool(b & mask) for name, mask in EOT_BITS[n]}


@dataclass(frozen=True)
class EscposStatus:
    """The four DLE EOT replies, decoded bit by bit."""

    raw: tuple[int, int, int, int]
    # n = 1
    drawer_pin3_high: bool = False
    offline: bool = False
    waiting_online_recovery: bool = False
    feed_button: bool = False
    # n = 2
    cover_open: bool = False
    paper_feeding: bool = False
    stopped_by_paper_end: bool = False
    error: bool = False
    # n = 3
    mechanical_error: bool = False
    autocutter_error: bool = False
    unrecoverable_error: bool = False
    auto_recoverable_error: bool = False
    # n = 4
    paper_near_end: bool = False
    paper_end: bool = False

    @property
    def paper(self) -> str:
        if self.paper_end or self.stopped_by_paper_end:
            return "end"
        return "near_end" if self.paper_near_end else "ok"

    @property
    def cover(self) -> str:
        return "open" if self.cover_open else "closed"

    @property
    def error_flags(self) -> list[str]:
        names = ("mechanical_error", "autocutter_error", "unrecoverable_error", "auto_recoverable_error")
        return [name for name in names if getattr(self, name)]

    def hex(self) -> str:
        return " ".join(f"{b:02X}" for b in self.raw)


def decode_status(replies: bytes) -> EscposStatus:
    """Decode the replies to DLE EOT 1, 2, 3, 4 (in that order); ProtocolError if any is invalid."""
    if len(replies) != 4:
        raise ProtocolError(f"expected 4 status bytes (DLE EOT 1-4), got {len(replies)}")
    flags: dict[str, bool] = {}
    for n, b in zip(EOT_KINDS, replies, strict=True):
        flags.update(decode_flags(n, check_eot_reply(n, bytes((b,)))))
    raw = (replies[0], replies[1], replies[2], replies[3])
    return EscposStatus(raw=raw, **flags)


# -- grading ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    status: Status
    code: str
    message: str


#: (flag, grade, code, message), worst first: the first matching row names the result.
GRADE_TABLE: tuple[tuple[str, Status, str, str], ...] = (
    ("unrecoverable_error", Status.FAIL, "PRINTER_UNRECOVERABLE_ERROR", "unrecoverable printer error"),
    ("mechanical_error", Status.FAIL, "PRINTER_MECHANICAL_ERROR", "mechanical error (print head carriage)"),
    ("autocutter_error", Status.FAIL, "CUTTER_ERROR", "autocutter error (paper jam?)"),
    ("cover_open", Status.FAIL, "PRINTER_COVER_OPEN", "cover open"),
    ("paper_end", Status.FAIL, "PAPER_END", "paper end"),
    ("stopped_by_paper_end", Status.FAIL, "PAPER_END", "printing stopped by paper end"),
    ("auto_recoverable_error", Status.WARN, "PRINTER_OVERHEAT",
     "automatically recoverable error (print head too hot?)"),
    ("paper_near_end", Status.WARN, "PAPER_NEAR_END", "paper near end"),
)


def grade(st: EscposStatus) -> list[Finding]:
    """Findings for a decoded status, worst first; empty when the printer is ready."""
    found: list[Finding] = []
    codes: set[str] = set()
    for flag, status, code, message in GRADE_TABLE:
        if getattr(st, flag) and code not in codes:
            codes.add(code)
            found.append(Finding(status, code, message))
    if not found and (st.offline or st.error):
        # Offline (or in error) with no cause among the four replies.
        if st.error:
            why = "an error without a cause"
        elif st.waiting_online_recovery:
            why = "waiting for online recovery"
        elif st.paper_feeding:
            why = "paper being fed with the FEED button"
        else:
            why = "cause not reported"
        found.append(Finding(Status.FAIL, "PRINTER_OFFLINE", f"printer offline ({why})"))
    found.sort(key=lambda f: f.status, reverse=True)
    return found


# -- GS I: printer identity -----------------------------------------------------------

#: GS I n values asked for identity: 1-byte IDs and ``5F ... 00`` strings.
ID_MODEL, ID_TYPE, ID_ROM = 1, 2, 3
ID_FIRMWARE, ID_MAKER, ID_MODEL_NAME = 65, 66, 67
ID_BYTE_QUERIES = (ID_MODEL, ID_TYPE, ID_ROM)
ID_STRING_QUERIES = (ID_FIRMWARE, ID_MAKER, ID_MODEL_NAME)

#: Model ID bytes (GS I 1) named in public specifications.
MODEL_IDS: dict[int, str] = {
    0x0D: "TM-U220/U200/U210",
    0x20: "TM-T88 series/TM-T81",
    0x2A: "TM-U230",
    0x2C: "RP-U420",
}

#: Type ID bits (GS I 2).
TYPE_BITS: tuple[tuple[str, int], ...] = (
    ("multibyte", 0x01),        # 01: multi-byte (Kanji) characters supported
    ("autocutter", 0x02),       # 02: autocutter installed
    ("customer_display", 0x04),  # 04: customer display connected (some models)
)


def gs_i(n: int) -> bytes:
    """The bytes of ``GS I n``."""
    if not 1 <= n <= 255:
        raise ValueError(f"GS I n must be 1..255, not {n}")
    return bytes((GS, 0x49, n))


def check_id_byte(n: int, data: bytes) -> int:
    """A 1-byte GS I reply (``0xx0xxxx``), or ProtocolError."""
    if len(data) != 1:
        raise ProtocolError(f"GS I {n}: expected 1 byte, got {len(data)}")
    b = data[0]
    if b & ID_REPLY_MASK:
        raise ProtocolError(f"GS I {n}: reply 0x{b:02X} is not an ID byte (bits 4 and 7 must be 0)")
    return b


def parse_id_string(n: int, data: bytes) -> str:
    """A ``5F <ASCII> 00`` GS I reply as text, or ProtocolError."""
    if len(data) < 2 or data[0] != ID_STRING_HEADER or data[-1] != ID_STRING_END:
        raise ProtocolError(f"GS I {n}: reply is not framed 5F ... 00 ({len(data)} bytes)")
    body = data[1:-1]
    if len(body) > ID_STRING_MAX:
        raise ProtocolError(f"GS I {n}: string of {len(body)} bytes is longer than {ID_STRING_MAX}")
    if any(not 0x20 <= c <= 0x7E for c in body):
        raise ProtocolError(f"GS I {n}: string holds bytes that are not printable ASCII")
    return body.decode("ascii").strip()


@dataclass(frozen=True)
class Identity:
    """What the printer said about itself; None where it did not answer."""

    model_id: int | None = None
    type_id: int | None = None
    rom_id: int | None = None
    firmware: str | None = None
    maker: str | None = None
    model_name: str | None = None
    type_flags: dict[str, bool] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        if self.model_name:
            return f"{self.maker} {self.model_name}" if self.maker and self.maker not in self.model_name \
                else self.model_name
        if self.model_id is not None:
            known = MODEL_IDS.get(self.model_id)
            return f"model id 0x{self.model_id:02X}" + (f" ({known})" if known else "")
        return None

    @property
    def firmware_text(self) -> str | None:
        if self.firmware:
            return self.firmware
        if self.rom_id is not None:
            return f"ROM id 0x{self.rom_id:02X}"
        return None

    @property
    def answered(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self) if f.name != "type_flags")


def identity_from(ids: dict[int, int], strings: dict[int, str]) -> Identity:
    """Build an Identity from the GS I answers received (n -> value)."""
    type_id = ids.get(ID_TYPE)
    flags = {name: bool(type_id & mask) for name, mask in TYPE_BITS} if type_id is not None else {}
    return Identity(model_id=ids.get(ID_MODEL), type_id=type_id, rom_id=ids.get(ID_ROM),
                    firmware=strings.get(ID_FIRMWARE) or None, maker=strings.get(ID_MAKER) or None,
                    model_name=strings.get(ID_MODEL_NAME) or None, type_flags=flags)


# -- the USB printer class port status (usblp's LPGETSTATUS) ---------------------------

#: GET_PORT_STATUS bits (USB Printer Class 1.1, 4.2.2; the IEEE 1284 status lines).
PORT_PAPER_EMPTY = 0x20  # bit 5: PError, no paper
PORT_SELECTED = 0x10     # bit 4: Select, the printer is online
PORT_NOT_ERROR = 0x08    # bit 3: nFault, 1 = no error


@dataclass(frozen=True)
class PortStatus(EscposStatus):
    """A status read as the USB printer class port status byte rather than asked with
    DLE EOT: what a guest reads through usblp (``LPGETSTATUS``), where ESC/POS bytes would
    go into the POS application's print stream.

    The byte says less than the four DLE EOT replies: paper empty, selected (online) and
    an error line, no cause. ``port`` is the byte as received. ``raw`` was not received:
    it holds the DLE EOT replies the byte stands for (valid reply bytes;
    ``decode_status(bytes(raw))`` gives the same flags), so code that reads ``raw`` as
    four replies still reads the truth. ``hex()`` gives the byte received, one hex pair,
    so a result's ``status_bytes`` shows one pair for a port status and four for DLE EOT
    replies."""

    port: int = 0

    def hex(self) -> str:
        return f"{self.port:02X}"


def decode_port_status(b: int) -> PortStatus:
    """The GET_PORT_STATUS byte ``b`` as a status ``grade()`` grades like DLE EOT replies:
    paper empty sets ``paper_end`` (``paper == "end"``, PAPER_END, as DLE EOT 4 reports an
    empty roll); not selected sets ``offline``; the error line (0x08 clear) sets
    ``error``. A printer out of paper often also drops Select or raises the error line;
    grade() then names paper end alone, the cause it has. Offline or error without paper
    empty grades as PRINTER_OFFLINE. Reserved bits are ignored; a value that is not
    a byte is a ProtocolError."""
    if not 0 <= b <= 0xFF:
        raise ProtocolError(f"port status {b} is not a byte")
    paper_end = bool(b & PORT_PAPER_EMPTY)
    offline = not b & PORT_SELECTED
    error = not b & PORT_NOT_ERROR
    # The DLE EOT replies saying the same: 0x12 plus the bits of EOT_BITS.
    raw = (EOT_REPLY_FIXED | (0x08 if offline else 0),
           EOT_REPLY_FIXED | (0x40 if error else 0),
           EOT_REPLY_FIXED,
           EOT_REPLY_FIXED | (0x60 if paper_end else 0))
    return PortStatus(raw=raw, offline=offline, error=error, paper_end=paper_end, port=b)


def identity_from_device_id(d: dict[str, str]) -> Identity:
    """An Identity from the IEEE 1284 device ID (usblp.parse_device_id's names): the
    manufacturer as ``maker`` and the model as ``model_name``, so ``Identity.model`` reads
    "EPSON TM-T88V" as it does from GS I 66/67. The ID has no firmware or GS I bytes."""
    maker = (d.get("manufacturer") or "").strip() or None
    model = (d.get("model") or "").strip() or None
    return Identity(maker=maker, model_name=model)
