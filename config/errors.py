"""Configuration errors: one line each, naming the file, the key and the fix."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` gives one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def problem(file: str, key: str, what: str, fix: str = "") -> str:
    """Format one problem as ``FILE: KEY: WHAT; FIX``."""
    line = f"{file}: {key}: {what}" if key else f"{file}: {what}"
    return f"{line}; {fix}" if fix else line


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A 'did you mean' suggestion, or the list of valid choices."""
    import difflib

    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "valid: " + ", ".join(choices)
