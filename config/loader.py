"""Load and validate the agent's TOML config.

Search order: ``--config``, ``$POSAGENT_CONFIG``, ``/etc/posagent/posagent.toml``.
Every problem becomes one line naming the file, the key and the fix (ConfigError);
nothing here raises anything else for bad input.
"""

from __future__ import annotations

import os
import socket
import tomllib
from importlib import resources
from typing import Any

from posagent.config.errors import ConfigError, did_you_mean, problem
from posagent.config.model import (
    MIN_POLL,
    AgentSection,
    Config,
    DeviceConfig,
    ExportSection,
    HistorySection,
    ScheduleSection,
    UpstreamSection,
    build,
)
from posagent.config.sharing import KEYS as SHARE_KEYS
from posagent.config.sharing import Sharing, parse_sharing
from posagent.config.urls import parse_url
from posagent.core.i18n import _
from posagent.core.registry import available_drivers, load_driver
from posagent.core.values import parse_duration

DEFAULT_PATH = "/etc/posagent/posagent.toml"
_SECTIONS = {"agent": AgentSection, "schedule": ScheduleSection, "upstream": UpstreamSection,
             "export": ExportSection, "history": HistorySection}
_DEVICE_KEYS = ("name", "driver", "url", "options", "timeout", "enabled", *SHARE_KEYS)
LANGUAGES = ("auto", "en", "zh-CN")


def resolve_path(cli_path: str | None) -> str:
    return cli_path or os.environ.get("POSAGENT_CONFIG") or DEFAULT_PATH


def example_config_path() -> str:
    """The packaged, commented example config."""
    return str(resources.files("posagent.config").joinpath("example.toml"))


def sim_config_path() -> str:
    """The packaged simulated-terminal config."""
    return str(resources.files("posagent.config").joinpath("sim.toml"))


def load_config(path: str, *, state_dir_override: str | None = None) -> Config:
    """Read, parse and validate ``path``. Raises ConfigError only."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        fix = _("create it from the example (posagent config example > FILE) or pass --config FILE")
        raise ConfigError([problem(path, "", _("config file not found"), fix)]) from None
    except PermissionError:
        raise ConfigError([problem(path, "", _("config file is not readable by this user"),
                                   _("run as the posagent user or fix the file's permissions"))]) from None
    except IsADirectoryError:
        raise ConfigError([problem(path, "", _("is a directory, not a config file"), _("pass a .toml file"))]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([problem(path, "", _("TOML syntax error: {error}").format(error=e),
                                   _("fix the line named (strings need quotes, tables [name])"))]) from None
    except UnicodeDecodeError:
        raise ConfigError([problem(path, "", _("file is not UTF-8 text"), _("save it as UTF-8"))]) from None
    return validate(raw, path, state_dir_override=state_dir_override)


def validate(raw: dict[str, Any], path: str, *, state_dir_override: str | None = None) -> Config:
    problems: list[str] = []
    for key in raw:
        if key not in _SECTIONS and key != "device":
            problems.append(problem(path, key, _("unknown section"),
                                    did_you_mean(key, [*_SECTIONS, "device"])))
    sections = {name: build(cls, raw.get(name), path, name, problems) for name, cls in _SECTIONS.items()}
    agent = sections["agent"]
    if isinstance(agent, AgentSection):
        if agent.language not in LANGUAGES:
            problems.append(problem(path, "agent.language",
                                    _("'{value}' is not a language").format(value=agent.language),
                                    _("use auto, en or zh-CN")))
        if agent.heartbeat_interval < 1:
            problems.append(problem(path, "agent.heartbeat_interval", _("must be at least 1s"), _('e.g. "60s"')))
        changes: dict[str, Any] = {}
        if not agent.terminal_id:
            changes["terminal_id"] = socket.gethostname()
        if state_dir_override:
            changes["state_dir"] = state_dir_override
        if changes:
            import dataclasses

            sections["agent"] = dataclasses.replace(agent, **changes)
    sched = sections["schedule"]
    if isinstance(sched, ScheduleSection) and not sched.status_poll >= MIN_POLL:  # (NaN is not)
        problems.append(problem(path, "schedule.status_poll", _("must be at least 200ms"),
                                _("e.g. {example}").format(example='"10s"')))
    upstream = sections["upstream"]
    if isinstance(upstream, UpstreamSection) and upstream.url:
        _check_upstream(upstream, path, problems)
    devices = _devices(raw.get("device", []), path, problems)
    if problems:
        raise ConfigError(problems)
    return Config(path=path, devices=devices, **sections)  # type: ignore[arg-type]


def _check_upstream(up: UpstreamSection, path: str, problems: list[str]) -> None:
    scheme = up.url.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        problems.append(problem(path, "upstream.url", _("'{value}' is not an http(s) URL").format(value=up.url),
                                _("write https://host/path")))
    elif scheme == "http" and not up.allow_insecure_http:
        problems.append(problem(path, "upstream.url", _("plain http sends reports unencrypted"),
                                _("use https, or set allow_insecure_http = true on a lab network")))
    if up.spool_max_mb <= 0:
        problems.append(problem(path, "upstream.spool_max_mb", _("must be positive"),
                                _("e.g. {example}").format(example=16)))


def _devices(raw: Any, path: str, problems: list[str]) -> list[DeviceConfig]:
    if not isinstance(raw, list):
        problems.append(problem(path, "device", _("devices are written as [[device]] tables"),
                                _("use [[device]], not [device]")))
        return []
    out: list[DeviceConfig] = []
    seen: set[str] = set()
    for i, dev in enumerate(raw):
        where = f"device[{i}]"
        if not isinstance(dev, dict):
            problems.append(problem(path, where, _("expected a [[device]] table")))
            continue
        name = dev.get("name")
        if isinstance(name, str) and name:
            where = f"device[{i}] ({name})"
        n_before = len(problems)
        for key in dev:
            if key not in _DEVICE_KEYS:
                problems.append(problem(path, f"{where}.{key}", _("unknown key"), did_you_mean(key, _DEVICE_KEYS)))
        if not isinstance(name, str) or not name.strip():
            problems.append(problem(path, f"{where}.name", _("every device needs a name"), _('add name = "receipt"')))
        elif name in seen:
            problems.append(problem(path, f"{where}.name", _("duplicate device name '{name}'").format(name=name),
                                    _("give each [[device]] its own name")))
        else:
            seen.add(name)
        driver_name = dev.get("driver")
        drivers = available_drivers()
        cls = None
        if not isinstance(driver_name, str) or not driver_name:
            problems.append(problem(path, f"{where}.driver", _("every device needs a driver"),
                                    _("valid: {choices}").format(choices=", ".join(sorted(drivers)))))
        elif driver_name not in drivers:
            problems.append(problem(path, f"{where}.driver", _("unknown driver '{name}'").format(name=driver_name),
                                    did_you_mean(driver_name, drivers)))
        else:
            try:
                cls = load_driver(driver_name)
            except Exception as e:  # a broken installed driver is a config-time error too
                problems.append(problem(path, f"{where}.driver",
                                        _("driver '{name}' failed to load: {error}").format(name=driver_name, error=e),
                                        _("reinstall posagent or remove this device")))
        url = None
        raw_url = dev.get("url")
        if raw_url is None:
            if cls is not None and cls.url_required:
                problems.append(problem(path, f"{where}.url", _("this driver needs a device URL"),
                                        _("e.g. url = \"{example}\"").format(example=cls.url_example)))
        elif not isinstance(raw_url, str):
            problems.append(problem(path, f"{where}.url", _("expected a string"), _('e.g. "serial:///dev/ttyS0"')))
        else:
            try:
                url = parse_url(raw_url)
            except ValueError as e:
                problems.append(problem(path, f"{where}.url", str(e)))
            if url is not None and cls is not None and not cls.schemes:
                problems.append(problem(path, f"{where}.url", _("driver '{name}' takes no URL").format(
                    name=driver_name), _("remove the url line")))
            elif url is not None and cls is not None and url.scheme not in cls.schemes:
                problems.append(problem(path, f"{where}.url", _("driver '{name}' cannot use {scheme}: URLs").format(
                    name=driver_name, scheme=url.scheme), _("use {choices}").format(choices=", ".join(cls.schemes))))
            elif url is not None and cls is not None and url.scheme == "sim" \
                    and url.host != (cls.sim_family or cls.name):
                family = cls.sim_family or cls.name
                what = _("sim://{family} is not a simulated {driver} device").format(
                    family=url.host, driver=driver_name)
                problems.append(problem(path, f"{where}.url", what, _("use sim://{right}").format(right=family)))
        options = None
        if cls is not None:
            options = build(cls.Options, dev.get("options"), path, f"{where}.options", problems)
        timeout = None
        if "timeout" in dev:
            try:
                timeout = parse_duration(dev["timeout"])
            except ValueError as e:
                problems.append(problem(path, f"{where}.timeout", str(e)))
        enabled = dev.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(problem(path, f"{where}.enabled", _("expected true or false")))
        sharing = parse_sharing(dev, cls.shares, path, where, problems) if cls is not None else Sharing()
        if len(problems) == n_before and isinstance(name, str) and isinstance(driver_name, str):
            out.append(DeviceConfig(name=name, driver=driver_name, url=url, options=options,
                                    timeout=timeout, enabled=bool(enabled), sharing=sharing))
    return out
