#!/usr/bin/env python3
"""Update the translation catalogs: extract msgids, merge them into the .po files, compile .mo.

    python3 tools/i18n_update.py           # rewrite agent/locale/posagent.pot, every .po and .mo
    python3 tools/i18n_update.py --check   # change nothing; exit 1 if anything is out of date

Msgids are every ``_("...")`` and ``N_("...")`` literal in agent/, drivers/, selftest/ and
config/, the names of self-test checks (``Check("paper", ...)``), and every driver's
``hints`` and ``messages`` texts (read from the source, and from the installed drivers
when posagent is importable, so third-party drivers count too). Merging keeps existing
translations; a new msgid close to a vanished one starts from the old translation marked
fuzzy (fuzzy entries are not compiled: a translator must confirm them); vanished ones are
kept at the end as ``#~`` comments. Compiling needs no GNU gettext tools (the .mo format
is written here, as CPython's Tools/i18n/msgfmt.py does); the unit tests check the result
against Debian's ``msgfmt``.
The driver template (drivers/_template, see SKELETONS) is not extracted.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import string
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("agent", "drivers", "selftest", "config")
#: Skeletons, copied to start a new package and not registered as they are (the driver
#: template): their texts stay out of the catalogs, which ship no fictional device. A copy
#: under its own name is extracted like any other source.
SKELETONS = ("drivers/_template",)
LOCALE_DIR = REPO / "agent" / "locale"
DOMAIN = "posagent"
TRANSLATION_CALLS = {"_", "N_"}
CATALOG_ATTRS = {"hints", "messages"}

HEADER_FIELDS = [
    ("Project-Id-Version", "posagent"),
    ("Report-Msgid-Bugs-To", ""),
    ("MIME-Version", "1.0"),
    ("Content-Type", "text/plain; charset=UTF-8"),
    ("Content-Transfer-Encoding", "8bit"),
]


@dataclass
class Entry:
    msgid: str
    msgstr: str = ""
    refs: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    comments: list[str] = field(default_factory=list)  # translator comments, without "# "
    obsolete: bool = False


# -- extraction ----------------------------------------------------------------
def _str_arg(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in TRANSLATION_CALLS \
            and node.args:
        return _str_arg(node.args[0])
    return None


def _call_name(node: ast.Call) -> str:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return ""


def extract_file(path: Path) -> list[str]:
    """The msgids one Python source file contributes, in order of appearance."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            name = _call_name(node)
            text = _str_arg(node.args[0])
            if text and (name in TRANSLATION_CALLS or name == "Check"):
                found.append((node.lineno, node.col_offset, text))
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else \
                    stmt.target if isinstance(stmt, ast.AnnAssign) else None
                value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
                if isinstance(target, ast.Name) and target.id in CATALOG_ATTRS and isinstance(value, ast.Dict):
                    for v in value.values:  # a text, or a tuple of texts (message templates)
                        for item in (v.elts if isinstance(v, ast.Tuple) else [v]):
                            text = _str_arg(item) if item is not None else None
                            if text:
                                found.append((item.lineno, item.col_offset, text))
    return [text for _l, _c, text in sorted(found) if text.strip()]


def is_skeleton(rel: str) -> bool:
    """Whether a repo-relative path (``drivers/_template/codes.py``) is in a skeleton."""
    return any(rel == s or rel.startswith(s + "/") for s in SKELETONS)


def collect(repo: Path = REPO) -> dict[str, list[str]]:
    """msgid -> the files it comes from (repo-relative), sources in a stable order."""
    out: dict[str, list[str]] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((repo / folder).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            if is_skeleton(rel):
                continue
            for msgid in extract_file(path):
                refs = out.setdefault(msgid, [])
                if rel not in refs:
                    refs.append(rel)
    for where, msgid in _installed_texts():
        if msgid not in out:
            out[msgid] = [where]
    return out


def _installed_texts() -> list[tuple[str, str]]:
    """Hints and message templates of the installed drivers (third-party ones too)."""
    try:
        from posagent.core.registry import DriverLoadError, available_drivers, load_driver
    except ImportError:
        return []
    texts: list[tuple[str, str]] = []
    for name in available_drivers():
        try:
            cls = load_driver(name)
        except DriverLoadError:
            continue
        for attr in sorted(CATALOG_ATTRS):
            for value in (getattr(cls, attr, {}) or {}).values():
                for text in (value if isinstance(value, tuple) else (value,)):
                    if isinstance(text, str) and text.strip():
                        texts.append((f"driver {name}", text))
    return texts


def is_brace_format(msgid: str) -> bool:
    try:
        return any(f for _t, f, _s, _c in string.Formatter().parse(msgid))
    except ValueError:
        return False


# -- .po reading and writing ---------------------------------------------------
_KEYWORD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(".*")\s*$')


def _unquote(quoted: str) -> str:
    value = ast.literal_eval(quoted)
    if not isinstance(value, str):
        raise ValueError(f"not a string: {quoted}")
    return value


def parse_po(text: str) -> tuple[str, list[Entry]]:
    """(header msgstr, entries) of a .po file; obsolete ``#~`` entries come back marked."""
    entries: list[Entry] = []
    header = ""
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        entry = Entry("")
        current = ""
        parts: dict[str, str] = {}
        for raw in block.splitlines():
            line = raw.strip()
            if line.startswith("#~"):
                entry.obsolete = True
                line = line[2:].strip()
            elif line.startswith("#,"):
                entry.flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
                continue
            elif line.startswith("#:"):
                entry.refs += line[2:].split()
                continue
            elif line.startswith("#"):
                if line.startswith("# ") or line == "#":
                    entry.comments.append(line[2:])
                continue
            if not line:
                continue
            m = _KEYWORD.match(line)
            if m:
                current = m.group(1)
                if current in ("msgid_plural", "msgctxt") or current.startswith("msgstr["):
                    raise ValueError(f"{current} is not supported by this catalog tool")
                parts[current] = _unquote(m.group(2))
            elif line.startswith('"') and current:
                parts[current] += _unquote(line)
            else:
                raise ValueError(f"cannot parse .po line: {raw!r}")
        if "msgid" not in parts:
            continue
        entry.msgid, entry.msgstr = parts["msgid"], parts.get("msgstr", "")
        if entry.msgid == "" and not entry.obsolete:
            header = entry.msgstr
            continue
        entries.append(entry)
    return header, entries


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n") + '"'


def _field(keyword: str, text: str, prefix: str = "") -> list[str]:
    if "\n" not in text.rstrip("\n"):
        return [f"{prefix}{keyword} {_quote(text)}"]
    lines = [f'{prefix}{keyword} ""']
    lines += [f"{prefix}{_quote(chunk)}" for chunk in re.findall(r"[^\n]*\n|[^\n]+", text)]
    return lines


def write_po(header: str, entries: list[Entry], preamble: list[str]) -> str:
    out = [f"# {c}".rstrip() for c in preamble]
    out += _field("msgid", "") + _field("msgstr", header)
    for e in entries:
        out.append("")
        out += [f"# {c}".rstrip() for c in e.comments]
        prefix = "#~ " if e.obsolete else ""
        if not e.obsolete:
            if e.refs:
                out.append("#: " + " ".join(e.refs))
            if e.flags:
                out.append("#, " + ", ".join(sorted(e.flags)))
        out += _field("msgid", e.msgid, prefix) + _field("msgstr", e.msgstr, prefix)
    return "\n".join(out) + "\n"


def make_header(language: str = "", old: str = "") -> str:
    fields = dict(HEADER_FIELDS)
    for line in old.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if language:
        fields["Language"] = language
        fields.setdefault("Plural-Forms", "nplurals=1; plural=0;")
        fields.setdefault("Last-Translator", "posagent developers")
        fields.setdefault("Language-Team", f"{language} (posagent)")
        fields.setdefault("PO-Revision-Date", time.strftime("%Y-%m-%d %H:%M%z"))
    return "".join(f"{k}: {v}\n" for k, v in fields.items())


# -- merging -------------------------------------------------------------------
def merge(collected: dict[str, list[str]], old: list[Entry]) -> list[Entry]:
    """New catalog entries for ``collected``, keeping old translations (see module doc)."""
    by_id = {e.msgid: e for e in old}
    entries: list[Entry] = []
    for msgid, refs in collected.items():
        prev = by_id.get(msgid)
        entry = Entry(msgid, refs=list(refs))
        if prev is not None and prev.msgstr:
            entry.msgstr, entry.comments = prev.msgstr, list(prev.comments)
            entry.flags = {f for f in prev.flags if f == "fuzzy"}
        if is_brace_format(msgid):
            entry.flags.add("python-brace-format")
        entries.append(entry)
    vanished = [e for e in old if e.msgid not in collected and e.msgstr]
    pool = {e.msgid: e for e in vanished}
    for entry in entries:
        if entry.msgstr or not pool:
            continue
        close = difflib.get_close_matches(entry.msgid, list(pool), n=1, cutoff=0.8)
        if close:
            entry.msgstr = pool[close[0]].msgstr
            entry.flags.add("fuzzy")
    entries.sort(key=lambda e: (e.refs[0] if e.refs else "~", e.msgid))
    for e in vanished:
        entries.append(Entry(e.msgid, e.msgstr, obsolete=True))
    return entries


# -- .mo -----------------------------------------------------------------------
def compile_mo(header: str, entries: list[Entry]) -> bytes:
    """The GNU .mo file (little-endian, no hash table) of the translated, non-fuzzy entries."""
    messages = {"": header}
    for e in entries:
        if e.msgstr and not e.obsolete and "fuzzy" not in e.flags:
            messages[e.msgid] = e.msgstr
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in messages.items())
    n = len(items)
    ids = strs = b""
    table: list[tuple[int, int, int, int]] = []
    for key, value in items:
        table.append((len(key), len(ids), len(value), len(strs)))
        ids += key + b"\0"
        strs += value + b"\0"
    key_start = 7 * 4 + 16 * n
    value_start = key_start + len(ids)
    out = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, key_start)
    out += b"".join(struct.pack("<2I", klen, koff + key_start) for klen, koff, _v, _o in table)
    out += b"".join(struct.pack("<2I", vlen, voff + value_start) for _k, _o, vlen, voff in table)
    return out + ids + strs


# -- main ----------------------------------------------------------------------
def po_files() -> list[Path]:
    return sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def planned_outputs(collected: dict[str, list[str]]) -> dict[Path, bytes]:
    """Every file this tool writes, with its new content."""
    pot_entries = [Entry(m, refs=r, flags={"python-brace-format"} if is_brace_format(m) else set())
                   for m, r in collected.items()]
    pot_entries.sort(key=lambda e: (e.refs[0] if e.refs else "~", e.msgid))
    outputs = {LOCALE_DIR / f"{DOMAIN}.pot": write_po(
        make_header(), pot_entries, ["Messages of posagent. Generated by tools/i18n_update.py."]).encode()}
    for po in po_files():
        lang = po.parent.parent.name
        text = po.read_text(encoding="utf-8")
        header, old = parse_po(text)
        preamble = leading_comments(text) or [f"{lang} translation of posagent."]
        entries = merge(collected, old)
        new_header = make_header(lang, header)
        outputs[po] = write_po(new_header, entries, preamble).encode()
        outputs[po.with_suffix(".mo")] = compile_mo(new_header, entries)
    return outputs


def leading_comments(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        out.append(line[2:] if line.startswith("# ") else "")
    return out


def untranslated(po: Path) -> list[str]:
    _h, entries = parse_po(po.read_text(encoding="utf-8"))
    return [e.msgid for e in entries if not e.obsolete and (not e.msgstr or "fuzzy" in e.flags)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    ap.add_argument("--init", metavar="LANG", help="start a catalog for LANG (e.g. zh_TW) from the template")
    args = ap.parse_args(argv)
    if args.init:
        po = LOCALE_DIR / args.init / "LC_MESSAGES" / f"{DOMAIN}.po"
        if po.exists():
            print(f"{po.relative_to(REPO)} exists already", file=sys.stderr)
            return 1
        po.parent.mkdir(parents=True, exist_ok=True)
        po.write_text(write_po(make_header(args.init), [], [f"{args.init} translation of posagent."]),
                      encoding="utf-8")
    stale = []
    for path, content in planned_outputs(collect()).items():
        if path.exists() and path.read_bytes() == content:
            continue
        stale.append(path)
        if not args.check:
            path.write_bytes(content)
    for po in po_files():
        missing = untranslated(po)
        print(f"{po.relative_to(REPO)}: {len(missing)} untranslated or fuzzy")
        for msgid in missing:
            print(f"    {msgid}")
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
