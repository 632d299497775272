"""``sim://escpos``: an ESC/POS receipt printer (TM-series behaviour) on a pty or TCP port.

Two layers, like the hardware:

- receive layer: real-time commands (``DLE EOT n``, ``DLE ENQ n``) are matched in the
  incoming bytes wherever they appear and answered at once, even while offline;
- print layer: the receive buffer is parsed command by command (each ESC/GS/FS command
  with its parameter length, so print data is swallowed, never misread as commands) and
  executed in order; ``GS I`` and ``GS r`` are answered here. While the printer is
  offline (cover open, paper end, an error, ``offline``) the buffer is held, as on a
  real printer, and runs on when the fault clears.

What was printed is kept for tests: ``printed`` (text), ``printed_lines``, ``cuts``,
``qr_printed``, ``printed_mm``, ``unknown`` (commands the table does not know).

``offline_until_init`` is the fault self-repair clears (docs/self-repair.md): the printer
reports offline (``DLE EOT 1`` bit 3, no cause in ``DLE EOT 2``) until an ``ESC @`` reaches
its print layer, then it is online again. Unlike ``offline`` (a printer that stays
offline whatever it is sent: its buffer is held), this soft state does not hold the
buffer, so the ``ESC @`` is executed; ``resets`` counts the ``ESC @`` executed. Setting
the knob again (``sim.k["offline_until_init"] = True``) makes the next episode.

Knobs: paper=ok|near_end|end, cover=closed|open, cutter_error, offline, offline_until_init,
error=none|mechanical|unrecoverable|overheat, jam_on_cut (the next cut jams),
paper_left_mm (paper runs out after this much), drawer=low|high, identity (answer GS I),
model, firmware, maker, model_id; plus latency_ms, no_answer, garbage, drop_after_bytes,
transport=pty|tcp.
"""

from __future__ import annotations

from typing import Any, ClassVar

from posagent.drivers.escpos.commands import (
    CAN,
    CR,
    CUT_FEED_MM,
    DLE,
    DOTS_PER_MM,
    ENQ,
    EOT,
    ESC,
    ESC_FIXED,
    FF,
    FS,
    FS_FIXED,
    GS,
    GS_FIXED,
    HT,
    LF,
    LINE_MM,
    QR_MM,
    command_length,
)
from posagent.drivers.simulator import ByteSimulator, KnobSpec

__all__ = ["EscposSim", "command_length"]

MAX_QUEUE = 1 << 20

class EscposSim(ByteSimulator):
    family = "escpos"
    knobs: ClassVar[dict[str, KnobSpec]] = {
        "paper": KnobSpec(str, "ok", ("ok", "near_end", "end"), "roll paper sensors"),
        "cover": KnobSpec(str, "closed", ("closed", "open"), "printer cover"),
        "cutter_error": KnobSpec(bool, False, help="autocutter error (jam)"),
        "offline": KnobSpec(bool, False, help="offline with no cause reported"),
        "offline_until_init": KnobSpec(bool, False, help="offline (no cause reported) until ESC @ is received"),
        "error": KnobSpec(str, "none", ("none", "mechanical", "unrecoverable", "overheat"), "other errors"),
        "jam_on_cut": KnobSpec(bool, False, help="the next cut jams the autocutter"),
        "paper_left_mm": KnobSpec(float, 0.0, help="paper runs out after this many mm (0 = never)"),
        "drawer": KnobSpec(str, "low", ("low", "high"), "drawer kick-out connector pin 3 level"),
        "identity": KnobSpec(bool, True, help="answer GS I (false: a model that ignores it)"),
        "model": KnobSpec(str, "TM-T88V", help="GS I 67 model name"),
        "firmware": KnobSpec(str, "30.03 ESC/POS", help="GS I 65 firmware version"),
        "maker": KnobSpec(str, "EPSON", help="GS I 66 maker"),
        "model_id": KnobSpec(int, 0x20, help="GS I 1 model ID byte"),
    }

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self._tail = b""  # last bytes of the previous chunk, for real-time matching
        self._queue = bytearray()  # the receive buffer (non-real-time data)
        self._line = bytearray()
        self._kanji = False
        self._qr_store = b""
        self.printed_lines: list[str] = []
        self.qr_printed: list[str] = []
        self.cuts = 0
        self.images = 0
        self.printed_mm = 0.0
        self.resets = 0
        self.recoveries = 0
        self.realtime_queries = 0
        self.overflow_bytes = 0
        self.unknown: list[bytes] = []
        self.jammed = False
        self._jam_done = False
        self.paper_out = False

    @property
    def printed(self) -> str:
        return "\n".join(self.printed_lines)

    # -- state -----------------------------------------------------------------------
    def _paper(self) -> str:
        return "end" if self.paper_out else str(self.k["paper"])

    def _errors(self) -> tuple[bool, bool, bool, bool]:
        err = self.k["error"]
        return (err == "mechanical", bool(self.k["cutter_error"]) or self.jammed,
                err == "unrecoverable", err == "overheat")

    def is_offline(self) -> bool:
        """What DLE EOT 1 bit 3 says."""
        return self._held() or bool(self.k["offline_until_init"])

    def _held(self) -> bool:
        """The print layer stops (cover open, paper end, an error, ``offline``)."""
        return (bool(self.k["offline"]) or self.k["cover"] == "open" or self._paper() == "end"
                or any(self._errors()))

    def status_byte(self, n: int) -> int:
        mech, cutter, unrec, auto = self._errors()
        paper = self._paper()
        b = 0x12
        if n == 1:
            b |= (0x04 if self.k["drawer"] == "high" else 0) | (0x08 if self.is_offline() else 0)
        elif n == 2:
            b |= (0x04 if self.k["cover"] == "open" else 0) | (0x20 if paper == "end" else 0)
            b |= 0x40 if (mech or cutter or unrec or auto) else 0
        elif n == 3:
            b |= (0x04 if mech else 0) | (0x08 if cutter else 0) | (0x20 if unrec else 0) | (0x40 if auto else 0)
        elif n == 4:
            b |= (0x0C if paper in ("near_end", "end") else 0) | (0x60 if paper == "end" else 0)
        return b

    # -- receive layer -----------------------------------------------------------------
    def on_bytes(self, data: bytes) -> bytes:
        reply = bytearray(self._realtime(data))
        room = MAX_QUEUE - len(self._queue)
        if len(data) > room:
            self.overflow_bytes += len(data) - room
            data = data[:room]
        self._queue += data
        reply += self._process()
        return bytes(reply)

    def _realtime(self, data: bytes) -> bytes:
        seen = self._tail + data
        out = bytearray()
        for i in range(len(seen) - 2):  # the tail is 2 bytes: every match ends in new data
            if seen[i] != DLE:
                continue
            op, n = seen[i + 1], seen[i + 2]
            if op == EOT and 1 <= n <= 4:
                self.realtime_queries += 1
                out.append(self.status_byte(n))
            elif op == ENQ and n in (1, 2):
                self.recoveries += 1
                self.jammed = False
                if n == 2:
                    self._queue.clear()
        self._tail = seen[-2:]
        return bytes(out)

    def garbage_reply(self, data: bytes) -> bytes:
        return b"\x00\xff"

    # -- print layer ----------------------------------------------------------------------
    def _process(self) -> bytes:
        q = self._queue
        out = bytearray()
        while q and not self._held():
            b = q[0]
            if b >= 0x20 and b != 0x7F:
                end = next((i for i, c in enumerate(q) if c < 0x20), len(q))
                self._text(bytes(q[:end]))
                del q[:end]
                continue
            length = command_length(q)
            if length is None or length > len(q):
                break  # the rest of this command has not arrived yet
            cmd = bytes(q[:length])
            del q[:length]
            out += self._execute(cmd)
        return bytes(out)

    def _text(self, chunk: bytes) -> None:
        self._line += chunk

    def _commit_line(self, always: bool = True) -> None:
        if self._line or always:
            raw = bytes(self._line)
            self.printed_lines.append(raw.decode("gb18030" if self._kanji else "latin-1", errors="replace"))
            self._line.clear()
            self._advance(LINE_MM)

    def _advance(self, mm: float) -> None:
        self.printed_mm = round(self.printed_mm + mm, 2)
        left = self.k["paper_left_mm"]
        if left and self.printed_mm >= left:
            self.paper_out = True

    def _execute(self, cmd: bytes) -> bytes:
        first = cmd[0]
        if first in (LF, FF):
            self._commit_line()
        elif first == ESC:
            return self._esc(cmd)
        elif first == GS:
            return self._gs(cmd)
        elif first == FS:
            if cmd[1:2] == b"&":
                self._kanji = True
            elif cmd[1:2] == b".":
                self._kanji = False
            elif len(cmd) == 2 and cmd[1] not in FS_FIXED:
                self.unknown.append(cmd)
        elif first == DLE and len(cmd) >= 3:
            pass  # real-time commands were answered when received
        elif first not in (CR, HT, CAN, DLE, 0x00, 0x11, 0x13):
            self.unknown.append(cmd)
        return b""

    def _esc(self, cmd: bytes) -> bytes:
        op = cmd[1]
        if op == 0x40:  # ESC @
            self.resets += 1
            self.k["offline_until_init"] = False
            self._line.clear()
            self._kanji = False
        elif op == 0x64:  # ESC d n: print and feed n lines
            self._commit_line(always=False)
            self._advance(cmd[2] * LINE_MM)
        elif op == 0x4A:  # ESC J n: print and feed n motion units
            self._commit_line(always=False)
            self._advance(cmd[2] / DOTS_PER_MM)
        elif op in (0x69, 0x6D):  # ESC i / ESC m: cut (older models)
            return self._cut()
        elif op == 0x76:  # ESC v: paper sensor status (older models)
            return self._paper_reply()
        elif op == 0x75:  # ESC u n: peripheral status
            return bytes((0x01 if self.k["drawer"] == "high" else 0x00,))
        elif len(cmd) == 2 and op not in ESC_FIXED:
            self.unknown.append(cmd)
        return b""

    def _gs(self, cmd: bytes) -> bytes:
        op = cmd[1]
        if op == 0x49:  # GS I n
            return self._identity(cmd[2])
        if op == 0x72:  # GS r n
            if cmd[2] in (1, 49):
                return self._paper_reply()
            if cmd[2] in (2, 50):
                return bytes((0x01 if self.k["drawer"] == "high" else 0x00,))
            return b""
        if op == 0x76 and len(cmd) >= 8:  # GS v 0 m xL xH yL yH d: a raster image, yL + yH * 256 dots high
            self._commit_line(always=False)
            self._advance(int.from_bytes(cmd[6:8], "little") / DOTS_PER_MM)
            self.images += 1
            return b""
        if op == 0x56:  # GS V m [n]
            self._commit_line(always=False)
            if cmd[2] >= 65:
                self._advance(CUT_FEED_MM)
            return self._cut()
        if op == 0x28 and len(cmd) >= 7 and cmd[2] == 0x6B and cmd[5] == 0x31:  # GS ( k, QR (cn 49)
            fn = cmd[6]
            if fn == 0x50:  # store
                self._qr_store = cmd[8:]
            elif fn == 0x51:  # print
                self._commit_line(always=False)
                self.qr_printed.append(self._qr_store.decode("latin-1"))
                self._advance(QR_MM)
            return b""
        if len(cmd) == 2 and op not in GS_FIXED:
            self.unknown.append(cmd)
        return b""

    def _cut(self) -> bytes:
        if self.k["jam_on_cut"] and not self._jam_done:
            self._jam_done = True
            self.jammed = True
            return b""
        self.cuts += 1
        return b""

    def _paper_reply(self) -> bytes:
        paper = self._paper()
        return bytes(((0x03 if paper in ("near_end", "end") else 0) | (0x0C if paper == "end" else 0),))

    def _identity(self, n: int) -> bytes:
        if not self.k["identity"]:
            return b""
        one = {1: self.k["model_id"] & 0x6F, 2: 0x02, 3: 0x05}
        if n in one or n - 48 in one:
            return bytes((one.get(n, one.get(n - 48, 0)),))
        text = {65: self.k["firmware"], 66: self.k["maker"], 67: self.k["model"], 68: "SIM00000001"}.get(n)
        if text is None:
            return b""  # unsupported n: no reply, like the hardware
        return b"\x5f" + str(text).encode("ascii", errors="replace")[:80] + b"\x00"
