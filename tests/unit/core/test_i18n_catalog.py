"""Every result code has a hint and a message in English and Simplified Chinese; the shipped
catalogs are up to date with the source and compile to the .mo that ships.

Codes are gathered two ways: the catalogues (``posagent.core.codes`` and every installed
driver's ``codes``), and a scan of the drivers' source for code literals handed to
``Result.ok/warn/fail/unknown``, ``Result(Status.X, "CODE")``, ``code="..."`` (DeviceError
and friends), ``(Status.X, "CODE", ...)`` tuples and ``code = "..."`` assignments.

The driver template (drivers/_template) is a skeleton, not an installed driver: its texts
stay out of the catalogs (tools/i18n_update.py SKELETONS), so it is not asked for zh-CN;
its own catalogue must still cover its source and be complete in English.
"""

from __future__ import annotations

import ast
import gettext
import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from posagent.core.base import Driver
from posagent.core.codes import REASONS, SHARED
from posagent.core.i18n import _, set_language
from posagent.core.registry import DriverLoadError, available_drivers, load_driver
from posagent.drivers._template import TemplateDriver
from posagent.selftest.hints import all_codes as catalogued
from posagent.selftest.hints import all_hints
from posagent.selftest.messages import all_messages, placeholders, templates_for
from tests.conftest import REPO, need_binary

LOCALE = REPO / "agent" / "locale"
ZH_PO = LOCALE / "zh_CN" / "LC_MESSAGES" / "posagent.po"
ZH_MO = ZH_PO.with_suffix(".mo")
CODE = re.compile(r"^[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+$")
GRADES = {"ok", "warn", "fail", "unknown"}


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("i18n_update", REPO / "tools" / "i18n_update.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["i18n_update"] = module
    spec.loader.exec_module(module)
    return module


tool = load_tool()
SCANNED = [p for p in (*sorted((REPO / "drivers").rglob("*.py")), *sorted((REPO / "agent" / "core").glob("*.py")),
                       REPO / "selftest" / "runner.py", REPO / "selftest" / "devices.py")
           if not tool.is_skeleton(p.relative_to(REPO).as_posix())]
#: skeleton name -> its Driver class (not installed, so not in ``driver_classes()``)
SKELETON_DRIVERS: dict[str, type[Driver]] = {"_template": TemplateDriver}


def _status_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Status":
        return node.attr.lower()
    return None


def _code(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.match(node.value):
        return node.value
    return None


def scan_codes(source: str) -> dict[str, set[str]]:
    """code -> the grades it is used with ("unknown" where the source does not say)."""
    found: dict[str, set[str]] = {}

    def add(code: str | None, grade: str) -> None:
        if code:
            found.setdefault(code, set()).add(grade)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in GRADES and node.args:
                add(_code(node.args[0]), name)
            grades = [g for g in map(_status_attr, node.args) if g]
            if grades:
                for arg in node.args:
                    add(_code(arg), grades[0])
            for kw in node.keywords:
                if kw.arg == "code":
                    add(_code(kw.value), "unknown")
        elif isinstance(node, ast.Tuple):
            grades = [g for g in map(_status_attr, node.elts) if g]
            if grades:
                for elt in node.elts:
                    add(_code(elt), grades[0])
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "code" for t in targets) and node.value is not None:
                add(_code(node.value), "unknown")
    return found


def source_codes() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in SCANNED:
        for code, grades in scan_codes(path.read_text(encoding="utf-8")).items():
            out.setdefault(code, set()).update(grades)
    return out


def driver_classes() -> dict[str, type[Driver]]:
    """The installed drivers that load (a broken one is the registry tests' concern)."""
    out = {}
    for name in available_drivers():
        try:
            out[name] = load_driver(name)
        except DriverLoadError:
            continue
    return out


def all_codes() -> dict[str, set[str]]:
    codes = source_codes()
    for code in all_hints():
        codes.setdefault(code, set()).add("hinted")
    for code in all_messages():
        codes.setdefault(code, set())
    return codes


def needs_hint(code: str, grades: set[str]) -> bool:
    """A code that can be a problem: anything not only ever graded ok."""
    return not (code.endswith("_OK") or grades == {"ok"})


@pytest.fixture(scope="module")
def zh() -> gettext.GNUTranslations:
    with ZH_MO.open("rb") as fh:
        return gettext.GNUTranslations(fh)


@pytest.fixture(autouse=True)
def english_after() -> object:
    yield
    set_language("en")


def test_scanner_finds_codes_in_every_form() -> None:
    src = '''
Result.fail("PAPER_END", "paper end")
Result.ok("PAPER_OK", "fine")
Result(Status.WARN, "PAPER_NEAR_END", "low")
raise DeviceTimeout("silent", code="PRINTER_NO_RESPONSE")
findings.append((Status.FAIL, "COVER_OPEN", "cover"))
status, code = Status.WARN, "HOST_SLOW"
class E(DeviceError):
    code = "DEVICE_GONE"
Finding(Status.UNKNOWN, "PROTO_BAD")
log.info("NOT_A_CODE here")
'''
    found = scan_codes(src)
    assert found == {"PAPER_END": {"fail"}, "PAPER_OK": {"ok"}, "PAPER_NEAR_END": {"warn"},
                     "PRINTER_NO_RESPONSE": {"unknown"}, "COVER_OPEN": {"fail"}, "HOST_SLOW": {"warn"},
                     "DEVICE_GONE": {"unknown"}, "PROTO_BAD": {"unknown"}}


def test_the_known_drivers_codes_are_found() -> None:
    codes = all_codes()
    for code in ("HOST_UNREACHABLE", "HOST_OK", "DISK_FULL", "CLOCK_WRONG", "CHECK_TIMEOUT", "DEVICE_NO_RESPONSE"):
        assert code in codes


def test_every_code_has_an_english_message_template() -> None:
    missing = sorted(c for c in all_codes() if not templates_for(c))
    assert not missing, f"codes without a message template (the driver's codes.py): {missing}"


def test_every_problem_code_has_an_english_hint() -> None:
    hints = all_hints()
    missing = sorted(c for c, g in all_codes().items() if needs_hint(c, g) and not hints.get(c, "").strip())
    assert not missing, f"codes without a hint (the driver's codes.py or core/codes.py): {missing}"


def test_every_hint_and_message_is_translated_to_chinese(zh: gettext.GNUTranslations) -> None:
    hints = all_hints()
    untranslated = []
    for code in sorted(all_codes()):
        texts = list(templates_for(code)) + ([hints[code]] if code in hints else [])
        for text in texts:
            zh_text = zh.gettext(text)
            if zh_text == text or not re.search(r"[\u4e00-\u9fff]", zh_text):
                untranslated.append(f"{code}: {text}")
            elif placeholders(zh_text) != placeholders(text):
                untranslated.append(f"{code}: placeholders differ: {text} -> {zh_text}")
    assert not untranslated, "run tools/i18n_update.py and translate:\n" + "\n".join(untranslated)


def test_catalogue_keys_are_codes() -> None:
    for name, cls in driver_classes().items():
        for code in cls.codes:
            assert CODE.match(code), f"driver {name}: key {code!r} is not an upper-case code"
    for code in SHARED:
        assert CODE.match(code)


def package_sources(cls: type[Driver]) -> list[Path]:
    path = Path(sys.modules[cls.__module__].__file__ or "")
    return sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]


def test_every_code_a_driver_can_end_in_is_in_its_catalogue() -> None:
    """A code a driver raises or returns, found in its own package's source, has an entry
    in that driver's catalogue (or the shared one), with the grade the source gives it."""
    problems = []
    for name, cls in {**driver_classes(), **SKELETON_DRIVERS}.items():
        for path in package_sources(cls):
            for code, grades in scan_codes(path.read_text(encoding="utf-8")).items():
                entry = cls.codes.get(code) or SHARED.get(code)
                if entry is None:
                    problems.append(f"{name}: {code} ({path.name}) is not in its catalogue")
                elif not {g for g in grades if g != "unknown"} <= {g.label for g in entry.grades}:
                    problems.append(f"{name}: {code} is used as {sorted(grades)}, catalogued as "
                                    f"{sorted(g.label for g in entry.grades)}")
    shared_sources = [*sorted((REPO / "agent" / "core").glob("*.py")),
                      *sorted((REPO / "drivers" / "transport").glob("*.py")),
                      REPO / "selftest" / "runner.py", REPO / "selftest" / "devices.py"]
    for path in shared_sources:
        for code in scan_codes(path.read_text(encoding="utf-8")):
            if code not in SHARED and code not in catalogued():
                problems.append(f"{code} ({path.name}) is in no catalogue")
    assert not problems, "\n".join(problems)


def test_the_skeletons_are_skipped_here_but_complete_in_english() -> None:
    """A new family starts from the template's catalogue: every code has a message
    template, ``{detail}`` only as the last of several, and a hint unless it is only ever ok."""
    assert not any("_template" in p.parts for p in SCANNED)
    assert not any(tool.is_skeleton(ref) for refs in tool.collect().values() for ref in refs)
    for name, cls in SKELETON_DRIVERS.items():
        assert cls.name not in available_drivers(), f"{name} is a skeleton: it must not be registered"
        for code, entry in cls.codes.items():
            assert CODE.match(code) and entry.templates, (name, code)
            for i, text in enumerate(entry.templates):
                if "detail" in placeholders(text):
                    assert 1 < len(entry.templates) == i + 1, f"{name}: {code}: {text!r} is not a fallback"
            if needs_hint(code, {g.label for g in entry.grades}):
                assert entry.hint.strip(), f"{name}: {code} has no hint"


def test_the_catalogue_check_catches_an_uncatalogued_code() -> None:
    assert "NO_SUCH_CODE_XYZ" in scan_codes('Result.fail("NO_SUCH_CODE_XYZ", "x")')
    assert "NO_SUCH_CODE_XYZ" not in catalogued()


def test_every_marked_string_is_in_the_catalog_and_translated() -> None:
    _header, entries = tool.parse_po(ZH_PO.read_text(encoding="utf-8"))
    active = {e.msgid: e for e in entries if not e.obsolete}
    collected = tool.collect()
    assert set(collected) <= set(active), \
        f"not in the .po (run tools/i18n_update.py): {sorted(set(collected) - set(active))}"
    bad = sorted(m for m, e in active.items() if not e.msgstr or "fuzzy" in e.flags)
    assert not bad, f"untranslated or fuzzy in {ZH_PO.name}: {bad}"
    for msgid, entry in active.items():
        assert placeholders(entry.msgstr) == placeholders(msgid), msgid


def test_shipped_catalogs_are_up_to_date() -> None:
    stale = [str(p.relative_to(REPO)) for p, content in tool.planned_outputs(tool.collect()).items()
             if not p.exists() or p.read_bytes() != content]
    assert not stale, f"out of date (run python3 tools/i18n_update.py): {stale}"


def test_debian_msgfmt_accepts_the_po_and_agrees_with_the_shipped_mo(tmp_path: Path) -> None:
    msgfmt = need_binary("msgfmt", "gettext")
    out = tmp_path / "posagent.mo"
    proc = subprocess.run([msgfmt, "--check", "-o", str(out), str(ZH_PO)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    with out.open("rb") as a, ZH_MO.open("rb") as b:
        theirs, ours = gettext.GNUTranslations(a), gettext.GNUTranslations(b)
    assert theirs._catalog == ours._catalog  # type: ignore[attr-defined]
    assert len(ours._catalog) > 100  # type: ignore[attr-defined]


def test_po_round_trips_through_the_tool() -> None:
    text = ZH_PO.read_text(encoding="utf-8")
    header, entries = tool.parse_po(text)
    assert tool.write_po(header, entries, tool.leading_comments(text)) == text


def test_merge_keeps_translations_and_marks_close_rewordings_fuzzy() -> None:
    old = [tool.Entry("Close the cover.", "合上上盖。"),
           tool.Entry("Load a new paper roll and close the cover.", "装上新纸卷，然后合上上盖。"),
           tool.Entry("Gone for good", "已删除")]
    merged = tool.merge({"Close the cover.": ["x.py"], "Load a new paper roll, then close the cover.": ["x.py"],
                         "Brand new {n}": ["y.py"]}, old)
    by_id = {e.msgid: e for e in merged}
    assert by_id["Close the cover."].msgstr == "合上上盖。" and not by_id["Close the cover."].flags
    reworded = by_id["Load a new paper roll, then close the cover."]
    assert reworded.msgstr == "装上新纸卷，然后合上上盖。" and "fuzzy" in reworded.flags
    assert by_id["Brand new {n}"].msgstr == "" and by_id["Brand new {n}"].flags == {"python-brace-format"}
    assert by_id["Gone for good"].obsolete and by_id["Load a new paper roll and close the cover."].obsolete
    header = tool.make_header("zh_CN")
    catalog = gettext.GNUTranslations(io.BytesIO(tool.compile_mo(header, merged)))
    assert catalog.gettext("Close the cover.") == "合上上盖。"
    # fuzzy and obsolete entries are not compiled: a translator confirms them first
    assert catalog.gettext("Load a new paper roll, then close the cover.") == \
        "Load a new paper roll, then close the cover."
    assert catalog.gettext("Gone for good") == "Gone for good"


def test_runtime_lookup_follows_the_language() -> None:
    set_language("zh-CN")
    assert _("PASS") == "通过"
    assert _("") == ""
    set_language("en")
    assert _("PASS") == "PASS"


def test_each_driver_gets_its_own_hint_even_for_a_code_others_use() -> None:
    from posagent.selftest.hints import hint

    for name, cls in driver_classes().items():
        for code, entry in cls.codes.items():
            assert hint(code, name) == entry.hint, (name, code)
    set_language("zh-CN")
    for name, cls in driver_classes().items():
        for code, entry in cls.codes.items():
            assert hint(code, name) == _(entry.hint), (name, code)


def test_no_translated_string_is_built_before_translation() -> None:
    """``_(f"...")`` or ``_("a" + b)`` can never match a catalog entry: format after translating.

    (``N_("a" + CONST)`` in a driver's ``hints`` is fine: hints are collected by importing the driver.)"""
    bad = []
    for folder in tool.SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_" \
                        and node.args and isinstance(node.args[0], ast.JoinedStr | ast.BinOp):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, f"translate a literal, then .format(): {bad}"


def test_prompts_to_the_technician_are_translated() -> None:
    """Text handed to ``ctx.prompt``/``ctx.say`` (and ``say``/``tell`` helpers) goes through ``_()``."""
    bad = []
    for path in sorted((REPO / "drivers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("prompt", "say", "tell") and isinstance(node.args[0], ast.Constant | ast.JoinedStr | ast.BinOp):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, f"wrap the technician's prompt in _() and .format() it: {bad}"


def test_the_drivers_english_detail_is_only_ever_the_last_resort() -> None:
    """A template with ``{detail}`` embeds the driver's English: every code whose message
    needs specifics first has templates built from the result's facts."""
    for code, found in sorted(all_messages().items()):
        templates = (found,) if isinstance(found, str) else tuple(found)
        for i, text in enumerate(templates):
            if "detail" in placeholders(text):
                assert len(templates) > 1 and i == len(templates) - 1, f"{code}: {text!r} is not a fallback"


def reason_tokens(source: str) -> set[str]:
    """Reason tokens handed to results: ``"reason": "x"`` in dicts, ``_facts("x")`` calls,
    ``DriverLoadError(msg, "x")`` and the return values of ``*_reason`` functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "reason":
                    if isinstance(v, ast.Constant):
                        found.add(v.value)
                    elif isinstance(v, ast.IfExp):
                        found |= {b.value for b in (v.body, v.orelse) if isinstance(b, ast.Constant)}
        elif isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            arg = node.args[-1] if name == "DriverLoadError" and len(node.args) == 2 else \
                node.args[0] if name == "_facts" else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
        elif isinstance(node, ast.FunctionDef) and node.name.endswith("_reason"):
            found |= {r.value.value for r in ast.walk(node) if isinstance(r, ast.Return)
                      and isinstance(r.value, ast.Constant) and isinstance(r.value.value, str)}
    return found


def test_every_reason_token_has_a_phrase() -> None:
    assert reason_tokens('x = {"reason": "absent"}; y = self._facts("closed"); DriverLoadError("m", "import_failed")\n'
                         'def connect_reason(e):\n    return "dns"\nz = {"reason": "a" if q else "b"}') == \
        {"absent", "closed", "import_failed", "dns", "a", "b"}
    used: set[str] = set()
    for path in [*sorted((REPO / "drivers").rglob("*.py")), *sorted((REPO / "selftest").glob("*.py"))]:
        used |= reason_tokens(path.read_text(encoding="utf-8"))
    assert len(used) > 20
    missing = sorted(used - set(REASONS))
    assert not missing, f"reason tokens without a phrase (core/codes.py REASONS): {missing}"
