"""Config validation: every bad input gives one clear line naming file, key and fix; exit 78."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from posagent.config import ConfigError, load_config, parse_duration
from posagent.config.loader import validate
from posagent.core.values import parse_hour_range
from tests.conftest import run_cli

GOOD = """
[agent]
terminal_id = "T-1"
state_dir = "{state}"
heartbeat_interval = "30s"

[schedule]
selftest_at = "03:15"
jitter = "30m"
business_hours = "08:00-22:00"
blackout_dates = ["2027-02-06"]

[[device]]
name = "acquirer"
driver = "host"
url = "tcp://127.0.0.1:9"

[[device]]
name = "box"
driver = "system"
"""


def test_good_config_is_typed(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(GOOD.format(state=tmp_path))
    cfg = load_config(str(p))
    assert cfg.agent.terminal_id == "T-1"
    assert cfg.agent.heartbeat_interval == 30.0
    assert cfg.schedule.selftest_at == dt.time(3, 15)
    assert cfg.schedule.jitter == 1800.0
    assert cfg.schedule.blackout_dates == [dt.date(2027, 2, 6)]
    assert cfg.schedule.business_hours is not None
    assert cfg.schedule.business_hours.contains(dt.time(12, 0))
    assert [d.name for d in cfg.devices] == ["acquirer", "box"]
    url = cfg.devices[0].url
    assert url is not None and url.host == "127.0.0.1" and url.port == 9
    assert cfg.devices[0].options.tries == 3  # the driver's Options defaults


def test_terminal_id_defaults_to_hostname(tmp_path: Path) -> None:
    import socket

    cfg = validate({"agent": {"state_dir": str(tmp_path)}}, "x.toml")
    assert cfg.agent.terminal_id == socket.gethostname()


@pytest.mark.parametrize("text,where,fix", [
    ('[agent]\nheartbeat_interval = "soon"\n', "agent.heartbeat_interval", "60s"),
    ('[agent]\nheartbeat_interval = 5\nbogus = 1\n', "agent.bogus", "valid:"),
    ('[agent]\nterminl_id = "x"\n', "agent.terminl_id", "did you mean 'terminal_id'"),
    ('[agent]\nterminal_id = 42\n', "agent.terminal_id", "a string"),
    ('[agent]\nlanguage = "fr"\n', "agent.language", "auto, en or zh-CN"),
    ('[schedul]\n', "schedul", "did you mean 'schedule'"),
    ('[schedule]\nselftest_at = "25:00"\n', "schedule.selftest_at", "03:00"),
    ('[schedule]\nbusiness_hours = "8-22"\n', "schedule.business_hours", "08:00-22:00"),
    ('[schedule]\nblackout_dates = ["tomorrow"]\n', "schedule.blackout_dates", "2027-02-06"),
    ('[upstream]\nurl = "http://fleet/x"\n', "upstream.url", "allow_insecure_http"),
    ('[[device]]\nname = "p"\ndriver = "escpso"\nurl = "serial:///dev/ttyS0"\n', "device[0] (p).driver",
     "did you mean 'escpos'"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "serail:///dev/ttyS0"\n', "device[0] (h).url",
     "did you mean 'serial'"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "tcp://host"\n', "device[0] (h).url", "tcp://10.0.0.5:9100"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "tcp://host:99999"\n', "device[0] (h).url", "port"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "serial:///dev/ttyS0"\n', "device[0] (h).url",
     "use tcp, https"),
    ('[[device]]\nname = "h"\ndriver = "host"\n', "device[0] (h).url", "e.g. url"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "tcp://a:1"\n[device.options]\ntries = "3"\n',
     "device[0] (h).options.tries", "integer"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "tcp://a:1"\n[device.options]\ntrys = 3\n',
     "device[0] (h).options.trys", "did you mean 'tries'"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "tcp://a:1"\n[device.options]\ntries = 0\n',
     "device[0] (h).options", "between 1 and 20"),
    ('[[device]]\nname = "h"\ndriver = "host"\nurl = "tcp://a:1"\n'
     '[[device]]\nname = "h"\ndriver = "system"\n', "device[1] (h).name", "duplicate device name"),
    ('[[device]]\ndriver = "system"\n', "device[0].name", "add name"),
    ('[[device]]\nname = "s"\ndriver = "system"\ntimeout = "forever"\n', "device[0] (s).timeout", "duration"),
    ('[device]\nname = "s"\n', "device", "[[device]]"),
])
def test_bad_config_one_line_naming_key_and_fix(write_config, text: str, where: str, fix: str) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as ei:
        load_config(str(path))
    lines = ei.value.problems
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {where}: "), lines[0]
    assert fix in lines[0]
    assert "\n" not in lines[0]


@pytest.mark.parametrize("text,expect", [
    ("[agent\nx=1\n", "TOML syntax error"),
    ("", None),
])
def test_syntax_error_and_empty(write_config, text: str, expect: str | None, tmp_path: Path) -> None:
    path = tmp_path / "raw.toml"
    path.write_text(text)
    if expect is None:
        assert load_config(str(path)).devices == []
        return
    with pytest.raises(ConfigError) as ei:
        load_config(str(path))
    assert expect in ei.value.problems[0] and str(path) in ei.value.problems[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "nope.toml"))
    assert "config file not found" in str(ei.value) and "--config" in str(ei.value)


@pytest.mark.parametrize("text", [
    "[agent\n",
    '[agent]\nheartbeat_interval = "1 fortnight"\n',
    '[[device]]\nname = "x"\ndriver = "nosuch"\n',
    '[[device]]\nname = "x"\ndriver = "host"\nurl = "ftp://a"\n',
    '[[device]]\nname = "x"\ndriver = "system"\n[[device]]\nname = "x"\ndriver = "system"\n',
    '[agent]\nnonsense = true\n',
])
@pytest.mark.parametrize("command", [["config", "check"], ["status", "--config"], ["selftest", "--config"]])
def test_cli_bad_config_exit_78_no_traceback(write_config, text: str, command: list[str]) -> None:
    path = write_config(text)
    proc = run_cli(*command, str(path))
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0], proc.stderr


def test_cli_missing_config_and_env_var(tmp_path: Path) -> None:
    proc = run_cli("status", env={"POSAGENT_CONFIG": str(tmp_path / "absent.toml")})
    assert proc.returncode == 78 and "absent.toml" in proc.stderr and "Traceback" not in proc.stderr


def test_config_check_ok(write_config) -> None:
    path = write_config('[[device]]\nname = "box"\ndriver = "system"\n')
    proc = run_cli("config", "check", str(path))
    assert proc.returncode == 0 and "OK" in proc.stdout and "box (system)" in proc.stdout


def test_shipped_configs_are_valid() -> None:
    from tests.conftest import REPO

    for name in ("example.toml", "sim.toml"):
        proc = run_cli("config", "check", str(REPO / "config" / name))
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("60s", 60), ("30m", 1800), ("2h", 7200),
                                          ("1d", 86400), ("1.5s", 1.5), (10, 10.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "s", "10x", "-5s", True, [1], "1 fortnight"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_hour_range_wraps_midnight() -> None:
    r = parse_hour_range("22:00-06:00")
    assert r.contains(dt.time(23, 0)) and r.contains(dt.time(5, 59)) and not r.contains(dt.time(12, 0))


@pytest.mark.parametrize("text,where,fix", [
    ('[[device]]\nname = "p"\ndriver = "escpos"\nurl = "sim://megatec"\n', "device[0] (p).url", "sim://escpos"),
    ('[[device]]\nname = "k"\ndriver = "evdev-keypad"\nurl = "sim://escpos"\n', "device[0] (k).url", "sim://keypad"),
    ('[[device]]\nname = "s"\ndriver = "system"\nurl = "sim://host"\n', "device[0] (s).url", "remove the url"),
    ('[[device]]\nname = "p"\ndriver = "escpos"\nurl = "sim://escpos"\noptions = 5\n', "device[0] (p).options",
     "[device.options]"),
])
def test_driver_url_and_options_shape(write_config, text: str, where: str, fix: str) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as ei:
        load_config(str(path))
    (line,) = ei.value.problems
    assert line.startswith(f"{path}: {where}: ") and fix in line, line


def test_duration_error_gives_its_fix_once(write_config) -> None:
    path = write_config('[agent]\nheartbeat_interval = "soon"\n')
    with pytest.raises(ConfigError) as ei:
        load_config(str(path))
    assert ei.value.problems[0].count("60s") == 1, ei.value.problems[0]


def test_url_errors_never_show_the_password(write_config) -> None:
    path = write_config('[[device]]\nname = "u"\ndriver = "nut"\nurl = "nut://mon:S3CRETPW@127.0.0.1:99999/ups"\n')
    proc = run_cli("config", "check", str(path))
    assert proc.returncode == 78 and "S3CRETPW" not in proc.stderr and "***" in proc.stderr, proc.stderr


def test_config_example_command_prints_a_valid_config(tmp_path: Path) -> None:
    proc = run_cli("config", "example")
    assert proc.returncode == 0 and "[[device]]" in proc.stdout
    path = tmp_path / "ex.toml"
    path.write_text(proc.stdout)
    assert run_cli("config", "check", str(path)).returncode == 0
    missing = run_cli("config", "check", str(tmp_path / "absent.toml"))
    assert missing.returncode == 78 and "posagent config example" in missing.stderr
