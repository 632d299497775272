"""``Link``: one device's connection as a driver uses it.

What every byte-stream driver needs from its connection, written once:

- **open on first use**, through the transport seam (``transport.open(url, **open_kw)``;
  the opener itself is looked up when the link is made, ``transport.prepare``);
- **exchange under a lock**: ``exchange(fn)`` runs ``fn(stream)`` holding ``lock``, an
  RLock, so a driver may also hold ``link.lock`` across exchanges that belong together;
- **reopen once after a stale link**: on a ``DeviceIOError`` the stream is closed; when it
  had been open since an earlier exchange (a TCP connection the printer dropped while
  idle, a replugged USB-serial adapter) the exchange runs once more on a fresh stream.
  A stream opened for this very exchange that fails is not retried: the device is gone.
  ``retry=False`` is for exchanges that must not run twice (a print job);
- **the driver's own codes**: two tables given at construction map transport errors,
  ``open_errors`` for a failed open and ``lost_errors`` for a link that broke mid-exchange:
  exception type (matched along its class hierarchy) -> a ``Remap`` (code, message
  template, type) or just a code. What no table names passes unchanged;
- **close**: ``close()`` at the end, ``reset()`` when an answer left the line in a state
  the next exchange should not inherit (a protocol error, a failed echo). ``on_close`` is
  called whenever the link lets go of its stream: what one connection told (a printer's
  GS I, a UPS's rating) may not hold for the next.

How the device is shared (``share``, config/sharing.py) sets the policy of holding it:

- ``"owner"`` / ``"proxy"``: the stream stays open between exchanges (posagent alone on
  the device, or serving the POS application itself);
- ``"guest"``: the POS application owns the device. Every (outermost) exchange opens,
  exchanges and closes: no fd, socket or USB interface is held in between. The opener is
  told (``share="guest"``): a serial port is opened honouring and taking the UUCP lock
  file and flock, with the line left as its user set it (serialguest.py); a simulator is
  kept running between opens (``keep``). A device another program holds raises
  DeviceBusy, which no table remaps. On TCP, where a printer serving the POS
  application's connection leaves ours waiting in its backlog, a guest exchange that got
  no byte back before its deadline is DeviceBusy (``serving_another``) rather than
  silence. ``exchange(fn, wait_free=s)`` waits up to s seconds for a busy device to
  become free (a self-test check); a status query never waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceBusy, DeviceError, DeviceIOError, DeviceNotFound, DeviceTimeout
from posagent.drivers import transport

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Remap:
    """How a transport error reads as the driver's own: its ``code``, its ``message`` (a
    template: ``{where}`` is the link's, ``{error}`` the transport's message) and its type
    (``as_type``; None keeps the transport's). The facts are kept."""

    code: str
    message: str = "{error}"
    as_type: type[DeviceError] | None = None


#: exception type -> Remap, or a code alone (the message and type stay). Built-in drivers
#: write ``Remap(code=...)``: the catalogue test finds codes by their ``code=`` keyword.
ErrorTable = Mapping[type[DeviceError], Remap | str]


class Link:
    """The stream to one device, opened on first use and shared under one lock."""

    def __init__(self, url: DeviceURL | None, *, where: str = "", open_errors: ErrorTable | None = None,
                 lost_errors: ErrorTable | None = None, share: str = "owner",
                 on_close: Callable[[], None] | None = None, **open_kw: Any) -> None:
        self.url = url
        self.where = where
        self.share = share
        self.hold = share != "guest"
        self.lock = threading.RLock()
        self._open_errors = dict(open_errors or {})
        self._lost_errors = dict(lost_errors or {})
        self._on_close = on_close
        self._keep: dict[str, Any] = {}  # what the opener keeps between a guest's opens
        self._open_kw = {**open_kw, "share": share}
        if not self.hold:
            self._open_kw["keep"] = self._keep
        self._stream: Any = None
        self._depth = 0  # exchanges in progress, under the lock (nested ones share the stream)
        self._closing = threading.Event()  # close() ends a wait for a busy device
        #: Seconds the device was held open by exchanges, and how many (guest figures).
        self.held_s = 0.0
        self.opens = 0
        self._opened_at = 0.0
        if url is not None:
            transport.prepare(url)  # the opener is looked up here, not in a device's thread

    @property
    def stream(self) -> Any:
        """The open stream, or None."""
        return self._stream

    def open(self) -> Any:
        """The stream, opened now if it is not open."""
        with self.lock:
            if self._stream is None:
                self._stream = self._connect()
            return self._stream

    def exchange(self, fn: Callable[[Any], T], *, retry: bool = True, wait_free: float = 0.0) -> T:
        """``fn(stream)`` under the lock; after an I/O error on a stream that had been open
        since an earlier exchange, once more on a fresh one (unless ``retry`` is False).
        ``wait_free``: seconds to wait for a device another program holds (DeviceBusy)."""
        with self.lock:
            self._depth += 1
            try:
                for _attempt in (1, 2):
                    stream = self._stream
                    fresh = stream is None
                    if fresh:
                        stream = self._stream = self._connect_when_free(wait_free) if wait_free else self._connect()
                    try:
                        return fn(stream)
                    except DeviceTimeout as e:
                        answered = getattr(stream, "bytes_in", 1) != 0
                        if self.hold or answered or "host" not in getattr(stream, "where", {}):
                            raise
                        raise DeviceBusy(f"{self.where or self.url}: no answer on a new connection; the device "
                                         "is serving another connection (or hangs)",
                                         facts={**stream.where, "reason": "serving_another"}) from e
                    except DeviceIOError as e:
                        self._drop()
                        if fresh or not retry:
                            mapped = self._remapped(e, self._lost_errors)
                            if mapped is None:
                                raise
                            raise mapped from e
                        log.info("%s: reopening after %s", self.where or self.url, e)
                raise AssertionError("unreachable: the second attempt runs on a fresh stream")
            finally:
                self._depth -= 1
                if not self.hold and self._depth == 0:
                    self._drop(routine=True)

    def reset(self) -> None:
        """Close the stream now; the next exchange opens a fresh one."""
        with self.lock:
            self._drop()

    def reopen(self, deadline: float) -> list[str]:
        """Self-repair's ``reopen`` step (docs/self-repair.md) for a device held open (owner,
        proxy): between exchanges, drop the stream, so the next exchange opens the port
        afresh and applies its settings again (a line another program set to another speed
        under the open port, an adapter that re-enumerated). ``["reopen"]`` when done; []
        as a guest (it opens the port for every exchange anyway) or when an exchange held
        the link until ``deadline`` (time.monotonic())."""
        if not self.hold or not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return []
        try:
            self._drop()
            return ["reopen"]
        finally:
            self.lock.release()

    def close(self, wait: float = 2.0) -> None:
        """Close the stream (and stop what a guest's opener kept running); waits up to
        ``wait`` seconds for an exchange in progress (a hung check may hold the lock), then
        closes anyway. Never raises."""
        self._closing.set()
        got = self.lock.acquire(timeout=wait) if wait > 0 else self.lock.acquire(blocking=False)
        try:
            self._drop()
            kept = list(self._keep.values())
            self._keep.clear()
            for thing in kept:
                thing.stop()
        except Exception as e:  # closing must never raise
            log.debug("closing %s: %s", self.where or self.url, e)
        finally:
            if got:
                self.lock.release()

    # -- inside ------------------------------------------------------------------
    def _connect_when_free(self, wait_free: float) -> Any:
        """``_connect``, retried while the device is busy for up to ``wait_free`` seconds.
        A lock file or flock gives no signal when it is released, so this asks again at a
        growing interval (50 ms to 0.5 s); ``close()`` ends the wait at once."""
        deadline = time.monotonic() + wait_free
        pause = 0.05
        for _attempt in range(10_000):  # bounded by the deadline long before this count
            try:
                return self._connect()
            except DeviceBusy:
                left = deadline - time.monotonic()
                if left <= 0 or self._closing.wait(min(pause, left)):
                    raise
                pause = min(pause * 2, 0.5)
        raise AssertionError("unreachable: the deadline ends the wait")

    def _connect(self) -> Any:
        if self.url is None:
            code = self._code_for(DeviceNotFound, self._open_errors)
            raise DeviceNotFound(f"{self.where}: no URL configured", code=code, facts={"reason": "no_url"})
        try:
            stream = transport.open(self.url, **self._open_kw)
        except DeviceBusy:
            raise  # not a fault of the device: no driver's table applies
        except DeviceError as e:
            mapped = self._remapped(e, self._open_errors)
            if mapped is None:
                raise
            raise mapped from e
        self.opens += 1
        self._opened_at = time.perf_counter()
        return stream

    def _drop(self, routine: bool = False) -> None:
        """Let go of the stream. ``routine``: a guest's close after an exchange, which says
        nothing about the device (``on_close`` is for a link that broke or was reset)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self.held_s += time.perf_counter() - self._opened_at
        if self._on_close is not None and not routine:
            self._on_close()
        if stream is not None:
            try:
                stream.close()
            except Exception as e:  # closing must never raise
                log.debug("closing %s: %s", self.where or self.url, e)

    @staticmethod
    def _rule(kind: type[BaseException], table: Mapping[Any, Remap | str]) -> Remap | None:
        for cls in kind.__mro__:  # the most specific type the table names
            rule = table.get(cls)
            if rule is not None:
                return Remap(rule) if isinstance(rule, str) else rule
        return None

    def _code_for(self, kind: type[DeviceError], table: Mapping[Any, Remap | str]) -> str | None:
        rule = self._rule(kind, table)
        return rule.code if rule is not None else None

    def _remapped(self, e: DeviceError, table: Mapping[Any, Remap | str]) -> DeviceError | None:
        rule = self._rule(type(e), table)
        if rule is None:
            return None
        message = rule.message.format(where=self.where, error=e)
        return (rule.as_type or type(e))(message, code=rule.code, facts=dict(e.facts))
