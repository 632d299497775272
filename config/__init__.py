"""Configuration: TOML loading, validation into typed objects, device URLs."""

from posagent.config.errors import ConfigError
from posagent.config.loader import DEFAULT_PATH, load_config, resolve_path, sim_config_path
from posagent.config.model import Config, DeviceConfig
from posagent.config.urls import DeviceURL, parse_url
from posagent.core.values import Duration, parse_duration

__all__ = [
    "DEFAULT_PATH",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "DeviceURL",
    "Duration",
    "load_config",
    "parse_duration",
    "parse_url",
    "resolve_path",
    "sim_config_path",
]
