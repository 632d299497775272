"""A trouble said once: a warning that would repeat every heartbeat (a full disk, a
read-only state dir) is logged the first time, then at debug level until it changes or
``ok(key)`` says the trouble is over, so the journal is not flooded while the box is
failing."""

from __future__ import annotations

import logging
import threading

_last: dict[str, str] = {}
_lock = threading.Lock()


def warn_once(logger: logging.Logger, key: str, fmt: str, *args: object) -> None:
    """Log ``fmt % args`` at warning the first time for ``key`` (or when the text changed)."""
    text = fmt % args if args else fmt
    with _lock:
        repeat = _last.get(key) == text
        if not repeat:
            if len(_last) > 256:  # bounded: keys are a handful of fixed names
                _last.clear()
            _last[key] = text
    logger.log(logging.DEBUG if repeat else logging.WARNING, "%s", text)


def ok(logger: logging.Logger, key: str, text: str | None = None) -> None:
    """The trouble of ``key`` is over: say so (at info, when ``text``) if it had been said."""
    with _lock:
        had = _last.pop(key, None) is not None
    if had and text:
        logger.info("%s", text)
