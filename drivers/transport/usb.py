"""USB devices through pyusb: presence by vendor:product, descriptor strings, whether the
kernel bound a driver, and a byte stream over bulk endpoints (``usb://VID:PID``).

Options in the URL query: ``interface`` (default 0), ``in_ep`` / ``out_ep`` (endpoint
addresses, e.g. 0x82 / 0x01; discovered from the interface's bulk endpoints when absent).
pyusb is imported only here, inside the functions, only when a usb: URL is used.
"""

from __future__ import annotations

import time
from typing import Any

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound, DeviceTimeout
from posagent.drivers.transport import LineOverflow


def open_usb(url: DeviceURL, **_: Any) -> UsbStream:
    """The ``usb:`` opener: a byte stream over the device's bulk endpoints."""
    return UsbStream(url)


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
    """The ByteStream calls over a device's bulk IN/OUT endpoints."""

    def __init__(self, url: DeviceURL) -> None:
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
        try:
            if dev.is_kernel_driver_active(intf_no):
                dev.detach_kernel_driver(intf_no)
            dev.set_configuration()
            intf = dev.get_active_configuration()[(intf_no, 0)]
        except (usb.core.USBError, NotImplementedError) as e:
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
        self._buf = bytearray()

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

    def close(self) -> None:
        try:
            import usb.util  # deferred: pyusb only for usb: URLs (loaded by now)

            usb.util.dispose_resources(self.dev)
        except Exception:
            pass
