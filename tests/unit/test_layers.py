"""The layers of the package, checked on the source: a lower layer never imports a higher one.

    core < config < drivers < selftest < fleet < daemon < cli

``posagent.core`` imports nothing else of posagent; drivers see only core and config; the
CLI and the daemon both use the services (fleet), and neither imports the other, except
``posagent.cli.run``, the command that starts the daemon. Every import counts, also those
inside functions and under ``if TYPE_CHECKING``. Imports of posagent modules sit at module
level: only heavy optional libraries are deferred into functions, and only the CLI's
dispatcher loads a module by name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

#: folder -> import name (pyproject's package-dir)
ROOTS = {"agent": "posagent", "drivers": "posagent.drivers", "selftest": "posagent.selftest",
         "config": "posagent.config"}
LAYERS = ["core", "config", "drivers", "selftest", "fleet", "daemon", "cli"]
#: imports that cross upward on purpose: the one command that starts the daemon
ALLOWED_UP = {("posagent.cli.run", "posagent.daemon")}
#: the CLI's dispatcher imports a command (and the error texts) only when it runs, so
#: ``posagent --version`` loads nothing but argparse
LAZY = {"posagent.cli",
        # paho-mqtt (and the MQTT transport that imports the seam back) only for an mqtt(s):// upstream
        "posagent.fleet.transport"}
#: what the root package's own modules are: the version re-export and ``python -m posagent``
ROOT_LAYER = {"posagent": "core", "posagent.__main__": "cli"}


@dataclass(frozen=True)
class Imp:
    module: str  # the importing module
    target: str  # the imported module (or package)
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    name = ROOTS[parts[0]]
    rest = [p for p in parts[1:] if p != "__init__"]
    return ".".join([name, *rest])


def layer(module: str) -> str:
    if module in ROOT_LAYER:
        return ROOT_LAYER[module]
    part = module.split(".")[1]
    if part in LAYERS:
        return part
    raise AssertionError(f"{module} is in no layer: put it in one of {LAYERS}")


def package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports(path: Path) -> list[Imp]:
    module = module_name(path)
    found: list[Imp] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend(Imp(module, a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package_of(module, path).split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.append(Imp(module, target, child.lineno, in_function))
                # "from posagent.fleet import history" imports posagent.fleet.history
                found.extend(Imp(module, f"{target}.{a.name}", child.lineno, in_function) for a in child.names
                             if (REPO_MODULES.get(f"{target}.{a.name}")))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return [i for i in found if i.target == "posagent" or i.target.startswith("posagent.")]


def source_files() -> list[Path]:
    return sorted(p for folder in ROOTS for p in (REPO / folder).rglob("*.py"))


REPO_MODULES: dict[str, Path] = {}
REPO_MODULES.update({module_name(p): p for p in source_files()})


def violations(found: list[Imp]) -> list[str]:
    out = []
    for imp in found:
        if imp.target not in REPO_MODULES and not any(m.startswith(imp.target + ".") for m in REPO_MODULES):
            out.append(f"{imp.module}:{imp.line} imports {imp.target}, which does not exist")
            continue
        if imp.target == "posagent":
            continue  # the root package is only the version
        src, dst = LAYERS.index(layer(imp.module)), LAYERS.index(layer(imp.target))
        allowed = any(imp.module == a and (imp.target == b or imp.target.startswith(b + ".")) for a, b in ALLOWED_UP)
        if dst > src and not allowed:
            out.append(f"{imp.module}:{imp.line} ({layer(imp.module)}) imports {imp.target} ({layer(imp.target)})")
        if layer(imp.module) == "cli" and layer(imp.target) == "daemon" and not allowed:
            out.append(f"{imp.module}:{imp.line}: the CLI imports the daemon ({imp.target}); use posagent.fleet")
    return out


def all_imports() -> list[Imp]:
    return [i for p in source_files() for i in imports(p)]


def test_every_module_is_in_a_layer() -> None:
    for module in REPO_MODULES:
        layer(module)


def test_no_lower_layer_imports_a_higher_one() -> None:
    bad = violations(all_imports())
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_core_imports_nothing_else_of_posagent() -> None:
    bad = [f"{i.module}:{i.line} imports {i.target}" for i in all_imports()
           if layer(i.module) == "core" and i.target != "posagent" and layer(i.target) != "core"]
    assert not bad, bad


def test_posagent_modules_are_imported_at_module_level() -> None:
    bad = [f"{i.module}:{i.line} imports {i.target} inside a function" for i in all_imports()
           if i.in_function and i.module not in LAZY]
    assert not bad, "\n".join(bad)


def test_only_the_cli_dispatcher_loads_modules_by_name() -> None:
    bad = []
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        if "import_module(" in text and module_name(path) != "posagent.cli":
            bad.append(module_name(path))
    assert not bad, bad


@pytest.mark.parametrize("module, target", [
    ("posagent.drivers.escpos", "posagent.cli.common"),
    ("posagent.drivers.escpos", "posagent.daemon.loop"),
    ("posagent.core.base", "posagent.config.model"),
    ("posagent.daemon.loop", "posagent.cli.heartbeat"),
    ("posagent.cli.heartbeat", "posagent.daemon.loop"),
    ("posagent.fleet.outbox", "posagent.daemon"),
])
def test_a_bad_import_is_caught(module: str, target: str) -> None:
    """The check itself: a driver importing the CLI or the daemon, core importing config,
    the daemon and the CLI importing each other are all reported."""
    assert violations([Imp(module, target, 1, False)])


def test_the_allowed_edge_is_the_run_command_only() -> None:
    assert not violations([Imp("posagent.cli.run", "posagent.daemon.loop", 1, False)])
