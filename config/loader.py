"""Load and validate the agent's TOML config.

Search order: ``--config``, ``$POSAGENT_CONFIG``, ``/etc/posagent/posagent.toml``.
Every problem becomes one line naming the file, the key and the fix (ConfigError);
nothing here raises anything else for bad input: not a FIFO or a device given as the
file (refused before it is opened, and it is opened non-blocking), not a file of
gigabytes, not arrays nested thousands deep or integers of hundreds of digits.

Limits (the fields' ranges are in config/model.py, next to the fields):

    config file      a regular file of at most MAX_CONFIG_BYTES (1 MiB)
    [[device]]       at most MAX_DEVICES (64) devices
    device name      1 to MAX_NAME (64) characters, no control or format character
    terminal_id      at most 128 characters, likewise
    URLs             at most 2048 characters (config/urls.py MAX_URL)
    [upstream] url   no user or password in it: the token goes in token_file
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import tomllib
import urllib.parse
from importlib import resources
from typing import Any

from posagent.config.calendar import country_supported, ics_days
from posagent.config.errors import ConfigError, did_you_mean, problem
from posagent.config.model import (
    COMMAND_ACTIONS,
    AgentSection,
    CommandsSection,
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
from posagent.config.urls import parse_url, redact_url, split_userinfo
from posagent.core.i18n import _
from posagent.core.registry import available_drivers, load_driver
from posagent.core.values import Range, control_char, parse_duration

DEFAULT_PATH = "/etc/posagent/posagent.toml"
_SECTIONS = {"agent": AgentSection, "schedule": ScheduleSection, "upstream": UpstreamSection,
             "export": ExportSection, "history": HistorySection, "commands": CommandsSection}
_DEVICE_KEYS = ("name", "driver", "url", "options", "timeout", "enabled", *SHARE_KEYS)
LANGUAGES = ("auto", "en", "zh-CN")
#: The largest config file read (bytes); the example is about 3 KiB.
MAX_CONFIG_BYTES = 1 << 20
#: The most [[device]] tables: each device is a thread and open files in every round.
MAX_DEVICES = 64
#: The longest device name (characters).
MAX_NAME = 64
#: A device's ``timeout``: more than 10 ms, at most an hour (like agent.check_timeout).
DEVICE_TIMEOUT = Range(0.01, 3600.0)
#: The most problem lines one ConfigError lists (a file of 10,000 unknown keys gives these and a count).
MAX_PROBLEMS = 50
#: What hostile input may raise from deep inside tomllib or the converters.
_RESOURCE_ERRORS = (RecursionError, OverflowError, MemoryError)


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
    data = _read(path)
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([problem(path, "", _("file is not UTF-8 text"), _("save it as UTF-8"))]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([problem(path, "", _("TOML syntax error: {error}").format(error=e),
                                   _("fix the line named (strings need quotes, tables [name])"))]) from None
    except (*_RESOURCE_ERRORS, ValueError):  # ValueError: an integer of more than 4300 digits
        raise ConfigError([_too_complex(path)]) from None
    return validate(raw, path, state_dir_override=state_dir_override)


def _too_complex(path: str) -> str:
    return problem(path, "", _("the file nests too deep or holds a number too large to read"),
                   _("write plain tables and values: arrays nested a few levels at most, numbers of a few digits"))


def _read(path: str) -> bytes:
    """The file's bytes: a regular file of at most MAX_CONFIG_BYTES, checked before it is
    opened (a FIFO would block an open) and opened non-blocking (it may have changed since)."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([problem(path, "", _("is not a regular file (a FIFO, socket or device)"),
                                       _("pass a .toml file"))])
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError([_too_big(path)])
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError([problem(path, "", _("is not a regular file (a FIFO, socket or device)"),
                                           _("pass a .toml file"))])
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_CONFIG_BYTES:  # each read returns at least a byte, or b"" at the end
                chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except (FileNotFoundError, NotADirectoryError):
        fix = _("create it from the example (posagent config example > FILE) or pass --config FILE")
        raise ConfigError([problem(path, "", _("config file not found"), fix)]) from None
    except PermissionError:
        raise ConfigError([problem(path, "", _("config file is not readable by this user"),
                                   _("run as the posagent user or fix the file's permissions"))]) from None
    except IsADirectoryError:
        raise ConfigError([problem(path, "", _("is a directory, not a config file"), _("pass a .toml file"))]) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ConfigError([problem(path, "", _("config file cannot be read: {error}").format(
            error=getattr(e, "strerror", None) or e), _("pass a .toml file"))]) from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([_too_big(path)])
    return b"".join(chunks)


def _too_big(path: str) -> str:
    return problem(path, "", _("the file is larger than {limit} KiB").format(limit=MAX_CONFIG_BYTES // 1024),
                   _("a config is a few KiB: pass the right file"))


def validate(raw: dict[str, Any], path: str, *, state_dir_override: str | None = None) -> Config:
    """Validate a parsed TOML document into a Config. Raises ConfigError only."""
    try:
        return _validate(raw, path, state_dir_override)
    except _RESOURCE_ERRORS:
        raise ConfigError([_too_complex(path)]) from None


def _validate(raw: dict[str, Any], path: str, state_dir_override: str | None) -> Config:
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError([problem(path, "", _got_table(raw))])
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
        changes: dict[str, Any] = {}
        if not agent.terminal_id:
            changes["terminal_id"] = socket.gethostname()
        if state_dir_override:
            changes["state_dir"] = state_dir_override
        if changes:
            sections["agent"] = dataclasses.replace(agent, **changes)
    sched = sections["schedule"]
    if isinstance(sched, ScheduleSection):
        _check_calendar(sched, path, problems)
    upstream = sections["upstream"]
    if isinstance(upstream, UpstreamSection) and upstream.all_urls():
        _check_upstream(upstream, path, problems)
    cmds = sections["commands"]
    if isinstance(cmds, CommandsSection):
        _check_commands(cmds, path, problems)
    devices = _devices(raw.get("device", []), path, problems)
    if problems:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS],
                        problem(path, "", _("{count} more problems not shown").format(count=more),
                                _("fix the ones above and check again"))]
        raise ConfigError(problems)
    return Config(path=path, devices=devices, **sections)  # type: ignore[arg-type]


def _got_table(raw: Any) -> str:
    return _("expected a TOML document (tables of keys), got {value}").format(value=type(raw).__name__)


def _check_calendar(sched: ScheduleSection, path: str, problems: list[str]) -> None:
    """blackout_country must be a country the holidays package knows; blackout_ics an
    absolute path to a readable iCalendar file."""
    if sched.blackout_country and not country_supported(sched.blackout_country):
        problems.append(problem(path, "schedule.blackout_country",
                                _("'{value}' is not a country code the holidays package knows").format(
                                    value=sched.blackout_country), _('e.g. "CN"')))
    if sched.blackout_ics:
        if not sched.blackout_ics.startswith("/"):
            problems.append(problem(path, "schedule.blackout_ics", _("expected an absolute path"),
                                    _('e.g. "/etc/posagent/blackout.ics"')))
            return
        try:
            ics_days(sched.blackout_ics)
        except ValueError as e:
            problems.append(problem(path, "schedule.blackout_ics", str(e)))


_HTTP = ("http", "https")
_MQTT = ("mqtt", "mqtts")


def _check_upstream(up: UpstreamSection, path: str, problems: list[str]) -> None:
    urls = up.all_urls()
    if len(urls) > 16:
        problems.append(problem(path, "upstream.urls", _("{count} URLs; at most {limit} are supported").format(
            count=len(urls), limit=16), _("list the collectors or brokers of one site")))
        return
    kinds = {("mqtt" if u.split(":", 1)[0].lower() in _MQTT else "http") for u in urls}
    if len(kinds) > 1:
        problems.append(problem(path, "upstream.urls", _("mixes http(s) and mqtt(s) URLs"),
                                _("list collectors of one kind: all https:// or all mqtts://")))
        return
    for u in urls:
        _check_one_url(u, "upstream.url" if u == up.url else "upstream.urls", up, path, problems)
    if up.mqtt_version not in ("auto", "5", "3.1.1"):
        problems.append(problem(path, "upstream.mqtt_version", _("'{value}' is not an MQTT version").format(
            value=up.mqtt_version), _('write "auto", "5" or "3.1.1"')))
    if not up.prefix.strip("/") or any(c in up.prefix for c in "+#"):
        problems.append(problem(path, "upstream.prefix", _("a topic prefix is not empty and holds no + or #"),
                                _('e.g. "posagent"')))
    if bool(up.client_cert) != bool(up.client_key):
        problems.append(problem(path, "upstream.client_cert",
                                _("a client certificate needs its key, and a key its certificate"),
                                _("set both client_cert and client_key, or neither")))


def _check_one_url(url: str, key: str, up: UpstreamSection, path: str, problems: list[str]) -> None:
    scheme = url.split(":", 1)[0].lower()
    if split_userinfo(url)[0] is not None or "@" in urllib.parse.urlsplit(url).netloc:
        # httpx would send it as Basic auth instead of the bearer token, and it would show in logs
        problems.append(problem(path, key, _("the URL holds a user name or password"),
                                _("remove it from the URL and put credentials in token_file")))
    elif scheme not in _HTTP + _MQTT:
        problems.append(problem(path, key, _("'{value}' is not an http(s) or mqtt(s) URL").format(
            value=redact_url(url)), _("write https://host/path or mqtts://host:8883")))
    elif scheme in ("http", "mqtt") and not up.allow_insecure_http:
        problems.append(problem(path, key, _("plain http sends reports unencrypted"),
                                _("use https, or set allow_insecure_http = true on a lab network")))
    else:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            parts, port = None, 0
        if parts is None or port == 0:
            problems.append(problem(path, key, _("the port is not a number between 1 and 65535"),
                                    _("write https://host:port/path, or leave the port out")))
        elif not parts.hostname:
            problems.append(problem(path, key, _("the URL has no host name"),
                                    _("write https://host/path")))


def _check_commands(cmds: CommandsSection, path: str, problems: list[str]) -> None:
    for act in cmds.allow:
        if act not in COMMAND_ACTIONS:
            problems.append(problem(path, "commands.allow", _("'{value}' is not an action posagent knows").format(
                value=act), _("choose among {choices}").format(choices=", ".join(COMMAND_ACTIONS))))
    for key_path in cmds.public_keys:
        if not os.path.isabs(key_path):
            problems.append(problem(path, "commands.public_keys", _("expected an absolute path"),
                                    _('e.g. "/etc/posagent/fleet-command.pub"')))


def _devices(raw: Any, path: str, problems: list[str]) -> list[DeviceConfig]:
    if not isinstance(raw, list):
        problems.append(problem(path, "device", _("devices are written as [[device]] tables"),
                                _("use [[device]], not [device]")))
        return []
    if len(raw) > MAX_DEVICES:
        problems.append(problem(path, "device", _("{count} [[device]] tables; at most {limit} are supported").format(
            count=len(raw), limit=MAX_DEVICES), _("keep one [[device]] per device of this terminal")))
        return []
    out: list[DeviceConfig] = []
    seen: set[str] = set()
    for i, dev in enumerate(raw):
        where = f"device[{i}]"
        if not isinstance(dev, dict):
            problems.append(problem(path, where, _("expected a [[device]] table")))
            continue
        name = dev.get("name")
        name_problem = _name_problem(name) if isinstance(name, str) and name.strip() else None
        if isinstance(name, str) and name.strip() and name_problem is None:
            where = f"device[{i}] ({name})"
        n_before = len(problems)
        for key in dev:
            if key not in _DEVICE_KEYS:
                problems.append(problem(path, f"{where}.{key}", _("unknown key"), did_you_mean(key, _DEVICE_KEYS)))
        if not isinstance(name, str) or not name.strip():
            problems.append(problem(path, f"{where}.name", _("every device needs a name"), _('add name = "receipt"')))
        elif name_problem is not None:
            problems.append(problem(path, f"{where}.name", *name_problem))
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
            else:
                if not DEVICE_TIMEOUT.contains(timeout):
                    problems.append(problem(path, f"{where}.timeout", DEVICE_TIMEOUT.describe(True),
                                            _("e.g. {example}").format(example='"5s"')))
                    timeout = None
        enabled = dev.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(problem(path, f"{where}.enabled", _("expected true or false")))
        sharing = parse_sharing(dev, cls.shares, path, where, problems) if cls is not None else Sharing()
        if len(problems) == n_before and isinstance(name, str) and isinstance(driver_name, str):
            out.append(DeviceConfig(name=name, driver=driver_name, url=url, options=options,
                                    timeout=timeout, enabled=bool(enabled), sharing=sharing))
    return out


def _name_problem(name: str) -> tuple[str, str] | None:
    """(what, fix) when ``name`` is no usable device name (it is printed in tables, logs and
    the heartbeat): at most MAX_NAME characters, no control or format character. None when
    it is fine."""
    if len(name) > MAX_NAME:
        return (_("a name of {length} characters; at most {limit} are accepted").format(
            length=len(name), limit=MAX_NAME), _('use a short name like "receipt"'))
    bad = control_char(name)
    if bad is not None:
        return (_("the name holds the control character {char}").format(char=bad),
                _('use letters, digits and punctuation, e.g. "receipt"'))
    return None
