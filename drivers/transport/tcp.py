"""The ``tcp:`` transport: raw TCP (network ESC/POS printers on port 9100, serial-device
servers), read and written as a ``ByteStream`` on the socket's file descriptor."""

from __future__ import annotations

import errno
import socket
from typing import Any

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceNotFound, DeviceTimeout
from posagent.drivers.transport.stream import ByteStream


def open_tcp(url: DeviceURL, *, timeout: float = 3.0, **_: Any) -> ByteStream:
    """Connect within ``timeout`` seconds; Nagle off (every exchange is a few bytes)."""
    assert url.port is not None
    where: dict[str, Any] = {"host": url.host, "port": url.port}
    try:
        sock = socket.create_connection((url.host, url.port), timeout=timeout)
    except TimeoutError as e:
        raise DeviceTimeout(f"{url.host}:{url.port}: no TCP answer within {timeout:.3g} s",
                            facts={**where, "reason": "timeout"}) from e
    except ConnectionRefusedError as e:
        raise DeviceNotFound(f"{url.host}:{url.port} refused the connection (device off or port wrong)",
                             facts={**where, "reason": "refused"}) from e
    except OSError as e:
        raise DeviceNotFound(f"{url.host}:{url.port}: {e.strerror or e}",
                             facts={**where, "reason": connect_reason(e)}) from e
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ByteStream(sock.fileno(), f"{url.host}:{url.port}", owner=sock, where=where)


def connect_reason(e: OSError) -> str:
    """A failed connect as a stable token: dns, unreachable, refused, timeout or connect_failed."""
    if isinstance(e, socket.gaierror):
        return "dns"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, TimeoutError):
        return "timeout"
    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
        return "unreachable"
    return "connect_failed"
