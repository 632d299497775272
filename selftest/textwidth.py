"""Display width of text on a terminal: CJK characters take two columns."""

from __future__ import annotations

import re
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


#: Kinsoku (line-breaking rules of CJK text): characters a line may not start with
#: (closing brackets and punctuation) and ones it may not end with (opening brackets).
NO_LINE_START = frozenset("。，、；：？！）」』】〕》〉”’…‥・ー～%,.;:!?)]}")
NO_LINE_END = frozenset("（「『【〔《〈“‘([{")


def wrap(text: str, cols: int) -> list[str]:
    """Wrap to ``cols`` display columns, at spaces where possible, anywhere in CJK text.

    Kinsoku: no line starts with closing punctuation (``。``, ``，``, ``）``, ``：`` ...) and
    none ends with an opening bracket; the character before the break moves down with it
    instead (unless that would leave a line empty or overflow the next one)."""
    if cols <= 0:
        return [text]
    text = _UNIT_GAP.sub("\\1\u00a0\\2", text)  # a number keeps its unit: "1 s" never breaks
    lines: list[str] = []
    for para in text.split("\n"):
        line: list[str] = []
        line_w = 0
        for token in _tokens(para):
            tw = width(token)
            if line_w + tw > cols and "".join(line).strip():
                if token == " ":
                    lines.append("".join(line).rstrip())
                    line, line_w = [], 0
                    continue
                carry = _kinsoku_carry(line, token, cols)
                lines.append("".join(line).rstrip())
                line = [*carry, token]
                while line and line[0] == " ":
                    line.pop(0)
                line_w = sum(width(t) for t in line)
                continue
            line.append(token)
            line_w += tw
        lines.append("".join(line).rstrip())
    return [ln.replace("\u00a0", " ") for ln in lines] or [""]


#: A number and the unit after it, kept on one line by wrap().
_UNIT_GAP = re.compile(r"(\d) (%|ms|s|min|h|d|MB|KB|GB|B|V|A|W|Hz|mm|m|°C|bytes|dB)(?![\w])")


def _kinsoku_carry(line: list[str], token: str, cols: int) -> list[str]:
    """Tokens to take off the end of ``line`` (in place) so that neither the line ends with
    an opening bracket nor the next line (carry + ``token``) starts with closing punctuation."""
    carry: list[str] = []
    carry_w = width(token)
    for _ in range(len(line) - 1):  # bounded; the line keeps at least its first token
        head = next((t for t in [*carry, token] if t.strip()), "")  # spaces are dropped at a break
        last = line[-1]
        # ASCII punctuation counts only standing alone (".toml" may start a line; ")" may not)
        bad_start = head[:1] in NO_LINE_START and (not head[0].isascii() or all(c in NO_LINE_START for c in head))
        bad_end = last.rstrip()[-1:] in NO_LINE_END
        if not (bad_start or bad_end) or carry_w + width(last) > cols or not "".join(line[:-1]).strip():
            break
        carry.insert(0, line.pop())
        carry_w += width(carry[0])
    return carry


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
