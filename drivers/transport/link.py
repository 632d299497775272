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

The policy of holding the stream: ``hold=True`` keeps it open between exchanges (``share
= "owner"``: posagent alone on the device). ``hold=False`` closes it after every
(outermost) exchange, open-exchange-close, for a device shared with another program
(``share = "guest"``); the guest's locking (UUCP lock files, flock, TIOCEXCL: locks.py)
is not wired in yet, and no driver uses ``hold=False`` today.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from posagent.config.urls import DeviceURL
from posagent.core.errors import DeviceError, DeviceIOError, DeviceNotFound
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
                 lost_errors: ErrorTable | None = None, hold: bool = True,
                 on_close: Callable[[], None] | None = None, **open_kw: Any) -> None:
        self.url = url
        self.where = where
        self.hold = hold
        self.lock = threading.RLock()
        self._open_errors = dict(open_errors or {})
        self._lost_errors = dict(lost_errors or {})
        self._on_close = on_close
        self._open_kw = open_kw
        self._stream: Any = None
        self._depth = 0  # exchanges in progress, under the lock (nested ones share the stream)
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

    def exchange(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
        """``fn(stream)`` under the lock; after an I/O error on a stream that had been open
        since an earlier exchange, once more on a fresh one (unless ``retry`` is False)."""
        with self.lock:
            self._depth += 1
            try:
                for _attempt in (1, 2):
                    stream = self._stream
                    fresh = stream is None
                    if fresh:
                        stream = self._stream = self._connect()
                    try:
                        return fn(stream)
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
                    self._drop()

    def reset(self) -> None:
        """Close the stream now; the next exchange opens a fresh one."""
        with self.lock:
            self._drop()

    def close(self, wait: float = 2.0) -> None:
        """Close the stream; waits up to ``wait`` seconds for an exchange in progress (a hung
        check may hold the lock), then closes anyway. Never raises."""
        got = self.lock.acquire(timeout=wait) if wait > 0 else self.lock.acquire(blocking=False)
        try:
            self._drop()
        except Exception as e:  # closing must never raise
            log.debug("closing %s: %s", self.where or self.url, e)
        finally:
            if got:
                self.lock.release()

    # -- inside ------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.url is None:
            code = self._code_for(DeviceNotFound, self._open_errors)
            raise DeviceNotFound(f"{self.where}: no URL configured", code=code, facts={"reason": "no_url"})
        try:
            return transport.open(self.url, **self._open_kw)
        except DeviceError as e:
            mapped = self._remapped(e, self._open_errors)
            if mapped is None:
                raise
            raise mapped from e

    def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if self._on_close is not None:
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
