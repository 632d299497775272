"""Configuration errors: one line each, naming the file, the key and the fix.

The fixed phrases go through gettext (``_()`` with ``{name}`` placeholders for the file,
key and value), so a zh-CN user reads Chinese sentences; in English the text is as it was.
"""

from __future__ import annotations

from posagent.core.i18n import _, did_you_mean

__all__ = ["ConfigError", "did_you_mean", "problem"]


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` gives one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def problem(file: str, key: str, what: str, fix: str = "") -> str:
    """Format one problem as ``FILE: KEY: WHAT; FIX``."""
    line = _("{file}: {key}: {what}").format(file=file, key=key, what=what) if key else \
        _("{file}: {what}").format(file=file, what=what)
    return _("{problem}; {fix}").format(problem=line, fix=fix) if fix else line
