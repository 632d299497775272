"""``posagent inventory`` and the daemon's ``posagent.inventory/1`` through the real entry
points: the simulated terminal's identities (the ESC/POS simulator answers GS I to the
self-test's identity check, the Megatec simulator answers I), the table in zh-CN, and a
real ``posagent run`` against the HTTP collector: one inventory at start, a second only
after a change (a reload adding a device), none on the heartbeats between, none after a
restart in the same boot."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from posagent.fleet.messages import SCHEMA_FILES, load_schema
from tests.conftest import run_cli
from tests.integration.collector import Collector
from tests.integration.daemon_proc import DaemonProc, daemon_config

PRINTER = '\n[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "sim://escpos"\n'


def validator() -> Draft202012Validator:
    schemas = {name: load_schema(name) for name in SCHEMA_FILES}
    registry: Registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(schemas["inventory"], registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors_of(message: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(message)]


def test_sim_json_validates_and_names_the_simulators(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # the printer's identity is asked by the self-test's identity check and remembered;
    # the inventory only reads it (nothing is sent to the printer for it)
    st = run_cli("selftest", "--sim", "--state-dir", str(state), "--only", "receipt", "--json")
    assert st.returncode == 0, st.stderr
    proc = run_cli("inventory", "--sim", "--state-dir", str(state), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert not errors_of(out), errors_of(out)
    assert out["trigger"] == "cli" and out["seq"] >= 1
    devices = out["devices"]
    assert devices["receipt"]["model"] and devices["receipt"]["firmware"], devices["receipt"]
    ups = devices["ups"]  # Megatec I: company, model and version, as said when the port was opened
    assert ups["maker"] and ups["model"] and ups["firmware"] and ups["serial"] is None, ups
    assert devices["keypad"]["model"] == "POSAGENT Sim Keypad"
    assert out["system"]["python"] and out["system"]["posagent"] == out["agent_version"]
    assert out["digest"] and len(out["digest"]) == 64


def test_table_in_zh_cn_has_no_english_label() -> None:
    proc = run_cli("inventory", "--sim", "--lang", "zh-CN", env={"LANG": "C.UTF-8"})
    assert proc.returncode == 0, proc.stderr
    assert "资产清单" in proc.stdout and "型号" in proc.stdout
    for english in ("Inventory of", "System", "Operating system", "Kernel", "Architecture", "Host name",
                    "Devices", "DEVICE", "DRIVER", "MAKER", "MODEL", "FIRMWARE", "SERIAL NO.", "Serial ports",
                    "USB devices"):
        assert english not in proc.stdout, english


def inventories(collector: Collector) -> list[dict[str, Any]]:
    return [m for m in collector.unique().values() if m.get("schema") == "posagent.inventory/1"]


def heartbeats(collector: Collector) -> int:
    return sum(1 for m in collector.unique().values() if m.get("schema") == "posagent.heartbeat/1")


def test_daemon_sends_at_start_then_only_on_a_change(tmp_path: Path) -> None:
    with Collector() as collector:
        cfg = daemon_config(tmp_path / "posagent.toml", "INV-1", collector.url)
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            assert collector.wait_for(lambda r: len(inventories(collector)) == 1, 30), d.stderr()
            first = inventories(collector)[0]
            assert not errors_of(first), errors_of(first)
            assert first["trigger"] == "start" and set(first["devices"]) == {"acquirer", "system"}
            seen = heartbeats(collector)
            assert collector.wait_for(lambda r: heartbeats(collector) >= seen + 4, 30), d.stderr()
            assert len(inventories(collector)) == 1  # not on every heartbeat

            daemon_config(cfg, "INV-1", collector.url, devices=PRINTER)
            d.signal(signal.SIGHUP)
            assert collector.wait_for(lambda r: len(inventories(collector)) == 2, 30), d.stderr()
            second = inventories(collector)[1]
            assert second["trigger"] == "change" and "receipt" in second["devices"]
            assert second["digest"] != first["digest"] and second["seq"] > first["seq"]
            seen = heartbeats(collector)
            assert collector.wait_for(lambda r: heartbeats(collector) >= seen + 4, 30), d.stderr()
            assert len(inventories(collector)) == 2
            d.signal(signal.SIGTERM)
            assert d.wait(20) == 0, d.stderr()

        # the agent restarted in the same boot, nothing changed: no inventory again
        with DaemonProc(["--config", str(cfg)], tmp_path) as d:
            seen = heartbeats(collector)
            assert collector.wait_for(lambda r: heartbeats(collector) >= seen + 3, 30), d.stderr()
            assert len(inventories(collector)) == 2, d.stderr()
            d.signal(signal.SIGTERM)
            assert d.wait(20) == 0, d.stderr()
