"""Display width of text on a terminal: CJK characters take two columns."""

from __future__ import annotations

import unicodedata


def width(text: str) -> int:
    w = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


def pad(text: str, cols: int) -> str:
    return text + " " * max(0, cols - width(text))


def wrap(text: str, cols: int) -> list[str]:
    """Wrap to ``cols`` display columns, at spaces where possible, anywhere in CJK text."""
    if cols <= 0:
        return [text]
    lines: list[str] = []
    for para in text.split("\n"):
        line, line_w = "", 0
        for token in _tokens(para):
            tw = width(token)
            if line_w + tw > cols and line.strip():
                lines.append(line.rstrip())
                line, line_w = ("", 0) if token == " " else (token, tw)
                continue
            line += token
            line_w += tw
        lines.append(line.rstrip())
    return lines or [""]


def _tokens(text: str) -> list[str]:
    """Words with their following space, and single wide characters."""
    out: list[str] = []
    word = ""
    for ch in text:
        wide = unicodedata.east_asian_width(ch) in ("W", "F")
        if ch == " " or wide:
            if word:
                out.append(word)
                word = ""
            out.append(ch)
        else:
            word += ch
    if word:
        out.append(word)
    return out
