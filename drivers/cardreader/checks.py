"""The card reader's checks that need no framing: the loopback plug and presence.

- ``loopback``: random blocks through a TX-RX loopback plug on the reader's port, verified
  byte for byte, with the throughput against the wire limit of the baud rate (10 bits per
  byte: start, 8 data, stop).
- ``presence``: a keyboard-wedge reader (``evdev:``) is opened through the transport seam
  and closed again; a USB reader (``usb:``) is looked up on the bus and described, never
  opened: opening claims its interface, which would take a wedge reader's keystrokes
  away from the kernel (and so from the POS application).
"""

from __future__ import annotations

import operator
import secrets
import time
from collections.abc import Callable
from typing import Any

from posagent.config.urls import DeviceURL
from posagent.core.base import Result
from posagent.core.errors import DeviceTimeout
from posagent.drivers import transport
from posagent.drivers.cardreader.options import CardReaderOptions
from posagent.drivers.transport import Stream
from posagent.drivers.transport import usb as usbio


def loopback(stream: Stream, opts: CardReaderOptions, baud: int | None, deadline: float, total: int | None,
             reset: Callable[[], None]) -> Result:
    """Blocks of random bytes out and back; ``reset`` is called when they did not all come
    back intact (the line holds leftovers the next exchange must not read)."""
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
        reset()
        return Result.unknown("READER_NO_RESPONSE", "nothing came back: is the loopback plug fitted on this "
                              "port?", measurements=m)
    rate = f"{m['throughput_bytes_per_s']:g} B/s"
    limit = f" (wire limit {wire_bps:g} B/s at {baud} baud)" if wire_bps else " (no wire limit on this link)"
    if errors or checked < want:
        reset()
        return Result.fail("READER_LOOPBACK_ERRORS", f"{errors} byte error(s) in {want} bytes through the "
                           f"loopback plug, {rate}{limit}", measurements=m)
    return Result.ok("READER_LOOPBACK_OK", f"{checked} random bytes came back intact, {rate}{limit}",
                     measurements=m)


def presence(url: DeviceURL, opts: CardReaderOptions) -> Result:
    """READER_OK when the reader an ``evdev:`` or ``usb:`` URL names is there."""
    if url.scheme == "evdev":
        dev = transport.open(url, kind="input", not_found_code="READER_NOT_PRESENT")
        try:
            return Result.ok("READER_OK", f"keyboard-wedge reader {dev.name} present", fields={"model": dev.name})
        finally:
            dev.close()
    vid, pid = int(url.params["vendor"]), int(url.params["product"])  # type: ignore[call-overload]
    ident = f"{vid:04x}:{pid:04x}"
    usb_dev = usbio.find_device(vid, pid)
    if usb_dev is None:
        return Result.unknown("READER_NOT_PRESENT", f"USB reader {ident} is not connected",
                              measurements={"usb_id": ident, "reason": "not_connected"})
    info = usbio.describe(usb_dev, opts.interface)
    name = " ".join(str(info[k]) for k in ("manufacturer", "product") if info.get(k)) or "USB reader"
    bound = info.get("kernel_driver_bound")
    m = {"kernel_driver_bound": bound, "bus": info.get("bus"), "address": info.get("address")}
    fields = {k: info[k] for k in ("manufacturer", "product", "serial") if info.get(k)}
    if info.get("product"):
        fields["model"] = info["product"]
    binding = {True: "kernel driver bound", False: "no kernel driver bound", None: "kernel binding unknown"}[bound]
    if bound is False and opts.wedge:
        return Result.warn("READER_NO_KERNEL_DRIVER", f"{name} ({ident}) present but {binding}: its keystrokes "
                           "will not arrive", measurements=m, fields=fields)
    return Result.ok("READER_OK", f"{name} ({ident}) present, {binding}", measurements=m, fields=fields)
