"""USB devices through pyusb: presence by vendor:product, descriptor strings, whether the
kernel bound a driver, and a byte stream over bulk endpoints (``usb://VID:PID``).

Options in the URL query: ``interface`` (default 0), ``in_ep`` / ``out_ep`` (endpoint
addresses, e.g. 0x82 / 0x01; discovered from the interface's bulk endpoints when absent).
pyusb is imported only here, inside the functions, only when a usb: URL is used.

How the device is shared (``share``) decides whether posagent may take it from the kernel:

- ``"guest"`` (printers' default): the POS application prints through the kernel's
  ``usblp`` (``/dev/usb/lp0``, or CUPS on it). When usblp is bound to the printer the
  stream is a ``UsblpStream`` on that node (usblp.py) and pyusb is not used at all. When
  no usblp is bound, the pyusb stream is used WITHOUT detaching anything: an interface
  another kernel driver holds, or one another program claimed through libusb, is
  ``DeviceBusy``; the device's configuration is set only when it has none.
- ``"owner"`` / ``"proxy"``: posagent owns the device. A kernel driver on the interface
  is detached as before, and ``close()`` releases the interface and attaches the driver
  again, so ``/dev/usb/lp0`` comes back when posagent lets go.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceBusy, DeviceError, DeviceIOError, DeviceNotFound, DeviceTimeout
from posagent.drivers.transport import LineOverflow, usblp
from posagent.drivers.transport.usblp import UsblpStream

log = logging.getLogger(__name__)


def open_usb(url: DeviceURL, *, share: str = "owner", **_: Any) -> UsbStream | UsblpStream:
    """The ``usb:`` opener: the usblp node of the device for a guest when usblp is bound to
    it, else a byte stream over the device's bulk endpoints (see the module's docstring).
    A share mode other than "guest" is an owner's ("proxy" owns the device too)."""
    if share != "guest":
        return UsbStream(url, detach=True)
    vid, pid = int(url.params["vendor"]), int(url.params["product"])  # type: ignore[call-overload]
    interface = url.params.get("interface")
    node = usblp.find(vid, pid, None if interface is None else int(interface))  # type: ignore[call-overload]
    if node is not None:
        return UsblpStream(node)
    return UsbStream(url, detach=False)


def find_device(vendor: int, product: int) -> Any | None:
    """The pyusb device with this id, or None when it is not on the bus."""
    import usb.core  # deferred: pyusb (and libusb) only for usb: URLs

    try:
        return usb.core.find(idVendor=vendor, idProduct=product)
    except usb.core.NoBackendError as e:
        raise DeviceError("no libusb backend: install libusb-1.0-0", code="USB_UNAVAILABLE") from e


def describe(dev: Any, interface: int = 0) -> dict[str, Any]:
    """Descriptor strings and kernel-driver binding; values the device would not give are None."""
    import usb.core  # deferred: pyusb (and libusb) only for usb: URLs
    import usb.util  # deferred: as above

    info: dict[str, Any] = {"vendor_id": f"{dev.idVendor:04x}", "product_id": f"{dev.idProduct:04x}",
                            "bus": getattr(dev, "bus", None), "address": getattr(dev, "address", None)}
    for key, index in (("manufacturer", dev.iManufacturer), ("product", dev.iProduct),
                       ("serial", dev.iSerialNumber)):
        try:
            info[key] = usb.util.get_string(dev, index) if index else None
        except (usb.core.USBError, ValueError, NotImplementedError):
            info[key] = None  # no permission to open the device, or no string
    try:
        info["kernel_driver_bound"] = bool(dev.is_kernel_driver_active(interface))
    except (usb.core.USBError, NotImplementedError):
        info["kernel_driver_bound"] = None
    return info


class UsbStream:
    """The ByteStream calls over a device's bulk IN/OUT endpoints.

    ``detach`` (an owner's open): a kernel driver bound to the interface is detached, and
    attached again by ``close()``. Without it (a guest's open) a bound kernel driver, or
    another program's libusb claim, is DeviceBusy, and nothing of the device is changed."""

    def __init__(self, url: DeviceURL, *, detach: bool = True) -> None:
        import usb.core  # deferred: pyusb (and libusb) only for usb: URLs
        import usb.util  # deferred: as above

        self._usb_core = usb.core
        vid, pid = int(url.params["vendor"]), int(url.params["product"])  # type: ignore[call-overload]
        dev = find_device(vid, pid)
        if dev is None:
            raise DeviceNotFound(f"USB device {vid:04x}:{pid:04x} is not connected",
                                 measurements={"usb_id": f"{vid:04x}:{pid:04x}", "reason": "not_connected"})
        self.dev = dev
        self.name = f"usb {vid:04x}:{pid:04x}"
        self.where: dict[str, Any] = {"usb_id": f"{vid:04x}:{pid:04x}"}
        intf_no = int(url.params.get("interface", 0))  # type: ignore[call-overload]
        self._intf_no = intf_no
        #: Whether we detached a kernel driver, which close() must attach again.
        self._detached = False
        self._closed = False
        self._buf = bytearray()
        try:
            self._claim(url, intf_no, vid, pid, detach)
        except BaseException:
            self.close()  # a driver detached before the failure goes back to the kernel
            raise

    def _claim(self, url: DeviceURL, intf_no: int, vid: int, pid: int, detach: bool) -> None:
        """Take interface ``intf_no`` (detaching its kernel driver if ``detach``) and find
        the bulk endpoints."""
        import usb.core  # deferred: pyusb (and libusb) only for usb: URLs
        import usb.util  # deferred: as above

        dev = self.dev
        try:
            if dev.is_kernel_driver_active(intf_no):
                if not detach:
                    driver = usblp.kernel_driver(vid, pid, intf_no) or "a kernel driver"
                    raise DeviceBusy(f"{self.name}: the interface is bound to {driver}; set share = \"owner\" "
                                     "to let posagent detach it",
                                     facts={**self.where, "reason": "in_use", "driver": driver})
                dev.detach_kernel_driver(intf_no)
                self._detached = True
            if detach:
                dev.set_configuration()
                cfg = dev.get_active_configuration()
            else:
                cfg = self._configuration_as_is()
            intf = cfg[(intf_no, 0)]
            if not detach:
                # Claimed now, not at the first transfer: a program holding the interface
                # through libusb makes this open busy rather than the first write fail.
                usb.util.claim_interface(dev, intf_no)
        except (usb.core.USBError, NotImplementedError) as e:
            if not detach and getattr(e, "errno", None) == errno.EBUSY:
                raise DeviceBusy(f"{self.name}: interface {intf_no} is claimed by another program",
                                 facts={**self.where, "reason": "in_use", "interface": intf_no}) from e
            raise DeviceError(f"{self.name}: cannot claim interface {intf_no}: {e} "
                              "(udev rule for the posagent group missing?)", code="DEVICE_PERMISSION_DENIED",
                              measurements=self.where) from e

        def pick(direction: int) -> int:
            ep = usb.util.find_descriptor(
                intf, custom_match=lambda e: usb.util.endpoint_direction(e.bEndpointAddress) == direction
                and usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK)
            if ep is None:
                raise DeviceError(f"{self.name}: no bulk endpoint found; set in_ep/out_ep in the URL",
                                  code="USB_NO_ENDPOINT", measurements=self.where)
            return int(ep.bEndpointAddress)

        self.out_ep = int(url.params["out_ep"]) if "out_ep" in url.params else pick(usb.util.ENDPOINT_OUT)  # type: ignore[call-overload]
        self.in_ep = int(url.params["in_ep"]) if "in_ep" in url.params else pick(usb.util.ENDPOINT_IN)  # type: ignore[call-overload]

    def _configuration_as_is(self) -> Any:
        """The active configuration, set only when the device has none: setting it again
        resets the interfaces' state under whoever else uses the device."""
        try:
            return self.dev.get_active_configuration()
        except self._usb_core.USBError:
            self.dev.set_configuration()  # unconfigured: nobody can be using it
            return self.dev.get_active_configuration()

    def write(self, data: bytes, timeout: float = 5.0) -> None:
        try:
            n = self.dev.write(self.out_ep, data, timeout=max(1, int(timeout * 1000)))
        except self._usb_core.USBTimeoutError as e:
            raise DeviceTimeout(f"{self.name}: device did not accept data within {timeout:g} s") from e
        except self._usb_core.USBError as e:
            raise DeviceIOError(f"{self.name}: write failed: {e}",
                                measurements={**self.where, "reason": "write_failed"}) from e
        if n != len(data):
            raise DeviceIOError(f"{self.name}: wrote {n} of {len(data)} bytes",
                                measurements={**self.where, "reason": "write_failed"})

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeviceTimeout(f"{self.name}: no reply")
        try:
            self._buf += bytes(self.dev.read(self.in_ep, 512, timeout=max(1, int(remaining * 1000))))
        except self._usb_core.USBTimeoutError as e:
            raise DeviceTimeout(f"{self.name}: no reply within the deadline") from e
        except self._usb_core.USBError as e:
            raise DeviceIOError(f"{self.name}: read failed: {e}",
                                measurements={**self.where, "reason": "read_failed"}) from e

    def read_exact(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            self._fill(deadline)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_until(self, terminator: bytes, timeout: float, max_bytes: int = 4096) -> bytes:
        deadline = time.monotonic() + timeout
        while terminator not in self._buf:
            if len(self._buf) >= max_bytes:
                raise LineOverflow(f"{self.name}: no terminator in {len(self._buf)} bytes",
                                   facts={**self.where, "reason": "overlong_reply"})
            self._fill(deadline)
        end = self._buf.index(terminator) + len(terminator)
        out = bytes(self._buf[:end])
        del self._buf[:end]
        return out

    def read_available(self, timeout: float = 0.0, max_bytes: int = 4096) -> bytes:
        if not self._buf:
            try:
                self._fill(time.monotonic() + max(timeout, 0.001))
            except DeviceTimeout:
                return b""
        out = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        return out

    def flush_input(self) -> int:
        dropped = len(self._buf)
        self._buf.clear()
        for _ in range(64):  # bounded: a device streaming forever cannot hold us here
            try:
                dropped += len(self.dev.read(self.in_ep, 512, timeout=1))
            except self._usb_core.USBError:
                break
        return dropped

    def reset_port(self) -> None:
        """Reset the device's USB port (pyusb ``Device.reset``): the device re-enumerates as
        if replugged. Only a self-repair of an owner's device asks it (``usb_reset = true``,
        docs/self-repair.md); the stream is unusable afterwards and must be closed."""
        try:
            self.dev.reset()
        except (self._usb_core.USBError, NotImplementedError) as e:
            raise DeviceIOError(f"{self.name}: port reset failed: {e}", measurements=dict(self.where)) from e

    def close(self) -> None:
        """Let go of the device; a kernel driver we detached is attached again (usblp's
        /dev/usb/lpN comes back for the POS application). Never raises: each step that
        fails (the device was unplugged, the driver refuses) is logged at debug."""
        if self._closed:
            return
        self._closed = True
        import usb.util  # deferred: pyusb only for usb: URLs (loaded by now)

        dev = self.dev
        if self._detached:
            self._detached = False
            try:
                usb.util.release_interface(dev, self._intf_no)
            except Exception as e:
                log.debug("%s: releasing interface %d: %s", self.name, self._intf_no, e)
            try:
                dev.attach_kernel_driver(self._intf_no)
            except Exception as e:
                log.debug("%s: attaching the kernel driver to interface %d again: %s", self.name, self._intf_no, e)
        try:
            usb.util.dispose_resources(dev)
        except Exception as e:
            log.debug("%s: disposing of the device: %s", self.name, e)
