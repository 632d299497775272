"""Scenario folders, Telegraf's testcases style: ``tests/data/<driver>/<scenario>/`` holds

    config.toml     the ``[[device]]`` table, with ``{url}`` for the scripted device's node
    exchange.txt    every byte the driver must send and the device's replies (replay.py)
    expected.json   the keys the heartbeat's device object must have (a subset is compared)

One parametrised test runs each: a scripted peer serves the exchange on a real pty, the
driver is built through the real config loader and asked for its status once, and the
result must match expected.json, with the whole exchange used and nothing else sent.
Adding a scenario is adding a folder; no code.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from posagent.selftest.render import device_json
from posagent.selftest.runner import call_with_timeout
from tests.conftest import REPO, device_set
from tests.scenarios.replay import ReplayPeer, load_steps

DATA = REPO / "tests" / "data"
SCENARIOS = sorted(p.parent for p in DATA.glob("*/*/exchange.txt"))


def subset(expected: Any, got: Any, where: str = "") -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"{where or '.'}: expected an object, got {got!r}"]
        out = []
        for key, value in expected.items():
            if key not in got:
                out.append(f"{where}.{key}: missing")
            else:
                out += subset(value, got[key], f"{where}.{key}")
        return out
    return [] if expected == got else [f"{where}: expected {expected!r}, got {got!r}"]


def test_scenarios_are_found() -> None:
    assert len(SCENARIOS) >= 10
    for folder in SCENARIOS:
        assert {"config.toml", "exchange.txt", "expected.json"} <= {p.name for p in folder.iterdir()}, folder


@pytest.mark.parametrize("folder", SCENARIOS, ids=[f"{p.parent.name}/{p.name}" for p in SCENARIOS])
def test_scenario(folder: Path, tmp_path: Path) -> None:
    peer = ReplayPeer(load_steps(folder))
    try:
        text = (folder / "config.toml").read_text(encoding="utf-8").replace("{url}", f"serial://{peer.path}")
        device = tomllib.loads(text)["device"][0]
        ds = device_set(tmp_path, device)
        try:
            driver = ds.get(device["name"])
            result = call_with_timeout(driver.status, 10.0, f"{folder.name}.status")  # type: ignore[union-attr]
        finally:
            ds.close()
    finally:
        peer.close()
    assert peer.mismatch is None, peer.mismatch
    assert peer.done == len(peer.steps), f"only {peer.done} of {len(peer.steps)} steps happened: {result.message}"
    got = device_json(device["driver"], result)
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    problems = subset(expected, got)
    assert not problems, f"{problems}\ngot: {json.dumps(got, ensure_ascii=False)}"
