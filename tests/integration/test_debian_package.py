"""The Debian package's sources agree with the tree, without building anything (.ci/deb
builds, lints, installs and purges the package): the systemd files in debian/ are the ones
in systemd/, the version is the agent's, nothing installs tests/ or evdev, the service is
installed but not enabled, the conffile is the example config, purge takes config and state.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from posagent.cli import COMMANDS
from posagent.core.version import __version__
from tests.conftest import REPO, need_binary

DEBIAN = REPO / "debian"


def control() -> list[dict[str, str]]:
    """debian/control as paragraphs of field -> value (continuation lines joined)."""
    paragraphs: list[dict[str, str]] = []
    for block in DEBIAN.joinpath("control").read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields:
            paragraphs.append(fields)
    return paragraphs


def names(relation: str) -> set[str]:
    """Package names in a relation field, versions and substvars left out."""
    out = set()
    for item in re.split(r"[,|]", relation):
        name = item.strip().split(" ")[0].split("(")[0]
        if name and not name.startswith("${"):
            out.add(name)
    return out


@pytest.mark.parametrize(("name", "source"), [
    ("posagent.service", "posagent.service"),
    ("posagent.udev", "60-posagent.rules"),
    ("posagent.sysusers", "posagent.sysusers"),
    ("posagent.tmpfiles", "posagent.tmpfiles"),
])
def test_the_systemd_files_are_the_trees(name: str, source: str) -> None:
    """debhelper installs debian/posagent.<kind>: each is a link to systemd/, never a copy to drift."""
    path = DEBIAN / name
    assert path.is_symlink(), f"debian/{name} should link to ../systemd/{source}"
    assert path.resolve() == (REPO / "systemd" / source).resolve()


def test_the_version_is_the_agents() -> None:
    first = DEBIAN.joinpath("changelog").read_text(encoding="utf-8").splitlines()[0]
    m = re.match(r"^posagent \(([^)]+)\) \S+; urgency=\w+$", first)
    assert m, first
    assert m.group(1) == __version__, f"debian/changelog says {m.group(1)}, the agent {__version__}"
    # a native package (debian/ lives in the tree): no Debian revision
    assert DEBIAN.joinpath("source/format").read_text().strip() == "3.0 (native)" and "-" not in m.group(1)


def test_control_depends_on_debians_python_not_evdev() -> None:
    source, binary = control()
    assert {"debhelper-compat", "dh-virtualenv", "python3", "python3-venv"} <= names(source["Build-Depends"])
    depends = binary["Depends"]
    assert "python3 (>= 3.11)" in depends and "${posagent:Python}" in depends
    # Pillow and PyYAML come from Debian (their wheels embed libjpeg, freetype, libyaml ...)
    assert {"python3-pil", "python3-yaml", "libusb-1.0-0"} <= names(depends)
    assert "python3-evdev" not in names(depends) and "python3-evdev" in names(binary["Recommends"])
    assert binary["Architecture"] == "any"  # the venv holds compiled wheels (psutil, cryptography)


def test_the_ci_script_installs_the_build_dependencies() -> None:
    script = (REPO / ".ci" / "deb").read_text(encoding="utf-8")
    m = re.search(r"^BUILD_DEPS=\(([^)]*)\)", script, re.M)
    assert m, "no BUILD_DEPS=(...) in .ci/deb"
    listed = set(m.group(1).split())
    assert names(control()[0]["Build-Depends"]) - {"debhelper-compat"} <= listed
    assert "set -euo pipefail" in script
    bash = shutil.which("bash")
    if bash:
        r = subprocess.run([bash, "-n", str(REPO / ".ci" / "deb")], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr


def test_rules_build_what_the_package_promises() -> None:
    rules = DEBIAN.joinpath("rules").read_text(encoding="utf-8")
    assert "export DH_VIRTUALENV_INSTALL_ROOT := /usr/lib" in rules  # /usr/lib/posagent, not /opt
    assert "--only-binary=:all:" in rules and "--no-compile" in rules  # no compiler, no shipped bytecode
    assert "include-system-site-packages = true" in rules  # Debian's python3-evdev at run time
    assert "dh_installsystemd --no-enable" in rules  # nothing prints before the operator configures
    assert "install -D -m 0644 config/example.toml debian/posagent/etc/posagent/posagent.toml" in rules
    assert "test ! -e $(SITE)/tests" in rules
    links = DEBIAN.joinpath("posagent.links").read_text(encoding="utf-8").split()
    assert links == ["usr/lib/posagent/bin/posagent", "usr/bin/posagent"]
    unit = (REPO / "systemd" / "posagent.service").read_text(encoding="utf-8")
    assert "ExecStart=/usr/bin/posagent run" in unit


def test_pyproject_installs_no_tests_and_no_evdev() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["setuptools"]["packages"]
    assert not [p for p in packages if p == "tests" or p.startswith("tests.") or ".tests" in p]
    assert "tests" not in project["tool"]["setuptools"].get("package-dir", {})
    assert not [d for d in project["project"]["dependencies"] if d.lower().startswith("evdev")]


def test_the_conffile_is_the_example_config() -> None:
    from posagent.config.loader import load_config

    config = load_config(str(REPO / "config" / "example.toml"))
    assert config.agent.state_dir == "/var/lib/posagent"  # what postrm purges


def test_maintainer_scripts() -> None:
    sh = need_binary("sh", "dash")
    for name in ("postinst", "prerm", "postrm"):
        path = DEBIAN / f"posagent.{name}"
        text = path.read_text(encoding="utf-8")
        assert "#DEBHELPER#" in text and text.startswith("#!/bin/sh\nset -e\n"), name
        r = subprocess.run([sh, "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    postrm = DEBIAN.joinpath("posagent.postrm").read_text(encoding="utf-8")
    purge = postrm[postrm.index('if [ "$1" = purge ]'):]
    assert "/etc/posagent" in purge and "/var/lib/posagent" in purge
    assert postrm.count("rm -rf") == 1  # only on purge: remove keeps config and state


def test_docs_and_man_page() -> None:
    for line in DEBIAN.joinpath("posagent.docs").read_text(encoding="utf-8").split():
        assert (REPO / line).is_file(), line
    man = DEBIAN.joinpath("posagent.1").read_text(encoding="utf-8")
    assert f'"posagent {__version__}"' in man.splitlines()[0]
    for command in COMMANDS:
        assert f".B {command}\n" in man, f"the man page does not list the command {command}"
    install = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    assert "apt-get install ./posagent_" in install and "systemctl enable --now posagent" in install
