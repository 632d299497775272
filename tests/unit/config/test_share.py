"""The share keys of a [[device]] table (config/sharing.py), through the real loader."""

from __future__ import annotations

from typing import Any

import pytest

from posagent.config.errors import ConfigError
from posagent.config.loader import validate
from posagent.config.sharing import Sharing, parse_listen


def load(**device: Any) -> Sharing:
    dev = {"name": "receipt", "driver": "escpos", "url": "serial:///dev/ttyS0", **device}
    return validate({"device": [dev]}, "test.toml").devices[0].sharing


def problems(**device: Any) -> str:
    with pytest.raises(ConfigError) as e:
        load(**device)
    return str(e.value)


@pytest.mark.parametrize(("driver", "url", "mode"), [
    ("escpos", "serial:///dev/ttyS0", "guest"),
    ("card-reader", "serial:///dev/ttyS1", "guest"),
    ("megatec", "serial:///dev/ttyS2", "owner"),
    ("nut", "nut://127.0.0.1/ups", "owner"),
])
def test_defaults_follow_the_driver(driver: str, url: str, mode: str) -> None:
    cfg = validate({"device": [{"name": "d", "driver": driver, "url": url}]}, "test.toml")
    assert cfg.devices[0].share == mode
    assert cfg.devices[0].sharing.stale_after == 600.0


def test_a_proxy_with_its_keys() -> None:
    s = load(share="proxy", proxy_listen="tcp://127.0.0.1:9100", proxy_pty="/run/posagent/receipt",
             job_idle="500ms", job_timeout="2m", stale_after="1m")
    assert s == Sharing("proxy", ("127.0.0.1", 9100), "/run/posagent/receipt", 60.0, 0.5, 120.0)
    assert s.holds


@pytest.mark.parametrize(("device", "says"), [
    ({"share": "borrow"}, 'expected one of "guest", "proxy", "owner"'),
    ({"share": "proxy"}, "a proxy needs somewhere to listen"),
    ({"proxy_listen": "tcp://127.0.0.1:9100"}, 'used only with share = "proxy"'),
    ({"share": "proxy", "proxy_listen": "tcp://printer.example:9100"}, "is not an IP address"),
    ({"share": "proxy", "proxy_listen": "tcp://127.0.0.1:99999"}, "out of range"),
    ({"share": "proxy", "proxy_pty": "receipt"}, "expected an absolute path"),
    ({"stale_after": "0s"}, "must be more than 0"),
    ({"stale_after": float("nan")}, "must be more than 0"),
    ({"stale_after": float("inf")}, "must be more than 0"),
    ({"stale_after": "forever"}, "is not a duration"),
    ({"shaer": "guest"}, "did you mean"),
])
def test_bad_share_keys_are_named(device: dict[str, Any], says: str) -> None:
    assert says in problems(**device)


def test_a_driver_refuses_a_mode_it_cannot_be_shared_as() -> None:
    with pytest.raises(ConfigError) as e:
        validate({"device": [{"name": "u", "driver": "megatec", "url": "serial:///dev/ttyS0",
                              "share": "proxy"}]}, "test.toml")
    assert 'cannot be shared as "proxy"' in str(e.value) and '"owner", "guest"' in str(e.value)


@pytest.mark.parametrize(("text", "want"), [
    ("tcp://127.0.0.1:9100", ("127.0.0.1", 9100)),
    (":9100", ("127.0.0.1", 9100)),
    ("localhost:9100", ("127.0.0.1", 9100)),
    ("tcp://[::1]:9100", ("::1", 9100)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
])
def test_listen_forms(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want
