"""Language selection and translation (stdlib gettext; catalogs under posagent/locale).

Language: ``--lang``, else the config's ``language`` (unless "auto"), else the locale
(LC_ALL / LC_MESSAGES / LANG starting with "zh" -> zh-CN), else English. JSON output and
codes stay English; only human-facing text is translated.
"""

from __future__ import annotations

import difflib
import gettext
import os
from collections.abc import Iterable
from pathlib import Path

SUPPORTED = ("en", "zh-CN")
_current: gettext.NullTranslations = gettext.NullTranslations()
_lang = "en"


def detect_language(cli: str | None = None, configured: str | None = None) -> str:
    if cli:
        return normalize(cli)
    if configured and configured != "auto":
        return normalize(configured)
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "zh-CN" if value.lower().startswith("zh") else "en"
    return "en"


def normalize(lang: str) -> str:
    low = lang.replace("_", "-").lower()
    if low.startswith("zh"):
        return "zh-CN"
    return "en"


def set_language(lang: str) -> None:
    global _current, _lang
    _lang = normalize(lang)
    localedir = Path(__file__).parent.parent / "locale"
    gettext_name = _lang.replace("-", "_")
    _current = gettext.translation("posagent", localedir=str(localedir), languages=[gettext_name],
                                   fallback=True)


def language() -> str:
    return _lang


def _(message: str) -> str:
    """Translate a human-facing message into the current language."""
    if not message:  # gettext("") is the catalog's header, never a translation
        return message
    return _current.gettext(message)


def N_(message: str) -> str:
    """Mark a string for extraction without translating it now."""
    return message


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A 'did you mean' suggestion, or the list of valid choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return _("did you mean '{choice}'?").format(choice=close[0])
    return _("valid: {choices}").format(choices=", ".join(choices))
