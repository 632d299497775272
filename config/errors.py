"""Configuration errors: one line each, naming the file, the key and the fix.

The fixed phrases go through gettext (``_()`` with ``{name}`` placeholders for the file,
key and value), so a zh-CN user reads Chinese sentences; in English the text is as it was.
"""

from __future__ import annotations

import unicodedata

from posagent.core.i18n import _, did_you_mean

__all__ = ["ConfigError", "did_you_mean", "problem"]

#: The most characters a part of a problem line (file, key, what, fix) shows.
PART_LIMIT = 400


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` gives one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _clean(text: str) -> str:
    """One printable line: control and format characters escaped, cut at PART_LIMIT."""
    if len(text) > PART_LIMIT:
        text = text[:PART_LIMIT] + "…"
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)


def problem(file: str, key: str, what: str, fix: str = "") -> str:
    """Format one problem as ``FILE: KEY: WHAT; FIX``: one line, whatever the parts hold
    (a newline or an escape sequence in a key or value is shown escaped, a long part cut)."""
    file, key, what, fix = _clean(file), _clean(key), _clean(what), _clean(fix)
    line = _("{file}: {key}: {what}").format(file=file, key=key, what=what) if key else \
        _("{file}: {what}").format(file=file, what=what)
    return _("{problem}; {fix}").format(problem=line, fix=fix) if fix else line
