"""Result messages in the technician's language: one template per result code.

A driver's ``message`` is English with the numbers in it; it stays English in JSON and
upstream (codes and messages are the stable, searchable part). For a table in another
language, the message is rebuilt from a per-code template whose English text is the
gettext msgid and whose ``{placeholders}`` are filled from the result's own
``fields`` and ``measurements`` (numbers printed as measured, "~" before an estimate
that a ``<name>_estimated`` measurement marks). Facts that are text come as values too:
``path``, ``host``/``port``, ``usb_id``, ``exception`` (a class name), ``package`` ... and
``reason``, a short stable token that the template shows as its translated phrase
(``REASONS``; an unknown token leaves ``{reason}`` unfilled). ``{where}`` is derived: the
result's ``path``, else ``host[:port]``, ``usb_id``, ``input_name`` or ``reader``.
``{detail}``, the driver's English message, is the last resort of a code whose result
carries none of these facts (a third-party driver's, say).

If a template needs a value the driver left out, or no translation exists, the table
shows the driver's English message instead: a number is never invented or shown as 0.

A code may have several templates, most specific first: the first whose values the
result carries is used (``HOST_HTTP_ERROR`` with or without an HTTP status). Each
code's templates are in its driver's catalogue (``codes``) or the shared one
(``posagent.core.codes``); the ``reason`` phrases are there too (``REASONS``).
"""

from __future__ import annotations

import logging
import string
from typing import Any

from posagent.core.base import Result
from posagent.core.codes import REASONS
from posagent.core.i18n import _, language
from posagent.selftest.hints import all_codes, lookup

log = logging.getLogger(__name__)

def all_messages() -> dict[str, tuple[str, ...]]:
    """Every known code's English message templates."""
    return {c: e.templates for c, e in all_codes().items()}


def templates_for(code: str, driver: str | None = None) -> tuple[str, ...]:
    """The code's templates, most specific first (the driver's own first); () if none."""
    entry = lookup(code, driver)
    return entry.templates if entry is not None else ()


def fmt_value(value: Any) -> str | None:
    """A field or measurement as the template shows it; None for what cannot be shown."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a template uses."""
    try:
        return {f for _t, f, _s, _c in string.Formatter().parse(template) if f}
    except ValueError:
        return set()


def localized_message(code: str, message: str, measurements: dict[str, Any] | None = None,
                      fields: dict[str, Any] | None = None, driver: str | None = None) -> str:
    """The message in the current language; the driver's English message when it cannot be built."""
    if language() == "en":
        return message
    values: dict[str, str] = {"detail": message}
    estimated = {k.removesuffix("_estimated") for k, v in (measurements or {}).items()
                 if k.endswith("_estimated") and v is True}
    for source in (fields or {}, measurements or {}):
        for key, value in source.items():
            shown = fmt_value(value)
            if shown is not None:
                # battery_charge_estimated marks battery_charge_pct as an estimate: "~87"
                values[key] = "~" + shown if key.rpartition("_")[0] in estimated else shown
    _add_facts(values)
    for template in templates_for(code, driver):
        translated = _(template)
        if translated == template:
            continue
        try:
            return translated.format_map(_Strict(values))
        except (KeyError, ValueError, IndexError, AttributeError) as e:
            log.debug("message template for %s not filled (%s)", code, e)
    return message


def _add_facts(values: dict[str, str]) -> None:
    """``reason`` as its phrase in the current language, and the derived ``where``."""
    token = values.pop("reason", None)
    if token in REASONS:
        values["reason"] = _(REASONS[token])
    if "where" in values:
        return
    host, port = values.get("host"), values.get("port")
    if "path" in values:
        values["where"] = values["path"]
    elif host:
        values["where"] = f"{host}:{port}" if port and not host.endswith(f":{port}") else host
    elif "usb_id" in values:
        values["where"] = "USB " + values["usb_id"]
    elif "input_name" in values:
        values["where"] = f"'{values['input_name']}'"
    elif "reader" in values:
        values["where"] = f"'{values['reader']}'"


def display_message(r: Result, driver: str | None = None) -> str:
    return localized_message(r.code, r.message, {**r.facts, **r.measurements}, r.fields, driver)


class _Strict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)
