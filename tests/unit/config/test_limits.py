"""Bad values are refused where they are written: one problem line naming the key, what was
wrong and the fix, never an exception other than ConfigError."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from posagent.config import ConfigError, load_config
from posagent.config.errors import problem
from posagent.config.loader import MAX_CONFIG_BYTES, MAX_DEVICES, MAX_PROBLEMS, validate
from posagent.config.model import AgentSection, HistorySection, ScheduleSection, UpstreamSection
from tests.conftest import REPO

BIG = 10**400
NAN = float("nan")
INF = float("inf")


def one_problem(raw: dict[str, Any], tmp_path: Path) -> str:
    raw = {**raw, "agent": {"state_dir": str(tmp_path), **raw.get("agent", {})}}
    with pytest.raises(ConfigError) as ei:
        validate(raw, "t.toml")
    problems = ei.value.problems
    assert len(problems) == 1, problems
    line = problems[0]
    assert "\n" not in line and "\x1b" not in line and "\x00" not in line
    assert len(line) < 1500, line[:200]
    return line


@pytest.mark.parametrize("section,key,value,needle", [
    ("agent", "heartbeat_interval", NAN, "between 1s and 1d"),
    ("agent", "heartbeat_interval", INF, "between 1s and 1d"),
    ("agent", "heartbeat_interval", "0s", "between 1s and 1d"),
    ("agent", "heartbeat_interval", BIG, "between 1s and 1d"),
    ("agent", "heartbeat_interval", "9" * 400 + "s", "between 1s and 1d"),
    ("agent", "heartbeat_interval", -INF, "cannot be negative"),
    ("agent", "check_timeout", INF, "between 10ms and 1h"),
    ("agent", "check_timeout", "0s", "between 10ms and 1h"),
    ("agent", "check_timeout", NAN, "between 10ms and 1h"),
    ("schedule", "status_poll", INF, "between 200ms and 1d"),
    ("schedule", "status_poll", NAN, "between 200ms and 1d"),
    ("schedule", "jitter", INF, "between 0s and 1d"),
    ("schedule", "startup_jitter", BIG, "between 0s and 1h"),
    ("schedule", "event_dedupe", NAN, "between 0s and 1d"),
    ("upstream", "spool_max_mb", NAN, "between 0.01 and 4096"),
    ("upstream", "spool_max_mb", INF, "between 0.01 and 4096"),
    ("upstream", "spool_max_mb", -INF, "between 0.01 and 4096"),
    ("upstream", "spool_max_mb", 0, "between 0.01 and 4096"),
    ("upstream", "spool_max_mb", BIG, "between 0.01 and 4096"),
    ("upstream", "timeout", "0s", "between 100ms and 10m"),
    ("upstream", "spool_max_age", INF, "between 1m and 366d"),
    ("history", "keep_runs", BIG, "between 1 and 100000"),
    ("history", "keep_runs", 0, "between 1 and 100000"),
    ("history", "keep_days", -(BIG), "between 0 and 36500"),
])
def test_numbers_out_of_range_are_one_line(tmp_path: Path, section: str, key: str, value: object,
                                            needle: str) -> None:
    raw: dict[str, Any] = {section: {key: value}}
    if section == "agent":
        raw["agent"] = {"state_dir": str(tmp_path), key: value}
    line = one_problem(raw, tmp_path)
    assert line.startswith(f"t.toml: {section}.{key}: "), line
    assert needle in line, line
    assert "e.g." in line or "negative" in line, line


@pytest.mark.parametrize("value", [NAN, INF, "0s", "0ms", 0, BIG, "2h"])
def test_device_timeout_must_be_positive_and_bounded(tmp_path: Path, value: object) -> None:
    line = one_problem({"device": [{"name": "box", "driver": "system", "timeout": value}]}, tmp_path)
    assert line.startswith("t.toml: device[0] (box).timeout: must be between 10ms and 1h; e.g."), line


@pytest.mark.parametrize("key,value", [("stale_after", NAN), ("stale_after", INF), ("stale_after", BIG)])
def test_share_durations_are_finite(tmp_path: Path, key: str, value: object) -> None:
    line = one_problem({"device": [{"name": "box", "driver": "escpos", "url": "sim://escpos", key: value}]}, tmp_path)
    assert f"device[0] (box).{key}: must be more than 0" in line


@pytest.mark.parametrize("options,where", [
    ({"connect_timeout": INF}, "connect_timeout"),
    ({"connect_timeout": NAN}, "connect_timeout"),
    ({"warn_latency_ms": NAN}, "warn_latency_ms"),
    ({"warn_latency_ms": -INF}, "warn_latency_ms"),
    ({"warn_latency_ms": BIG}, "warn_latency_ms"),
    ({"tries": BIG}, "tries"),
    ({"ca_file": "/etc/ca\n.pem"}, "ca_file"),
])
def test_driver_options_get_the_generic_limits(tmp_path: Path, options: dict[str, Any], where: str) -> None:
    dev = {"name": "h", "driver": "host", "url": "tcp://127.0.0.1:9", "options": options}
    line = one_problem({"device": [dev]}, tmp_path)
    assert line.startswith(f"t.toml: device[0] (h).options.{where}: "), line


@pytest.mark.parametrize("name,needle", [
    ("a\nb", "U+000A"), ("\x1b[31mred\x1b[0m", "U+001B"), ("nul\x00", "U+0000"), ("rtl\u202e", "U+202E"),
    ("x" * 65, "at most 64"), ("x" * 100_000, "at most 64"),
])
def test_device_names_refuse_control_characters_and_length(tmp_path: Path, name: str, needle: str) -> None:
    line = one_problem({"device": [{"name": name, "driver": "system"}]}, tmp_path)
    assert line.startswith("t.toml: device[0].name: ") and needle in line, line


def test_a_64_character_name_is_fine(tmp_path: Path) -> None:
    cfg = validate({"agent": {"state_dir": str(tmp_path)}, "device": [{"name": "收" * 64, "driver": "system"}]}, "t")
    assert cfg.devices[0].name == "收" * 64


@pytest.mark.parametrize("key,value,needle", [
    ("terminal_id", "T\x00-1", "U+0000"),
    ("terminal_id", "T-1\n", "U+000A"),
    ("terminal_id", "x" * 129, "at most 128"),
    ("terminal_id", "x" * 100_000, "at most 128"),
    ("state_dir", "", "absolute path"),
    ("state_dir", "var/lib/posagent", "absolute path"),
    ("state_dir", "/var/lib/\x00posagent", "U+0000"),
    ("state_dir", "/" + "x" * 5000, "at most 4096"),
    ("language", "x" * 100_000, "at most 16"),
])
def test_agent_text_limits(tmp_path: Path, key: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        validate({"agent": {"state_dir": str(tmp_path), key: value}}, "t.toml")
    (line,) = ei.value.problems
    assert line.startswith(f"t.toml: agent.{key}: ") and needle in line, line
    assert "\x00" not in line and len(line) < 1000


def test_long_urls_are_refused_before_parsing(tmp_path: Path) -> None:
    line = one_problem({"device": [{"name": "h", "driver": "host", "url": "tcp://h:1/" + "x" * 10_000}]}, tmp_path)
    assert "at most 2048" in line
    line = one_problem({"upstream": {"url": "https://h/" + "x" * 10_000}}, tmp_path)
    assert line.startswith("t.toml: upstream.url: ") and "at most 2048" in line


def test_too_many_devices_is_one_line(tmp_path: Path) -> None:
    devices = [{"name": f"d{i}", "driver": "system"} for i in range(60_000)]
    line = one_problem({"device": devices}, tmp_path)
    assert line.startswith("t.toml: device: 60000 [[device]] tables; at most 64"), line
    ok = validate({"agent": {"state_dir": str(tmp_path)}, "device": devices[:MAX_DEVICES]}, "t.toml")
    assert len(ok.devices) == MAX_DEVICES


def test_huge_lists_and_deep_structures(tmp_path: Path) -> None:
    line = one_problem({"schedule": {"blackout_dates": ["2027-02-06"] * 5000}}, tmp_path)
    assert "at most 1000" in line
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ConfigError):
        validate({"agent": {"state_dir": str(tmp_path)}, "schedule": {"blackout_dates": deep}}, "t.toml")


def test_many_problems_are_capped(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        validate({"agent": {"state_dir": str(tmp_path), **{f"k{i}": 1 for i in range(10_000)}}}, "t.toml")
    assert len(ei.value.problems) == MAX_PROBLEMS + 1
    assert "9950 more problems not shown" in ei.value.problems[-1]


@pytest.mark.parametrize("url", [
    "https://user:pw@fleet.example.com/hb",
    "https://user@fleet.example.com/hb",
    "https://user:pa#ss99@fleet.example.com/hb",
    "https://user:a/b?c@fleet.example.com/hb",
])
def test_upstream_url_with_userinfo_is_refused_without_showing_it(tmp_path: Path, url: str) -> None:
    line = one_problem({"upstream": {"url": url}}, tmp_path)
    assert line == ("t.toml: upstream.url: the URL holds a user name or password; remove it from the URL and "
                    "put credentials in token_file")


@pytest.mark.parametrize("url,needle", [
    ("ftp://fleet/x?token=S3CRET", "'ftp://fleet/x?***' is not an http(s) or mqtt(s) URL"),
    ("https://fleet:99999/x", "port"),
    ("https:///x", "no host name"),
])
def test_upstream_url_shape(tmp_path: Path, url: str, needle: str) -> None:
    line = one_problem({"upstream": {"url": url}}, tmp_path)
    assert needle in line and "S3CRET" not in line, line


# -- the file ----------------------------------------------------------------------------
def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "posagent.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as ei:  # an open() of a FIFO without a writer would block here
        load_config(str(fifo))
    (line,) = ei.value.problems
    assert line == f"{fifo}: is not a regular file (a FIFO, socket or device); pass a .toml file"


def test_device_file_is_refused() -> None:
    with pytest.raises(ConfigError) as ei:
        load_config("/dev/null")
    assert "not a regular file" in ei.value.problems[0]


def test_oversize_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(path))
    (line,) = ei.value.problems
    assert "larger than 1024 KiB" in line


@pytest.mark.parametrize("text,needle", [
    ("[agent]\nx = " + "[" * 5000 + "]" * 5000 + "\n", "nests too deep"),
    ("[agent]\nx = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "nests too deep"),
    ("[agent]\nheartbeat_interval = 1" + "0" * 5000 + "\n", "number too large"),
    ("[agent]\nheartbeat_interval = 1" + "0" * 400 + "\n", "agent.heartbeat_interval: must be between 1s and 1d"),
    ("[agent]\nheartbeat_interval = nan\n", "agent.heartbeat_interval: must be between"),
    ("[upstream]\nspool_max_mb = inf\n", "upstream.spool_max_mb: must be between"),
    ("[schedule]\njitter = inf\n", "schedule.jitter: must be between"),
    ("[agent]\nstate_dir = \"\"\n", "agent.state_dir: must be an absolute path"),
    ('[[device]]\nname = "a\\u001b[2Jb"\ndriver = "system"\n', "device[0].name: the name holds the control character"),
    ("\ufeff[agent]\n", "TOML syntax error"),
    ("[agent]\nterminal_id = \"\xff\"\n", None),
])
def test_hostile_files_give_one_line(tmp_path: Path, text: str, needle: str | None) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    if needle is None:  # a plain latin-1 character written as UTF-8 is fine
        assert load_config(str(path)).agent.terminal_id == "\xff"
        return
    with pytest.raises(ConfigError) as ei:
        load_config(str(path))
    (line,) = ei.value.problems
    assert line.startswith(f"{path}: ") and needle in line, line


def test_not_utf8_and_nul_in_path(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"[agent]\nterminal_id = \"\xff\"\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(path))
    assert "not UTF-8" in ei.value.problems[0]
    with pytest.raises(ConfigError):
        load_config(str(tmp_path / "a\x00b.toml"))


# -- problem lines ------------------------------------------------------------------------
def test_problem_lines_escape_control_characters_and_cut_long_parts() -> None:
    line = problem("f.toml", "agent.\x1b[31mx\nkey", "bad \u202e value " + "v" * 5000, "fix")
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line
    assert "\\u001b[31mx\\u000akey" in line and "\\u202e" in line
    assert len(line) < 1000 and line.endswith("…; fix")


def test_unknown_keys_with_escapes_are_shown_escaped(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        validate({"agent": {"state_dir": str(tmp_path), "\x1b]0;pwned\x07": 1}}, "t.toml")
    (line,) = ei.value.problems
    assert "\x1b" not in line and "\x07" not in line and "\\u001b]0;pwned\\u0007" in line


# -- ranges next to the fields ----------------------------------------------------------------
def test_every_ranged_field_is_documented_in_the_example() -> None:
    example = (REPO / "config" / "example.toml").read_text(encoding="utf-8")
    for cls in (AgentSection, ScheduleSection, UpstreamSection, HistorySection):
        for f in dataclasses.fields(cls):
            if "range" in f.metadata:
                assert f"{f.name} = " in example, f"{cls.__name__}.{f.name} is not in config/example.toml"


def test_defaults_are_inside_their_ranges() -> None:
    for cls in (AgentSection, ScheduleSection, UpstreamSection, HistorySection):
        for f in dataclasses.fields(cls):
            rng = f.metadata.get("range")
            if rng is not None and f.default is not None:  # None: the transport's default (keepalive)
                assert rng.contains(f.default), (cls.__name__, f.name)
