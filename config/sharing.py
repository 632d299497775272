"""How a device is shared with the POS application: the ``share`` keys of a ``[[device]]``.

    share        "guest" | "proxy" | "owner"; default: the driver's first mode (guest for
                 printers and card readers, owner for UPS drivers)
    proxy_listen "tcp://127.0.0.1:9100": the raw-TCP port the POS application prints to
                 (share = "proxy" only)
    proxy_pty    "/run/posagent/receipt": a pty symlink the POS application opens like a
                 serial port (share = "proxy" only)
    stale_after  a busy device keeps its last reading this long, then DEVICE_BUSY (10 min)
    job_idle     a proxied job ends after this much silence from its client (1 s)
    job_timeout  an undeliverable proxied job is kept this long, then reported (5 min)

These are keys of the device table itself, like ``url``: they say how posagent may use
the device, not how the driver talks to it (``[device.options]``).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from posagent.config.errors import problem
from posagent.core.i18n import _
from posagent.core.values import parse_duration

MODES = ("guest", "proxy", "owner")
KEYS = ("share", "proxy_listen", "proxy_pty", "stale_after", "job_idle", "job_timeout")
_DURATIONS = {"stale_after": 600.0, "job_idle": 1.0, "job_timeout": 300.0}


@dataclass(frozen=True)
class Sharing:
    """The parsed share keys of one device."""

    mode: str = "owner"
    proxy_listen: tuple[str, int] | None = None  # (host, port)
    proxy_pty: str = ""
    stale_after: float = _DURATIONS["stale_after"]
    job_idle: float = _DURATIONS["job_idle"]
    job_timeout: float = _DURATIONS["job_timeout"]

    @property
    def holds(self) -> bool:
        """Whether posagent keeps the device open between exchanges (owner, proxy)."""
        return self.mode != "guest"


def parse_listen(value: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``, ``:PORT`` = loopback) -> (host, port). HOST is
    an IP address or ``localhost``; IPv6 in brackets. ValueError says the form."""
    text = value.strip().removeprefix("tcp://")
    form = _('write it like "tcp://127.0.0.1:9100"')
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(_("'{value}' is not an address and port; {form}").format(value=value, form=form))
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(_("port {port} is out of range (1-65535)").format(port=port))
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(_("'{host}' is not an IP address; {form}").format(host=host, form=form)) from None
    return host, port


def parse_sharing(dev: dict[str, Any], modes: tuple[str, ...], path: str, where: str,
                  problems: list[str]) -> Sharing:
    """The share keys of device table ``dev``, for a driver that accepts ``modes`` (its
    default first). Problems are appended; the defaults stand in for a broken key."""
    n_before = len(problems)
    mode = dev.get("share", modes[0] if modes else "owner")
    if not isinstance(mode, str) or mode not in MODES:
        problems.append(problem(path, f"{where}.share", _("expected one of {choices}, got {value}").format(
            choices=", ".join(f'"{m}"' for m in MODES), value=repr(mode))))
        mode = modes[0] if modes else "owner"
    elif modes and mode not in modes:
        problems.append(problem(path, f"{where}.share", _('this driver cannot be shared as "{mode}"').format(
            mode=mode), _("use {choices}").format(choices=", ".join(f'"{m}"' for m in modes))))
    durations: dict[str, float] = {}
    for key, default in _DURATIONS.items():
        if key not in dev:
            continue
        try:
            seconds = float(parse_duration(dev[key]))
        except ValueError as e:
            problems.append(problem(path, f"{where}.{key}", str(e)))
            continue
        if not math.isfinite(seconds) or seconds <= 0 or seconds > 7 * 86400:
            problems.append(problem(path, f"{where}.{key}", _("must be more than 0 and at most 7 days"),
                                    _('e.g. "{example}"').format(example=f"{default:g}s")))
            continue
        durations[key] = seconds
    listen = None
    raw_listen = dev.get("proxy_listen")
    if raw_listen is not None:
        if not isinstance(raw_listen, str):
            problems.append(problem(path, f"{where}.proxy_listen", _("expected a string"),
                                    _('e.g. "tcp://127.0.0.1:9100"')))
        else:
            try:
                listen = parse_listen(raw_listen)
            except ValueError as e:
                problems.append(problem(path, f"{where}.proxy_listen", str(e)))
    pty = dev.get("proxy_pty", "")
    if not isinstance(pty, str) or (pty and not pty.startswith("/")):
        problems.append(problem(path, f"{where}.proxy_pty", _("expected an absolute path"),
                                _('e.g. "/run/posagent/receipt"')))
        pty = ""
    proxy_keys = [k for k in ("proxy_listen", "proxy_pty", "job_idle", "job_timeout") if k in dev]
    if mode != "proxy" and proxy_keys:
        problems.append(problem(path, f"{where}.{proxy_keys[0]}", _('used only with share = "proxy"'),
                                _('add share = "proxy" or remove {key}').format(key=proxy_keys[0])))
    if mode == "proxy" and "proxy_listen" not in dev and "proxy_pty" not in dev and len(problems) == n_before:
        problems.append(problem(path, f"{where}.share", _("a proxy needs somewhere to listen"),
                                _('add proxy_listen = "tcp://127.0.0.1:9100" or proxy_pty = "/run/posagent/receipt"')))
    return Sharing(mode=mode, proxy_listen=listen, proxy_pty=pty, **durations)
