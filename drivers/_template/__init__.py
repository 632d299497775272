"""Driver ``template``: the skeleton a new device family copies (see README.md here).

It is a real, working driver for a fictional device, a "status lamp" on a serial line
that reports its bulb, its fan and its temperature (protocol in ``proto.py``). It is
installed with posagent but not registered as a driver, so ``posagent drivers`` does not
list it and no config can name it; ``tests/contract/test_template.py`` runs the contract
every family passes against it and its simulator.

URL: ``serial:///dev/ttyUSB0`` (9600 8N1 unless the URL's query says otherwise), or
``tcp://host:port`` for the same lines over a serial server. The driver talks through a
``Link`` (``drivers/transport/link.py``): opened on first use, kept open between
exchanges, reopened once when it went stale, and the transport's errors read as this
driver's own codes.

- status (every heartbeat): one ``STATUS`` exchange, graded by ``grade()``. Cheap and
  without side effects: the lamp only reports.
- check ``status`` (internal): the same exchange.
- check ``blink`` (external: the customer sees the lamp blink): one ``BLINK``, sent once,
  never again on a reopened link.

Codes: TEMPLATE_OK, TEMPLATE_BLINKED (ok); TEMPLATE_HOT, TEMPLATE_FAN_STALLED (warn);
TEMPLATE_LAMP_OUT (fail); TEMPLATE_NOT_CONNECTED, TEMPLATE_NO_RESPONSE,
TEMPLATE_PROTOCOL_ERROR (unknown). Silence is unknown, never ok.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from posagent.core.base import Check, CheckContext, Driver, DriverEnv, Level, Result
from posagent.core.errors import DeviceIOError, DeviceNotFound, DeviceTimeout, ProtocolError
from posagent.core.values import Duration
from posagent.drivers._template import proto
from posagent.drivers._template.codes import CODES
from posagent.drivers.transport import LineOverflow, Stream
from posagent.drivers.transport.link import ErrorTable, Link, Remap

#: The transport's errors as this driver's codes: a port that is absent or cannot be opened,
#: and a link that broke mid-exchange (after the one reopen of a stale port). What no table
#: names keeps its shared code (DEVICE_PERMISSION_DENIED ...). Write ``Remap(code=...)``:
#: the catalogue test finds codes by their ``code=`` keyword.
_NOT_CONNECTED = Remap(code="TEMPLATE_NOT_CONNECTED", message="{where} not connected: {error}")
OPEN_ERRORS: ErrorTable = {DeviceNotFound: _NOT_CONNECTED, DeviceIOError: _NOT_CONNECTED}
LOST_ERRORS: ErrorTable = {DeviceIOError: Remap(code="TEMPLATE_NO_RESPONSE", message="{where} link lost: {error}")}


@dataclass(frozen=True)
class TemplateOptions:
    """``[device.options]``, validated by the config loader into this (a ValueError names
    the problem); every field has a default that suits most devices."""

    reply_timeout: Duration = Duration(1.0)  # per exchange; a reply is a few bytes at 9600 bps
    warn_temp_c: float = 60.0  # TEMPLATE_HOT at or above this (0 = never)

    def __post_init__(self) -> None:
        if not 0 < self.reply_timeout <= 30:
            raise ValueError("reply_timeout must be between 0 and 30 s")
        if not 0 <= self.warn_temp_c <= 150:
            raise ValueError("warn_temp_c must be between 0 and 150 (0 = never warn)")


def grade(reading: proto.Reading, warn_temp_c: float) -> Result:
    """One STATUS reading as a result: the worst finding wins. ``fields`` are the family's
    heartbeat fields; ``measurements`` are numbers with their unit in the name, and a value
    the lamp did not report is left out, never 0."""
    temp = reading.temperature_c
    measurements: dict[str, float | int | str | bool | None] = {} if temp is None else {"temperature_c": temp}
    fields = {"lamp": "out" if reading.lamp_out else "lit"}
    figure = "" if temp is None else f" ({temp:g} °C)"
    if reading.lamp_out:
        return Result.fail("TEMPLATE_LAMP_OUT", "bulb out" + figure, measurements=measurements, fields=fields)
    if reading.fan_stalled:
        return Result.warn("TEMPLATE_FAN_STALLED", "fan stopped" + figure, measurements=measurements, fields=fields)
    if temp is not None and warn_temp_c and temp >= warn_temp_c:
        return Result.warn("TEMPLATE_HOT", f"running hot: {temp:g} °C (warns from {warn_temp_c:g} °C)",
                           measurements=measurements, fields=fields)
    return Result.ok("TEMPLATE_OK", "lit" + figure, measurements=measurements, fields=fields)


class TemplateDriver(Driver):
    name = "template"
    family = "template"
    description = "skeleton driver: a fictional status lamp on a serial line (copy drivers/_template)"
    schemes = ("serial", "tcp", "sim")
    url_example = "serial:///dev/ttyUSB0?baudrate=9600"
    support = "experimental"
    shares = ("owner",)  # posagent alone on the line; see Driver.shares for the other modes
    codes = CODES
    Options = TemplateOptions

    def __init__(self, device: Any, env: DriverEnv) -> None:
        super().__init__(device, env)
        self._where = f"lamp {device.name}"
        self._link = Link(device.url, where=self._where, open_errors=OPEN_ERRORS, lost_errors=LOST_ERRORS,
                          serial_defaults={"baudrate": 9600})

    # -- link ------------------------------------------------------------------
    def _ask(self, request: bytes, *, retry: bool = True) -> bytes:
        """Send one request, return its reply line (CR included). ``retry=False`` for a
        request with an effect (BLINK): it is never sent again on a reopened link."""
        return self._link.exchange(lambda stream: self._ask_on(stream, request), retry=retry)

    def _ask_on(self, stream: Stream, request: bytes) -> bytes:
        timeout = float(self.options.reply_timeout)
        what = proto.command_name(request)
        stream.flush_input()  # a late reply to an earlier request must not answer this one
        stream.write(request, timeout)
        try:
            # Read up to the terminator, with a deadline: never "whatever came within the timeout".
            return stream.read_until(proto.END, timeout, max_bytes=proto.MAX_LINE)
        except DeviceTimeout:
            partial = stream.read_available(0)
            if partial:
                raise ProtocolError(f"{what} reply truncated (no CR within {timeout:g} s): {proto.show(partial)}",
                                    code="TEMPLATE_PROTOCOL_ERROR") from None
            raise DeviceTimeout(f"{self._where} did not answer {what} within {timeout:g} s",
                                code="TEMPLATE_NO_RESPONSE") from None
        except LineOverflow:
            # Noise on a working line (wrong baud rate): no retry, but a fresh port next time.
            self._link.reset()
            raise ProtocolError(f"{what} reply: {proto.MAX_LINE} bytes without a CR (line noise or wrong "
                                "baud rate)", code="TEMPLATE_PROTOCOL_ERROR") from None

    # -- heartbeat ---------------------------------------------------------------
    def status(self) -> Result:
        return grade(proto.parse_status(self._ask(proto.STATUS)), self.options.warn_temp_c)

    # -- self-test ---------------------------------------------------------------
    def checks(self) -> list[Check]:
        return [
            Check("status", Level.INTERNAL, lambda ctx: self.status(), "lamp status (STATUS)"),
            Check("blink", Level.EXTERNAL, self._blink, "blink the lamp once (BLINK): the customer sees it"),
        ]

    def _blink(self, ctx: CheckContext) -> Result:
        proto.parse_ack(self._ask(proto.BLINK, retry=False), "BLINK")
        return Result.ok("TEMPLATE_BLINKED", "the lamp blinked")

    def close(self) -> None:
        # Never raises; waits briefly for an exchange in progress (a hung check holds the lock).
        self._link.close()
