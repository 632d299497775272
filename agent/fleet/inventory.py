"""What the terminal is made of: the body of ``posagent.inventory/1`` (docs/daemon.md).

The system part is read from the box itself: the OS release (``/etc/os-release``), the
kernel, the architecture, Python, the host name and an app-specific machine id (a hash of
``/etc/machine-id``, as systemd advises: the raw id is never sent); then the serial ports
present under ``/dev`` and the USB devices the kernel lists in sysfs. Each device's part
comes from its driver (``Driver.inventory``: what the device told it, never new traffic)
and, for a device on USB, the sysfs entry it hangs on. Every reader takes its root
(``/dev``, ``/sys``) so tests can hand it a directory tree of their own.

``digest()`` names the content: the daemon compares it with the last one sent
(``Sent``, kept in the state dir) to send a changed inventory and only that.
"""

from __future__ import annotations

import glob
import hashlib
import hmac
import json
import os
import platform
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from posagent.config.model import Config
from posagent.core.base import Driver, Result
from posagent.core.statefile import read_json, write_json
from posagent.core.version import __version__

__all__ = ["MAX_PORTS", "MAX_USB", "REAL", "Roots", "Sent", "collect", "devices_part", "digest", "load_sent",
           "machine_id", "os_release", "record_sent", "serial_ports", "system_part", "usb_devices"]

MAX_PORTS = 256  # bounds on what a broken sysfs or /dev could make the message carry
MAX_USB = 128
MAX_TEXT = 128
SERIAL_PATTERNS = ("ttyS*", "ttyUSB*", "ttyACM*")
USB_STRINGS = ("manufacturer", "product", "serial")
#: The application id the machine id is hashed with (an app-specific id, like systemd's
#: sd_id128_get_machine_app_specific): fixed, so one box always gives the same value.
APP_ID = bytes.fromhex("6f1d3c2a9b8e4f0d8a7c5e3b1f2d4c6a")
STATE_FILE = "inventory.json"
IDENTITY_KEYS = Driver.INVENTORY_KEYS


@dataclass(frozen=True)
class Roots:
    """Where the readers look: the real ones unless a test says otherwise."""

    dev: str = "/dev"
    sys: str = "/sys"
    machine_id: str = "/etc/machine-id"


REAL = Roots()


def _text(raw: str | None) -> str | None:
    """A string from sysfs or a device, printable and bounded; None when empty."""
    if raw is None:
        return None
    clean = "".join(c for c in raw if c.isprintable()).strip()
    return clean[:MAX_TEXT] or None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return _text(fh.read(4096))
    except OSError:
        return None


# -- the system ---------------------------------------------------------------------
def os_release() -> dict[str, str | None] | None:
    """``/etc/os-release`` (or ``/usr/lib/os-release``): id, name, version id, pretty name."""
    try:
        info = platform.freedesktop_os_release()
    except OSError:
        return None
    return {"id": _text(info.get("ID")), "name": _text(info.get("NAME")),
            "version_id": _text(info.get("VERSION_ID")), "pretty_name": _text(info.get("PRETTY_NAME"))}


def machine_id(path: str = "/etc/machine-id") -> str | None:
    """This box's machine id hashed for posagent (HMAC-SHA256 keyed with the id, of
    ``APP_ID``, made a v4 UUID, as systemd's app-specific ids): tells a box swapped under
    the same terminal id without publishing the id itself. None when there is none."""
    raw = _read(path)
    try:
        key = bytes.fromhex(raw or "")
    except ValueError:
        return None
    if len(key) != 16:
        return None
    out = bytearray(hmac.new(key, APP_ID, hashlib.sha256).digest()[:16])
    out[6] = (out[6] & 0x0F) | 0x40
    out[8] = (out[8] & 0x3F) | 0x80
    return out.hex()


def system_part(roots: Roots = REAL) -> dict[str, Any]:
    return {
        "os": os_release(),
        "kernel": platform.release() or None,
        "arch": platform.machine() or None,
        "python": platform.python_version(),
        "hostname": _text(socket.gethostname()),
        "machine_id": machine_id(roots.machine_id),
    }


# -- ports and USB --------------------------------------------------------------------
def _usb_parent(sys_root: str, tty: str) -> str | None:
    """The USB device (its sysfs name, e.g. ``1-1.2``) a tty hangs on, or None."""
    here = os.path.realpath(os.path.join(sys_root, "class", "tty", tty, "device"))
    top = os.path.realpath(sys_root)
    for _ in range(4):  # the interface, then the device (a few levels at most)
        if not here.startswith(top + os.sep):
            return None
        if os.path.isfile(os.path.join(here, "idVendor")):
            return os.path.basename(here)
        here = os.path.dirname(here)
    return None


def serial_ports(dev_root: str = "/dev", sys_root: str = "/sys") -> list[dict[str, str | None]]:
    """The serial ports present (``ttyS*``, ``ttyUSB*``, ``ttyACM*`` under ``dev_root``),
    sorted, each with the USB device it hangs on (sysfs name) or None."""
    names: set[str] = set()
    for pattern in SERIAL_PATTERNS:
        names.update(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(dev_root), pattern)))
    ordered = sorted(names, key=lambda n: (n.rstrip("0123456789"), len(n), n))[:MAX_PORTS]
    return [{"path": f"/dev/{name}", "usb": _usb_parent(sys_root, name)} for name in ordered]


def usb_devices(sys_root: str = "/sys") -> list[dict[str, str | None]]:
    """The USB devices in ``<sys_root>/bus/usb/devices`` (those with an ``idVendor``: the
    interfaces have none; the root hubs are left out), sorted by their sysfs name."""
    base = os.path.join(sys_root, "bus", "usb", "devices")
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    out: list[dict[str, str | None]] = []
    for name in entries:
        if name.startswith("usb") or ":" in name:  # a root hub, an interface
            continue
        folder = os.path.join(base, name)
        vendor, product = _read(os.path.join(folder, "idVendor")), _read(os.path.join(folder, "idProduct"))
        if vendor is None or product is None:
            continue
        entry: dict[str, str | None] = {"bus_id": name, "vendor_id": vendor.lower(), "product_id": product.lower()}
        entry.update({k: _read(os.path.join(folder, k)) for k in USB_STRINGS})
        out.append(entry)
        if len(out) >= MAX_USB:
            break
    return out


# -- the devices ------------------------------------------------------------------------
def _usb_of(config_url: Any, ports: list[dict[str, str | None]],
            usb: list[dict[str, str | None]]) -> dict[str, str | None] | None:
    """The sysfs USB entry of a device URL: ``usb://vvvv:pppp``, or a serial port on USB."""
    if config_url is None:
        return None
    if config_url.scheme == "usb":
        vendor, product = config_url.params.get("vendor"), config_url.params.get("product")
        if isinstance(vendor, int) and isinstance(product, int):
            want = (f"{vendor:04x}", f"{product:04x}")
            return next((u for u in usb if (u["vendor_id"], u["product_id"]) == want), None)
        return None
    if config_url.scheme == "serial" and config_url.path:
        tty = os.path.basename(os.path.realpath(config_url.path))
        bus = next((p["usb"] for p in ports if p["path"] == f"/dev/{tty}"), None)
        return next((u for u in usb if u["bus_id"] == bus), None) if bus else None
    return None


def devices_part(config: Config, drivers: Mapping[str, Driver | None], results: Mapping[str, tuple[str, Result]],
                 ports: list[dict[str, str | None]], usb: list[dict[str, str | None]],
                 previous: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Each enabled device: driver, family, transport, what it said about itself, its USB
    entry. A device that does not answer now (status unknown) keeps what it said before
    (``previous``: the devices of the last inventory), so a silent UPS is not a change."""
    out: dict[str, dict[str, Any]] = {}
    for dev in config.devices:
        if not dev.enabled:
            continue
        driver = drivers.get(dev.name)
        _name, last = results.get(dev.name, (dev.driver, None))
        ident: dict[str, str | None] = dict.fromkeys(IDENTITY_KEYS)
        if driver is not None:
            try:
                got = driver.inventory(last)
            except Exception:  # a driver's bug must not cost the inventory; the device shows unknown
                got = {}
            ident.update({k: _text(v) if isinstance(v, str) else None for k, v in got.items() if k in ident})
        before = (previous or {}).get(dev.name)
        silent = last is None or last.status.label == "unknown"
        if silent and isinstance(before, dict) and before.get("driver") == dev.driver:
            ident = {k: ident[k] if ident[k] is not None else before.get(k) for k in ident}
        out[dev.name] = {"driver": dev.driver, "family": type(driver).family if driver is not None else None,
                         "transport": dev.url.scheme if dev.url is not None else None, **ident,
                         "usb": _usb_of(dev.url, ports, usb)}
    return out


def collect(config: Config, drivers: Mapping[str, Driver | None], results: Mapping[str, tuple[str, Result]],
            roots: Roots = REAL, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The inventory's content (the message without its envelope), ``digest`` included."""
    ports = serial_ports(roots.dev, roots.sys)
    usb = usb_devices(roots.sys)
    content: dict[str, Any] = {
        "system": {**system_part(roots), "posagent": __version__},
        "devices": devices_part(config, drivers, results, ports, usb, previous),
        "serial_ports": ports,
        "usb": usb,
    }
    content["digest"] = digest(content)
    return content


def digest(content: Mapping[str, Any]) -> str:
    """SHA-256 of the content (its ``digest`` left out), in canonical JSON."""
    body = {k: v for k, v in content.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- what was sent ------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    """The last inventory committed: its digest, when (Unix time), in which boot, and its
    devices (what a silent device keeps)."""

    digest: str
    at: float
    boot_id: str | None
    devices: dict[str, Any]


def load_sent(state_dir: str) -> Sent | None:
    raw = read_json(os.path.join(state_dir, STATE_FILE))
    d, at = raw.get("digest"), raw.get("sent_unix")
    if not isinstance(d, str) or not isinstance(at, int | float):
        return None
    boot = raw.get("boot_id")
    devices = raw.get("devices")
    return Sent(d, float(at), boot if isinstance(boot, str) else None, devices if isinstance(devices, dict) else {})


def record_sent(state_dir: str, sent: Sent) -> None:
    """Raises OSError (the caller logs it: the next check then sends it again)."""
    write_json(os.path.join(state_dir, STATE_FILE), {"digest": sent.digest, "sent_unix": sent.at,
                                                     "boot_id": sent.boot_id, "devices": sent.devices})
