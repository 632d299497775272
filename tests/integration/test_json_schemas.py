"""Every ``--json`` output keeps the promise of its shipped schema: selftest, status and
heartbeat, on the simulated terminal and on one with faults (paper end, a silent UPS)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from posagent.fleet.messages import SCHEMA_FILES, load_schema
from tests.conftest import run_cli

FAULTY = ('[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "sim://escpos?paper=end"\n'
          '[[device]]\nname = "ups"\ndriver = "megatec"\nurl = "sim://megatec?no_answer=true"\n'
          '[device.options]\nreply_timeout = "300ms"\n')


def validator(kind: str) -> Draft202012Validator:
    schemas = {name: load_schema(name) for name in SCHEMA_FILES}
    registry: Registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(schemas[kind], registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize(("kind", "args"), [
    ("selftest", ["selftest", "--level", "internal", "--json"]),
    ("status", ["status", "--json"]),
    ("heartbeat", ["heartbeat", "--json"]),
    ("inventory", ["inventory", "--json"]),
])
@pytest.mark.parametrize("terminal", ["sim", "faulty"])
def test_json_output_validates(kind: str, args: list[str], terminal: str,
                               write_config: Callable[..., Path]) -> None:
    where = ["--sim"] if terminal == "sim" else ["--config", str(write_config(FAULTY))]
    proc = run_cli(*args, *where)
    out: dict[str, Any] = json.loads(proc.stdout)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(kind).iter_errors(out)]
    assert not errors, errors
    assert out["schema"] == f"posagent.{kind}/1"
    if terminal == "faulty" and kind != "inventory":  # (an inventory has no status)
        assert out["status"] == "fail"  # paper end outranks the silent UPS
    if kind == "selftest":
        assert out["trigger"] == "cli" and out["seq"] >= 1


def test_every_shipped_schema_is_valid_and_names_its_kind() -> None:
    """Every kind the agent sends (KIND_OF, with command_result and diagnostics) has a valid
    draft 2020-12 schema of its own id, whose ``schema`` field is that kind."""
    from posagent.fleet.messages import KIND_OF

    ids = set()
    for name in SCHEMA_FILES:
        schema = load_schema(name)
        Draft202012Validator.check_schema(schema)
        ids.add(schema["$id"])
    assert len(ids) == len(SCHEMA_FILES)
    for full, kind in KIND_OF.items():
        assert load_schema(kind)["properties"]["schema"] == {"const": full}
