"""Remote command verification (fleet/commands.py), the replay cache (fleet/replay.py) and
the diagnostics bundle (fleet/diagnostics.py): every refusal reason, acceptance, key files,
replay across a restart, secrets kept out of the bundle, and the schemas of both new kinds."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from jsonschema import Draft202012Validator, FormatChecker

from posagent.config.loader import validate
from posagent.config.model import Config
from posagent.core.base import Result
from posagent.fleet import diagnostics, messages
from posagent.fleet.commands import MAX_LIFETIME, REASONS, SKEW, KeyFileError, Verifier, load_key, verify
from posagent.fleet.outbox_db import empty_stats
from posagent.fleet.replay import FILE_NAME, ReplayCache
from tests.integration.fleet_keys import FleetKey, tamper

T0 = 1_800_000_000.0  # the test's "now" (epoch seconds)
TERMINAL = "SH-0042"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_config(tmp_path: Path, keys: list[Path], *, allow: list[str] | None = None,
                schedule: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Config:
    raw: dict[str, Any] = {
        "agent": {"terminal_id": TERMINAL, "state_dir": str(tmp_path / "state")},
        "commands": {"public_keys": [str(k) for k in keys], **({"allow": allow} if allow is not None else {})},
        "schedule": schedule or {},
        **(extra or {}),
    }
    return validate(raw, str(tmp_path / "posagent.toml"))


@pytest.fixture
def fleet() -> FleetKey:
    return FleetKey("fleet-1")


@pytest.fixture
def config(tmp_path: Path, fleet: FleetKey) -> Config:
    return make_config(tmp_path, [fleet.write_public(tmp_path / "keys")],
                       allow=["heartbeat", "selftest", "slip", "diagnostics"])


def verifier(config: Config, clock: Clock | None = None, wall_hour: int = 3) -> Verifier:
    c = clock or Clock()
    # the quiet window is judged on a wall clock of its own: 03:00 (outside business hours)
    wall = dt.datetime(2027, 3, 3, wall_hour, 0).astimezone()
    return Verifier(config, clock=c, wall=lambda: wall)


def sign(fleet: FleetKey, **kw: Any) -> str:
    kw.setdefault("aud", TERMINAL)
    kw.setdefault("iat", T0)
    return fleet.sign(**kw)


# -- acceptance ------------------------------------------------------------------------------
def test_a_valid_command_is_accepted_with_its_key_and_claims(config: Config, fleet: FleetKey) -> None:
    v = verifier(config).check(sign(fleet, act="selftest", args={"level": "internal"}, jti="c-1"))
    assert v.accepted and v.reason is None
    assert (v.jti, v.act, v.args) == ("c-1", "selftest", {"level": "internal"})
    assert v.key is not None and v.key.endswith("fleet-1.pem") and v.kid == "fleet-1"
    assert set(v.claims) == {"jti", "aud", "iat", "exp", "act", "args"}


def test_without_kid_each_key_is_tried_and_rotation_works(tmp_path: Path) -> None:
    old, new = FleetKey("old"), FleetKey("new")
    config = make_config(tmp_path, [old.write_public(tmp_path / "k"), new.write_public(tmp_path / "k")])
    v = verifier(config).check(sign(new, act="heartbeat", kid=None))
    assert v.accepted and v.key is not None and v.key.endswith("new.pem")


def test_kid_may_be_the_jwk_thumbprint(config: Config, fleet: FleetKey) -> None:
    ver = verifier(config)
    v = ver.check(sign(fleet, act="heartbeat", kid=ver.keys[0].thumbprint))
    assert v.accepted


def test_clock_skew_of_two_minutes_is_allowed(config: Config, fleet: FleetKey) -> None:
    ver = verifier(config, Clock(T0 - SKEW + 5))  # the terminal's clock is behind
    assert ver.check(sign(fleet, act="heartbeat")).accepted
    ver = verifier(config, Clock(T0 + 300 + SKEW - 5))  # exp passed, within the skew
    assert ver.check(sign(fleet, act="heartbeat", lifetime=300)).accepted


def test_external_selftest_and_slip_run_in_the_quiet_window(config: Config, fleet: FleetKey) -> None:
    ver = verifier(config, wall_hour=3)
    assert ver.check(sign(fleet, act="selftest", args={"level": "external"})).accepted
    assert ver.check(sign(fleet, act="slip")).accepted


# -- refusals: one test per reason -------------------------------------------------------------
def refusal(config: Config, token: str, clock: Clock | None = None, wall_hour: int = 3) -> str | None:
    return verifier(config, clock, wall_hour).check(token).reason


def test_malformed_tokens(config: Config, fleet: FleetKey) -> None:
    for token in ("", "not a token", "a.b", "a.b.c", "x" * 9000, "eyJhbGciOiJFZERTQSJ9.@@@.sig",
                  fleet.sign(aud=TERMINAL).replace(".", "..", 1)):
        assert refusal(config, token) == "malformed", token[:30]


@pytest.mark.parametrize(("change", "why"), [
    ({"drop": ("jti",)}, "no jti"),
    ({"jti": "x" * 129}, "jti too long"),
    ({"jti": "line\nbreak"}, "jti not printable"),
    ({"extra": {"exp": "soon"}}, "exp not a number"),
    ({"drop": ("iat",)}, "no iat"),
    ({"extra": {"iat": True}}, "iat a boolean"),
    ({"drop": ("act",)}, "no act"),
    ({"extra": {"args": ["level"]}}, "args not an object"),
])
def test_malformed_claims(config: Config, fleet: FleetKey, change: dict[str, Any], why: str) -> None:
    assert refusal(config, sign(fleet, **change)) == "malformed", why


def test_claims_that_are_not_an_object_are_malformed(config: Config, fleet: FleetKey) -> None:
    token = jwt.api_jws.encode(b"[1, 2]", fleet.private, algorithm="EdDSA")
    assert refusal(config, token) == "malformed"


def test_bad_signature(config: Config, fleet: FleetKey) -> None:
    assert refusal(config, tamper(sign(fleet))) == "bad_signature"
    stranger = FleetKey("fleet-1")  # another key claiming the same kid: a forgery
    assert refusal(config, sign(stranger)) == "bad_signature"
    assert refusal(config, sign(stranger, kid=None)) == "bad_signature"


def test_other_algorithms_are_refused(config: Config, fleet: FleetKey) -> None:
    claims = {"jti": "h", "aud": TERMINAL, "iat": int(T0), "exp": int(T0 + 60), "act": "heartbeat", "args": {}}
    hs = jwt.encode(claims, "a-shared-secret-of-enough-length-for-hs256", algorithm="HS256")
    assert refusal(config, hs) == "bad_signature"
    none = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    assert refusal(config, none) == "bad_signature"
    ec = generate_private_key(SECP256R1())
    assert refusal(config, jwt.encode(claims, ec, algorithm="ES256")) == "bad_signature"


def test_unknown_key(config: Config, fleet: FleetKey) -> None:
    assert refusal(config, sign(fleet, kid="fleet-9")) == "unknown_key"


def test_no_keys(tmp_path: Path, fleet: FleetKey) -> None:
    assert refusal(make_config(tmp_path, []), sign(fleet)) == "no_keys"


def test_expired_and_not_yet_valid(config: Config, fleet: FleetKey) -> None:
    assert refusal(config, sign(fleet, lifetime=60), Clock(T0 + 60 + SKEW + 1)) == "expired"
    assert refusal(config, sign(fleet), Clock(T0 - SKEW - 1)) == "not_yet_valid"
    assert refusal(config, sign(fleet, extra={"nbf": int(T0 + 200)})) == "not_yet_valid"


def test_lifetime_too_long(config: Config, fleet: FleetKey) -> None:
    assert refusal(config, sign(fleet, lifetime=MAX_LIFETIME + 1)) == "lifetime_too_long"
    assert refusal(config, sign(fleet, lifetime=MAX_LIFETIME)) is None


def test_wrong_audience(config: Config, fleet: FleetKey) -> None:
    assert refusal(config, sign(fleet, aud="SH-0043")) == "wrong_audience"
    assert refusal(config, sign(fleet, extra={"aud": [TERMINAL, "SH-0043"]})) == "wrong_audience"
    assert refusal(config, sign(fleet, drop=("aud",))) == "wrong_audience"


def test_not_allowed(tmp_path: Path, fleet: FleetKey) -> None:
    config = make_config(tmp_path, [fleet.write_public(tmp_path / "k")])  # default: heartbeat, selftest
    assert refusal(config, sign(fleet, act="diagnostics")) == "not_allowed"
    assert refusal(config, sign(fleet, act="slip")) == "not_allowed"
    assert refusal(config, sign(fleet, act="shell", args={"cmd": "reboot"})) == "not_allowed"


@pytest.mark.parametrize("args", [{"level": "interactive"}, {"level": 1}, {"path": "/etc/passwd"},
                                  {"level": "internal", "then": "more"}])
def test_bad_args(config: Config, fleet: FleetKey, args: dict[str, Any]) -> None:
    assert refusal(config, sign(fleet, act="selftest", args=args)) == "bad_args"


def test_heartbeat_takes_no_args(config: Config, fleet: FleetKey) -> None:
    assert refusal(config, sign(fleet, act="heartbeat", args={"now": True})) == "bad_args"


def test_printing_outside_the_quiet_window(tmp_path: Path, fleet: FleetKey) -> None:
    config = make_config(tmp_path, [fleet.write_public(tmp_path / "k")], allow=["selftest", "slip"],
                         schedule={"business_hours": "08:00-22:00"})
    v = verifier(config, wall_hour=12).check(sign(fleet, act="selftest", args={"level": "external"}))
    assert v.reason == "outside_quiet_window" and "business hours" in v.detail
    assert refusal(config, sign(fleet, act="slip"), wall_hour=12) == "outside_quiet_window"
    assert refusal(config, sign(fleet, act="selftest", args={"level": "internal"}), wall_hour=12) is None
    assert refusal(config, sign(fleet, act="slip"), wall_hour=23) is None


def test_every_reason_has_a_text() -> None:
    assert all(REASONS.values())


# -- replay ------------------------------------------------------------------------------------
def test_replay_is_refused_and_survives_a_restart(config: Config, fleet: FleetKey) -> None:
    token = sign(fleet, act="heartbeat", jti="once")
    clock = Clock()
    assert verifier(config, clock).check(token).accepted
    assert verifier(config, clock).check(token).reason == "replayed"  # a new Verifier reads the file
    path = Path(config.agent.state_dir) / FILE_NAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["seen"].keys() == {"once"}


def test_a_refusal_after_the_signature_check_is_recorded_too(config: Config, fleet: FleetKey) -> None:
    token = sign(fleet, act="diagnostics", args={"bad": 1}, jti="refused-once")
    assert verifier(config).check(token).reason == "bad_args"
    assert ReplayCache(config.agent.state_dir, clock=Clock()).seen("refused-once")
    forged = tamper(sign(fleet, jti="forged"))
    assert verifier(config).check(forged).reason == "bad_signature"
    assert not ReplayCache(config.agent.state_dir, clock=Clock()).seen("forged")


def test_verify_only_records_nothing(config: Config, fleet: FleetKey) -> None:
    token = sign(fleet, act="heartbeat", jti="ask")
    assert verifier(config).check(token, record=False).accepted
    assert verifier(config).check(token, record=False).accepted
    assert not (Path(config.agent.state_dir) / FILE_NAME).exists()
    assert verifier(config).check(token).accepted


def test_entries_are_forgotten_after_exp_plus_skew_and_bounded(tmp_path: Path) -> None:
    clock = Clock()
    cache = ReplayCache(str(tmp_path), clock=clock, max_entries=3)
    for i in range(3):
        assert cache.add(f"j{i}", T0 + 100 + i)
    assert cache.full() and not cache.add("j3", T0 + 100)  # full of live entries: refused, none forgotten
    assert all(cache.seen(f"j{i}") for i in range(3))
    clock.t = T0 + 101.5  # j0 and j1 expired
    assert cache.add("j3", T0 + 500) and len(cache) == 2
    assert not cache.seen("j0") and cache.seen("j2") and cache.seen("j3")
    assert set(ReplayCache(str(tmp_path), clock=clock).seen(j) for j in ("j2", "j3")) == {True}


def test_a_full_cache_refuses_new_commands(config: Config, fleet: FleetKey) -> None:
    clock = Clock()
    ver = Verifier(config, clock=clock, cache=ReplayCache(config.agent.state_dir, clock=clock, max_entries=1))
    assert ver.check(sign(fleet, act="heartbeat")).accepted
    assert ver.check(sign(fleet, act="heartbeat")).reason == "cache_full"


def test_an_unreadable_cache_starts_empty_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        cache = ReplayCache(str(tmp_path), clock=Clock())
    assert len(cache) == 0 and cache.unreadable == "JSONDecodeError"
    assert "unreadable" in caplog.text


# -- key files ---------------------------------------------------------------------------------
def test_key_files_that_cannot_be_used(tmp_path: Path, fleet: FleetKey) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(KeyFileError, match="cannot be read"):
        load_key(str(missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_key(str(garbage))
    ec = tmp_path / "ec.pem"
    ec.write_bytes(generate_private_key(SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_key(str(ec))
    private = tmp_path / "private.pem"
    private.write_bytes(fleet.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    with pytest.raises(KeyFileError, match="private key"):
        load_key(str(private))
    good = fleet.write_public(tmp_path / "k")
    config = make_config(tmp_path, [missing, good])
    ver = verifier(config)
    assert len(ver.keys) == 1 and [e.path for e in ver.key_problems] == [str(missing)]
    assert ver.check(sign(fleet, act="heartbeat")).accepted  # the usable key still works


def test_verify_never_raises_on_hostile_input(config: Config) -> None:
    keys = verifier(config).keys
    for token in ("..", "e30.e30.", "eyJhbGciOiJFZERTQSIsImtpZCI6MX0.e30.AAAA", "\x00.\x00.\x00",
                  "eyJhbGciOiJFZERTQSJ9." + "A" * 100 + ".AAAA"):
        assert verify(token, keys, TERMINAL, T0).reason in REASONS


# -- results and diagnostics -------------------------------------------------------------------
def schema_check(kind: str, message: dict[str, Any]) -> None:
    schema = messages.load_schema(kind)
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(message))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_command_result_validates(config: Config) -> None:
    for outcome, reason, result in (("refused", "bad_signature", None), ("done", None, {"status": "ok"}),
                                    ("failed", "error", None)):
        msg = messages.preview(messages.command_result(
            config, jti="c-1", act="selftest", outcome=outcome, reason=reason, detail="x", result=result,
            source="http", received_at=messages.now_rfc3339()), 7, empty_stats())
        schema_check("command_result", msg)
        assert msg["schema"] == "posagent.command_result/1" and msg["seq"] == 7


def test_diagnostics_bundle_has_no_secrets_and_validates(tmp_path: Path, fleet: FleetKey) -> None:
    token_file = tmp_path / "token"
    config = make_config(tmp_path, [fleet.write_public(tmp_path / "k")], allow=["diagnostics"], extra={
        "upstream": {"url": "https://fleet.example.com/api?key=s3cret", "token_file": str(token_file),
                     "password_file": str(tmp_path / "pw")},
        "device": [{"name": "ups", "driver": "nut", "url": "nut://monuser:secretpass@127.0.0.1:3493/ups"},
                   {"name": "acquirer", "driver": "host", "url": "sim://host"}],
    })
    ring = diagnostics.LogRing(10)
    logger = logging.getLogger("posagent.test.ring")
    logger.addHandler(ring)
    logger.propagate = False
    try:
        for i in range(15):
            logger.warning("line %d to https://u:hunter2@fleet.example.com/x?token=abc", i)
    finally:
        logger.removeHandler(ring)
    lines = ring.last(5)
    assert len(lines) == 5 and "line 14" in lines[-1]  # the ring is bounded: the last ones
    results = {"acquirer": ("host", Result.ok("HOST_OK", "reachable", measurements={"latency_ms": 3.0}))}
    bundle = diagnostics.bundle(config, log_lines=lines, log_source="memory",
                                state={"last_selftest": None, "counters": {}, "next_selftest_at": None,
                                       "commands": {"keys": 1, "key_problems": 0, "allow": ["diagnostics"],
                                                    "replay_cache": 0, "dropped": 0}},
                                outbox={"outbox_backlog": 0}, results=results)
    msg = messages.preview(messages.diagnostics(config, "d-1", bundle), 3, empty_stats())
    schema_check("diagnostics", msg)
    text = json.dumps(msg)
    for secret in ("hunter2", "s3cret", "secretpass", "token=abc"):
        assert secret not in text, secret
    assert msg["config"]["upstream"]["token_file"] == str(token_file)  # paths are kept
    assert msg["config"]["upstream"]["password_file"] == str(tmp_path / "pw")
    assert msg["log"]["lines"][-1].endswith("line 14 to https://***@fleet.example.com/x?***")
    assert msg["devices"]["acquirer"] == {"driver": "host", "status": "ok", "code": "HOST_OK"}


def test_secret_keys_are_masked_and_paths_kept() -> None:
    out = diagnostics.scrub({"password": "hunter2", "nut_pin": "1234", "client_secret": "s", "ignore_bypass_bit": True,
                             "password_file": "/etc/posagent/pw", "url": "nut://u:p@10.0.0.1:3493/ups",
                             "nested": [{"passphrase": "x", "name": "ups"}], "empty_password": ""})
    assert out == {"password": "***", "nut_pin": "***", "client_secret": "***", "ignore_bypass_bit": True,
                   "password_file": "/etc/posagent/pw", "url": "nut://***@10.0.0.1:3493/ups",
                   "nested": [{"passphrase": "***", "name": "ups"}], "empty_password": ""}


def test_the_executor_queue_is_bounded_and_a_flood_is_never_recorded(config: Config, fleet: FleetKey,
                                                                      tmp_path: Path) -> None:
    from posagent.daemon.commands import MAX_PER_TURN, MAX_QUEUED, Executor
    from posagent.fleet.outbox import Outbox

    woken: list[int] = []
    executor = Executor(config, lambda: woken.append(1), messages.AgentState(dt.datetime.now().astimezone()))
    tokens = [sign(fleet, act="shell", jti=f"f-{i}", iat=None) for i in range(MAX_QUEUED + 36)]
    for t in tokens:
        executor.receive(t, "mqtt")
    assert executor.dropped == 36 and len(woken) == MAX_QUEUED
    box = Outbox(str(tmp_path / "box"), max_bytes=10**7, max_age=86400)
    try:
        notified: list[int] = []
        assert executor.take(box, lambda: notified.append(1)) is None  # all refused: not_allowed
        assert len(notified) == MAX_PER_TURN  # one turn of the loop verifies at most this many
        for _ in range(MAX_QUEUED):
            executor.take(box, lambda: notified.append(1))
        assert len(notified) == MAX_QUEUED and box.stats().backlog == MAX_QUEUED
        pending = box.next_batch(1000)
        bodies = [json.loads(p.body) for p in pending]
        assert {b["outcome"] for b in bodies} == {"refused"} and {b["source"] for b in bodies} == {"mqtt"}
        assert {b["reason"] for b in bodies} == {"not_allowed"}
    finally:
        box.close()
    cache = ReplayCache(config.agent.state_dir)
    assert all(cache.seen(f"f-{i}") for i in range(MAX_QUEUED))
    assert not any(cache.seen(f"f-{i}") for i in range(MAX_QUEUED, MAX_QUEUED + 36))  # dropped: not recorded
