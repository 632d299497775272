"""The Prometheus textfile: parsed back with prometheus_client's own parser."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from posagent.fleet.prom import render, write_textfile


def heartbeat() -> dict[str, Any]:
    """A heartbeat as design.md and config/schemas/heartbeat.json describe it."""
    return {
        "schema": "posagent.heartbeat/1", "terminal_id": "SH-0042", "agent_version": "0.1.0", "seq": 7,
        "sent_at": "2026-05-09T14:03:07.123+08:00", "status": "warn", "interval_s": 60.0,
        "agent": {"outbox_backlog": 3, "outbox_bytes": 4096, "rejected": 1,
                  "dropped": {"heartbeat": 2, "event": 0, "selftest": 0, "total": 2},
                  "last_success_at": "2026-05-09T14:02:07+08:00", "last_error": None, "uptime_s": 3600},
        "devices": {
            "receipt": {"driver": "escpos", "status": "warn", "code": "PAPER_NEAR_END", "message": "paper near end",
                        "paper": "near_end", "ribbon": None, "cover": "closed", "online": True,
                        "model": "TM-T88V", "firmware": "30.03"},
            "ups": {"driver": "megatec", "status": "warn", "code": "UPS_ON_BATTERY", "message": "on battery",
                    "on_battery": True, "battery_charge_pct": 87, "battery_runtime_s": 540.0,
                    "battery_low": False},
            "acquirer": {"driver": "host", "status": "ok", "code": "HOST_OK", "message": "ok", "latency_ms": 21.5},
            "dead-ups": {"driver": "nut", "status": "unknown", "code": "UPSD_UNREACHABLE", "message": "refused",
                         "on_battery": None, "battery_charge_pct": None, "battery_low": None},
        },
        "last_selftest": {"when": "2026-05-09T03:00:00+08:00", "status": "ok", "checks": []},
        "counters": {"selftests_run": 12, "failures": {"receipt": 2}, "paper_end_events": 1,
                     "ups_on_battery_events": 3},
        "system": {"disk_free_pct": 42.0, "disk_free_mb": 1024.0, "memory_used_pct": 25.0, "load1": 0.5,
                   "uptime_s": 7200, "cpu_count": 2},
    }


def parse(text: str) -> dict[str, Any]:
    """family name -> (type, help, {(sample name, frozenset(labels)): value})."""
    out = {}
    for fam in text_string_to_metric_families(text):
        samples = {(s.name, frozenset(s.labels.items())): s.value for s in fam.samples}
        assert all(s.timestamp is None for s in fam.samples)
        out[fam.name] = (fam.type, fam.documentation, samples)
    return out


def value(fams: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    _type, _help, samples = fams[family]
    return float(samples[(sample or family, frozenset(labels.items()))])


def test_the_file_parses_and_carries_the_figures(tmp_path: Path) -> None:
    path = tmp_path / "posagent.fleet.prom"
    write_textfile(str(path), heartbeat())
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    fams = parse(text)
    t = {"terminal_id": "SH-0042"}
    assert all(name.startswith("posagent_") for name in fams)
    assert value(fams, "posagent_status", **t) == 1
    assert value(fams, "posagent_device_status", **t, device="receipt", driver="escpos") == 1
    assert value(fams, "posagent_device_status", **t, device="dead-ups", driver="nut") == 3
    assert value(fams, "posagent_device_up", **t, device="dead-ups", driver="nut") == 0
    assert value(fams, "posagent_device_code_info", **t, device="ups", driver="megatec", code="UPS_ON_BATTERY") == 1
    paper = {s: value(fams, "posagent_printer_paper", **t, device="receipt", driver="escpos", state=s)
             for s in ("ok", "near_end", "end", "unknown")}
    assert paper == {"ok": 0, "near_end": 1, "end": 0, "unknown": 0}
    assert value(fams, "posagent_printer_cover_open", **t, device="receipt", driver="escpos") == 0
    assert value(fams, "posagent_ups_battery_charge_ratio", **t, device="ups", driver="megatec") == pytest.approx(0.87)
    assert value(fams, "posagent_ups_battery_runtime_seconds", **t, device="ups", driver="megatec") == 540
    assert value(fams, "posagent_ups_on_battery", **t, device="ups", driver="megatec") == 1
    assert value(fams, "posagent_host_latency_seconds", **t, device="acquirer", driver="host") == \
        pytest.approx(0.0215)
    assert value(fams, "posagent_outbox_messages", **t) == 3
    assert value(fams, "posagent_outbox_bytes", **t) == 4096
    assert fams["posagent_outbox_dropped"][0] == "counter"
    assert value(fams, "posagent_outbox_dropped", "posagent_outbox_dropped_total", **t, kind="heartbeat") == 2
    assert value(fams, "posagent_selftests", "posagent_selftests_total", **t) == 12
    assert value(fams, "posagent_device_failures", "posagent_device_failures_total", **t, device="receipt") == 2
    assert value(fams, "posagent_ups_on_battery_events", "posagent_ups_on_battery_events_total", **t) == 3
    assert value(fams, "posagent_heartbeat_timestamp_seconds", **t) == pytest.approx(1778306587.123)
    assert value(fams, "posagent_system_disk_free_ratio", **t) == pytest.approx(0.42)
    assert value(fams, "posagent_system_disk_free_bytes", **t) == 1024 * 2**20
    assert fams["posagent_device_status"][1].startswith("device status")


def test_absent_values_are_left_out_never_zero() -> None:
    fams = parse(render(heartbeat()))
    _t, _h, charge = fams["posagent_ups_battery_charge_ratio"]
    assert [dict(labels)["device"] for _n, labels in charge] == ["ups"]  # dead-ups reported none
    _t, _h, on_batt = fams["posagent_ups_on_battery"]
    assert {dict(labels)["device"] for _n, labels in on_batt} == {"ups"}
    assert "posagent_printer_ribbon" not in fams  # ribbon null: not an impact printer
    assert "posagent_system_temperature_celsius" not in fams


def test_tolerates_a_sparse_heartbeat() -> None:
    fams = parse(render({"terminal_id": "T", "devices": {"x": {"status": "bogus"}, "y": "not an object"}}))
    assert set(fams) == {"posagent_agent_info"}
    assert parse(render({}))["posagent_agent_info"][2]


def test_each_family_has_one_help_and_type_and_no_timestamps() -> None:
    text = render(heartbeat())
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert helps == types and len(helps) == len(set(helps))
    for line in text.splitlines():
        if not line.startswith("#"):
            _head, _sep, number = line.rpartition("} ") if "{" in line else line.partition(" ")
            assert len(number.split()) == 1, f"a timestamp or junk after the value: {line!r}"
            assert re.fullmatch(r"posagent_[a-z0-9_]+", line.split("{")[0].split(" ")[0]), line


def test_label_values_are_escaped() -> None:
    hb = {"terminal_id": 'SH "42" \\ 收银', "status": "ok",
          "devices": {'recei"pt\nB': {"driver": "escpos", "status": "ok", "code": "PRINTER_OK", "message": ""}}}
    fams = parse(render(hb))
    assert value(fams, "posagent_device_status", terminal_id='SH "42" \\ 收银', device='recei"pt\nB',
                 driver="escpos") == 0


def test_write_is_atomic_and_readable_by_node_exporter(tmp_path: Path) -> None:
    path = tmp_path / "posagent.fleet.prom"
    path.write_text("old content that must be replaced whole\n")
    inode_before = path.stat().st_ino
    write_textfile(str(path), heartbeat())
    assert path.stat().st_ino != inode_before  # a new file renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posagent.fleet.prom"]  # no temp file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "old content" not in path.read_text()


def test_a_failed_write_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "no-such-dir" / "posagent.fleet.prom"
    with caplog.at_level(logging.WARNING, logger="posagent.fleet.prom"):
        write_textfile(str(missing), heartbeat())
        write_textfile(str(missing), heartbeat())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no-such-dir" in warnings[0].getMessage()  # once per new error
    assert not missing.parent.exists()
    ok = tmp_path / "posagent.fleet.prom"
    write_textfile(str(ok), heartbeat())
    assert ok.exists()


def test_a_real_heartbeat_from_sim_devices_exports(tmp_path: Path) -> None:
    messages = pytest.importorskip("posagent.fleet.messages")
    from posagent.config import load_config
    from posagent.drivers.system import snapshot
    from posagent.fleet.history import record_selftest
    from posagent.selftest.devices import DeviceSet
    from posagent.selftest.runner import Runner

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[agent]\nterminal_id = "SIM-9"\nstate_dir = "{tmp_path}"\n'
                   '[[device]]\nname = "acquirer"\ndriver = "host"\nurl = "sim://host?status=503"\n'
                   '[[device]]\nname = "system"\ndriver = "system"\n', encoding="utf-8")
    config = load_config(str(cfg))
    from posagent.core.base import Level

    with DeviceSet(config) as devices:
        runner = Runner(devices)
        record_selftest(config, runner.selftest(Level.INTERNAL))
        results = runner.status()
    body = messages.preview(messages.heartbeat(config, results, snapshot(str(tmp_path))), 1)
    path = tmp_path / "posagent.fleet.prom"
    write_textfile(str(path), body)
    fams = parse(path.read_text(encoding="utf-8"))
    t = {"terminal_id": "SIM-9"}
    assert value(fams, "posagent_device_status", **t, device="acquirer", driver="host") == 2
    assert value(fams, "posagent_selftests", "posagent_selftests_total", **t) == 1
    assert value(fams, "posagent_device_failures", "posagent_device_failures_total", **t, device="acquirer") == 1
    assert value(fams, "posagent_last_selftest_status", **t) == 2
    assert value(fams, "posagent_outbox_messages", **t) == 0
    assert 0 < value(fams, "posagent_system_disk_free_ratio", **t) <= 1
    assert os.path.getsize(path) > 0


def test_bytes_are_whole_and_scaled_figures_carry_no_float_noise() -> None:
    from posagent.fleet.prom import render

    text = render({"terminal_id": "T1", "status": "ok", "devices": {
        "acq": {"driver": "host", "status": "ok", "code": "HOST_OK", "message": "", "latency_ms": 0.07}},
        "system": {"disk_free_mb": 80923.1, "memory_available_mb": 23632.4}})
    lines = {line.split("{")[0]: line.rsplit(" ", 1)[1] for line in text.splitlines() if line and line[0] != "#"}
    assert lines["posagent_system_disk_free_bytes"] == str(round(80923.1 * 2**20))
    assert lines["posagent_system_memory_available_bytes"].isdigit()
    assert lines["posagent_host_latency_seconds"] == "7e-05"


def test_forecasts_are_gauges_only_when_known() -> None:
    hb = heartbeat()
    hb["devices"]["receipt"].update(paper_remaining_pct=42.5, paper_days_left=3.2, ribbon_days_left=None)
    hb["devices"]["slip"] = {"driver": "escpos", "status": "ok", "code": "PRINTER_OK", "message": "ready",
                             "ribbon": "ok", "paper_remaining_pct": None, "paper_days_left": None,
                             "ribbon_days_left": 12.5}
    hb["devices"]["ups"]["battery_health_pct"] = 64.3
    hb["devices"]["dead-ups"]["battery_health_pct"] = None
    fams = parse(render(hb))
    t = {"terminal_id": "SH-0042"}
    receipt, slip = {**t, "device": "receipt", "driver": "escpos"}, {**t, "device": "slip", "driver": "escpos"}
    assert value(fams, "posagent_printer_paper_remaining_ratio", **receipt) == pytest.approx(0.425)
    assert value(fams, "posagent_printer_paper_days_left", **receipt) == pytest.approx(3.2)
    assert value(fams, "posagent_printer_ribbon_days_left", **slip) == pytest.approx(12.5)
    assert value(fams, "posagent_ups_battery_health_ratio", **t, device="ups", driver="megatec") == \
        pytest.approx(0.643)
    # null: no sample at all, never a 0
    assert len(fams["posagent_printer_paper_remaining_ratio"][2]) == 1
    assert len(fams["posagent_printer_ribbon_days_left"][2]) == 1
    assert len(fams["posagent_ups_battery_health_ratio"][2]) == 1
    assert "posagent_printer_ribbon_days_left" not in parse(render(heartbeat()))
