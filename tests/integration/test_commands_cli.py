"""``posagent commands verify TOKEN``, run as the real command: what the terminal would do
with a token (exit 0 run, 65 refused, 64 usage, 78 a key file that cannot be used), in
English and Chinese, as text or JSON, with no side effect: nothing runs, the jti is not
recorded (the daemon still accepts the token afterwards), the state dir is not even created,
and the token itself is never printed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from posagent.fleet.replay import FILE_NAME, ReplayCache
from tests.conftest import run_cli
from tests.integration.fleet_keys import FleetKey, tamper

TERMINAL = "SIM-CMD"
EX_DATAERR, EX_USAGE, EX_CONFIG = 65, 64, 78


@pytest.fixture
def setup(tmp_path: Path) -> tuple[FleetKey, Path, Path]:
    fleet = FleetKey("fleet-1")
    key = fleet.write_public(tmp_path / "keys")
    state = tmp_path / "state"
    cfg = tmp_path / "posagent.toml"
    cfg.write_text(f'[agent]\nterminal_id = "{TERMINAL}"\nstate_dir = "{state}"\n\n'
                   f'[commands]\npublic_keys = ["{key}"]\n', encoding="utf-8")
    return fleet, cfg, state


def verify(cfg: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = run_cli("commands", "verify", *args, "--config", str(cfg), input=stdin)
    return proc.returncode, proc.stdout, proc.stderr


def test_a_valid_token_would_run_and_nothing_is_recorded(setup: tuple[FleetKey, Path, Path]) -> None:
    fleet, cfg, state = setup
    token = fleet.sign("selftest", TERMINAL, args={"level": "internal"}, jti="cli-1")
    for _ in range(2):  # asked twice: still not "replayed"
        code, out, err = verify(cfg, token, "--lang", "en")
        assert code == 0, err
        assert "would run it now" in out and "cli-1: selftest" in out and "fleet-1.pem" in out
        assert token not in out + err and token.split(".")[2] not in out + err
    assert not state.exists()  # no replay cache, no outbox: no side effect at all
    code, out, _err = verify(cfg, "-", "--json", stdin=token + "\n")
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "run" and doc["reason"] is None and doc["recorded"] is False
    assert doc["claims"]["jti"] == "cli-1" and doc["kid"] == "fleet-1" and doc["allowed_action"] is True


@pytest.mark.parametrize(("make", "reason"), [
    (lambda f: tamper(f.sign("selftest", TERMINAL)), "bad_signature"),
    (lambda f: f.sign("selftest", TERMINAL, iat=time.time() - 3600, lifetime=600), "expired"),
    (lambda f: f.sign("selftest", "SIM-OTHER"), "wrong_audience"),
    (lambda f: f.sign("diagnostics", TERMINAL), "not_allowed"),
    (lambda f: f.sign("selftest", TERMINAL, args={"level": "interactive"}), "bad_args"),
    (lambda f: "not.a.token", "malformed"),
    (lambda f: FleetKey("other").sign("heartbeat", TERMINAL), "unknown_key"),
])
def test_refusals_exit_65_with_the_reason(setup: tuple[FleetKey, Path, Path], make: Callable[[FleetKey], str],
                                          reason: str) -> None:
    fleet, cfg, state = setup
    code, out, err = verify(cfg, make(fleet), "--json")
    doc = json.loads(out)
    assert code == EX_DATAERR, err
    assert doc["verdict"] == "refused" and doc["reason"] == reason and doc["reason_text"]
    assert not state.exists()


def test_a_recorded_jti_is_reported_replayed(setup: tuple[FleetKey, Path, Path]) -> None:
    fleet, cfg, state = setup
    token = fleet.sign("heartbeat", TERMINAL, jti="seen-1")
    assert ReplayCache(str(state)).add("seen-1", time.time() + 600)  # what the daemon recorded
    before = (state / FILE_NAME).read_bytes()
    code, out, _err = verify(cfg, token, "--lang", "en")
    assert code == EX_DATAERR and "refused: replayed" in out
    assert (state / FILE_NAME).read_bytes() == before


def test_chinese_output(setup: tuple[FleetKey, Path, Path]) -> None:
    fleet, cfg, _state = setup
    code, out, _err = verify(cfg, fleet.sign("selftest", "SIM-OTHER"), "--lang", "zh-CN")
    assert code == EX_DATAERR
    assert "拒绝" in out and "wrong_audience" in out and "另一台终端" in out
    code, out, _err = verify(cfg, fleet.sign("heartbeat", TERMINAL), "--lang", "zh-CN")
    assert code == 0 and "会立即执行" in out


def test_usage_and_config_errors(setup: tuple[FleetKey, Path, Path], tmp_path: Path) -> None:
    fleet, cfg, _state = setup
    code, _out, err = verify(cfg, "-", stdin="")
    assert code == EX_USAGE and "empty" in err and "Traceback" not in err
    code, _out, err = run_cli("commands", "--config", str(cfg)).returncode, "", ""
    assert code == EX_USAGE
    bad = tmp_path / "bad.toml"
    text = cfg.read_text().replace(str(tmp_path / "keys" / "fleet-1.pem"), str(tmp_path / "keys" / "gone.pem"))
    bad.write_text(text)
    code, out, err = verify(bad, fleet.sign("heartbeat", TERMINAL))
    assert code == EX_CONFIG and out == ""
    assert "commands.public_keys" in err and "gone.pem" in err and "cannot be read" in err
    assert "Traceback" not in err
    notpem = tmp_path / "keys" / "notpem.pem"
    notpem.write_text("not a key\n")
    bad.write_text(cfg.read_text().replace(str(tmp_path / "keys" / "fleet-1.pem"), str(notpem)))
    code, _out, err = verify(bad, fleet.sign("heartbeat", TERMINAL))
    assert code == EX_CONFIG and "not a PEM public key" in err


def test_config_check_loads_the_command_keys(setup: tuple[FleetKey, Path, Path], tmp_path: Path) -> None:
    """``config check`` runs the daemon's key-file check: a missing or non-PEM key is exit 78
    there, not first in the journal; the good key passes."""
    _fleet, cfg, _state = setup
    ok = run_cli("config", "check", str(cfg))
    assert ok.returncode == 0, ok.stderr
    notpem = tmp_path / "keys" / "notpem.pem"
    notpem.write_text("not a key\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace(str(tmp_path / "keys" / "fleet-1.pem"), str(notpem)))
    out = run_cli("config", "check", str(bad))
    assert out.returncode == EX_CONFIG and "commands.public_keys" in out.stderr and "notpem.pem" in out.stderr
    assert "Traceback" not in out.stderr
