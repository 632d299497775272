"""End to end through the installed ``posagent`` executable."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import run_cli


def test_selftest_sim_json_all_ok() -> None:
    proc = run_cli("selftest", "--sim", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"terminal_id", "started_at", "duration_ms", "level", "status", "checks"}
    assert out["status"] == "ok" and out["level"] == "external"
    assert out["checks"], "a simulated terminal has checks"
    devices = {c["device"] for c in out["checks"]}
    assert {"acquirer", "system"} <= devices
    for c in out["checks"]:
        assert set(c) >= {"name", "device", "level", "status", "code", "message", "hint", "measurements",
                          "duration_ms"}
        assert c["status"] == "ok", c


def test_selftest_sim_table() -> None:
    proc = run_cli("selftest", "--sim", "--lang", "en")
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.splitlines()[1]
    for col in ("DEVICE", "CHECK", "RESULT", "DETAIL", "HINT"):
        assert col in head
    assert "\x1b[" not in proc.stdout  # not a terminal: no colour
    assert "PASS" in proc.stdout.splitlines()[-1]


def test_failing_device_exit_2_with_hint(write_config) -> None:
    cfg = write_config('[[device]]\nname = "acq"\ndriver = "host"\nurl = "sim://host?status=503"\n')
    proc = run_cli("selftest", "--config", str(cfg), "--json", "--lang", "en")
    assert proc.returncode == 2, proc.stderr
    check = json.loads(proc.stdout)["checks"][0]
    assert (check["status"], check["code"]) == ("fail", "HOST_HTTP_ERROR") and check["hint"]


def test_paper_end_and_a_silent_device_is_fail_exit_2(write_config) -> None:
    """fail > unknown: a failure is never hidden behind a device that does not answer."""
    cfg = write_config('[[device]]\nname = "receipt"\ndriver = "escpos"\nurl = "sim://escpos?paper=end"\n'
                       '[[device]]\nname = "ups"\ndriver = "megatec"\nurl = "sim://megatec?no_answer=true"\n'
                       '[device.options]\nreply_timeout = "300ms"\n')
    for cmd in (("selftest",), ("status",)):
        proc = run_cli(*cmd, "--config", str(cfg), "--json")
        out = json.loads(proc.stdout)
        statuses = {c["status"] for c in out["checks"]} if "checks" in out else \
            {d["status"] for d in out["devices"].values()}
        assert {"fail", "unknown"} <= statuses, out
        assert proc.returncode == 2, (cmd, proc.stderr)
        assert out["status"] == "fail"


def test_status_json_shape(write_config) -> None:
    cfg = write_config('[[device]]\nname = "acq"\ndriver = "host"\nurl = "sim://host"\n'
                       '[[device]]\nname = "box"\ndriver = "system"\n')
    proc = run_cli("status", "--json", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"schema", "terminal_id", "status", "devices"} and out["schema"] == "posagent.status/1"
    acq = out["devices"]["acq"]
    assert acq["driver"] == "host" and acq["status"] == "ok" and acq["latency_ms"] > 0


def test_only_unknown_device_is_usage_error() -> None:
    proc = run_cli("selftest", "--sim", "--only", "nosuch")
    assert proc.returncode == 64 and "nosuch" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_64() -> None:
    for args in (["selftest", "--level", "loud"], ["frobnicate"], []):
        proc = run_cli(*args)
        assert proc.returncode == 64, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_version_and_module_entry() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("posagent ")
    mod = subprocess.run([sys.executable, "-m", "posagent", "--version"], capture_output=True, text=True, timeout=30)
    assert mod.returncode == 0 and mod.stdout == proc.stdout


def test_version_does_not_import_heavy_libraries() -> None:
    code = ("import sys; from posagent.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('escpos', 'PIL', 'httpx', 'serial', 'psutil', 'usb') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=", proc.stdout


def test_drivers_lists_builtins() -> None:
    proc = run_cli("drivers")
    for name in ("host", "system"):
        assert any(line.startswith(name + " ") and "enabled" in line for line in proc.stdout.splitlines())


def test_only_with_no_names_is_usage_error() -> None:
    proc = run_cli("status", "--sim", "--only", ",")
    assert proc.returncode == 64 and "--only" in proc.stderr


def test_chinese_on_a_console_that_cannot_show_it_falls_back_to_english() -> None:
    proc = run_cli("status", "--sim", "--lang", "zh-CN", env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert "DEVICE" in proc.stdout and "Traceback" not in proc.stderr


def test_schedule_lists_the_next_self_tests(write_config) -> None:
    cfg = write_config('[agent]\nterminal_id = "SH-7"\n[schedule]\nselftest_at = "03:00"\n'
                       'business_hours = "08:00-22:00"\n')
    proc = run_cli("schedule", "--config", str(cfg), "--json", "--days", "3")
    assert proc.returncode == 0, proc.stderr
    days = json.loads(proc.stdout)["days"]
    assert len(days) == 3 and all(d["level"] == "external" and d["business_hours"] == "08:00-22:00" for d in days)
    table = run_cli("schedule", "--config", str(cfg), "--lang", "en")
    assert table.returncode == 0 and "next 7 days" in table.stdout and len(table.stdout.splitlines()) == 8


def test_what_the_agent_writes_is_its_own(write_config, tmp_path) -> None:
    """State dir 0700 and files 0600 whoever starts it (#18); the Prometheus textfile stays
    readable by node_exporter."""
    import stat

    state = tmp_path / "fresh-state"
    prom = tmp_path / "agent.prom"
    cfg = write_config(f'[agent]\nstate_dir = "{state}"\n[export]\nprometheus_textfile = "{prom}"\n'
                       '[[device]]\nname = "acq"\ndriver = "host"\nurl = "sim://host"\n')
    assert run_cli("selftest", "--config", str(cfg), "--level", "internal").returncode == 0
    assert run_cli("heartbeat", "--config", str(cfg), "--send").returncode in (0, 1, 75)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = [p for p in state.iterdir() if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), \
        {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    if prom.exists():
        assert stat.S_IMODE(prom.stat().st_mode) == 0o644
