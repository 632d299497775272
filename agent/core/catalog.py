"""Catalogues of result codes: one table per driver, one shared by every driver.

Each entry says what a code means: the grades it is used with, its English message
template(s) and its remediation hint. The English texts are gettext msgids (``N_()``):
``tools/i18n_update.py`` extracts them into the catalogs, where the zh-CN text of each
lives (``agent/locale/zh_CN/LC_MESSAGES/posagent.po``), so a code's texts are written
once, here, and translated once, there.

Message templates rebuild a result's message in the technician's language from the
result's fields, measurements and facts (``{where}``, ``{reason}`` ...; see
``posagent.selftest.messages``); several templates are tried most specific first. A
driver names its table in the ``codes`` class attribute; the runner's, the transports'
and the generic device codes are in ``posagent.core.codes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from posagent.core.status import Status

OK, WARN, FAIL, UNKNOWN = Status.OK, Status.WARN, Status.FAIL, Status.UNKNOWN


@dataclass(frozen=True)
class Code:
    """One result code: the grades it is used with, message templates, hint (msgids)."""

    grades: frozenset[Status]
    templates: tuple[str, ...]
    hint: str = ""


def code(grades: Status | Iterable[Status], *templates: str, hint: str = "") -> Code:
    """A catalogue entry: ``code(FAIL, N_("Paper end"), hint=N_("Load a new roll ..."))``."""
    graded = frozenset([grades]) if isinstance(grades, Status) else frozenset(grades)
    if not graded or not templates:
        raise ValueError("a code needs at least one grade and one message template")
    return Code(graded, tuple(templates), hint)


Catalog = Mapping[str, Code]
