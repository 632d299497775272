"""Looking codes up in the catalogues: a code's hint and message templates.

The texts live in the catalogues (``posagent.core.catalog``): each driver's ``codes``
table, and ``posagent.core.codes.SHARED`` for the runner's, the transports' and the
generic device codes. A driver's own entry comes first (two drivers may use one code,
``READER_NOT_PRESENT``, with different remedies), then the shared table, then any other
installed driver's. The English texts are msgids; translations come from gettext.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from posagent.core.catalog import Code
from posagent.core.codes import SHARED
from posagent.core.i18n import _
from posagent.core.registry import DriverLoadError, available_drivers, load_driver

#: The hints of the shared codes.
HINTS: dict[str, str] = {c: e.hint for c, e in SHARED.items() if e.hint}


def driver_codes(driver: str | None) -> Mapping[str, Code]:
    """One driver's catalogue by registry name; {} if unknown or broken."""
    if not driver:
        return {}
    try:
        return load_driver(driver).codes
    except DriverLoadError:
        return {}


@functools.cache
def all_codes() -> dict[str, Code]:
    """Every known code: the shared table, then every installed driver's (first one wins)."""
    merged = dict(SHARED)
    for name in available_drivers():
        for code, entry in driver_codes(name).items():
            merged.setdefault(code, entry)
    return merged


def lookup(code: str, driver: str | None = None) -> Code | None:
    return driver_codes(driver).get(code) or SHARED.get(code) or all_codes().get(code)


def all_hints() -> dict[str, str]:
    """Every known code's English hint (the first catalogue that gives one)."""
    hints = {c: e.hint for c, e in SHARED.items() if e.hint}
    for name in available_drivers():
        for code, entry in driver_codes(name).items():
            if entry.hint:
                hints.setdefault(code, entry.hint)
    return hints


def hint(code: str, driver: str | None = None) -> str:
    """The hint for ``code`` in the current language, or "" for codes that need none."""
    entry = lookup(code, driver)
    return _(entry.hint) if entry is not None and entry.hint else ""
