"""Remote commands: what the terminal makes of a command token from the fleet.

A command is a compact JWS (a JWT, RFC 7519) signed with EdDSA / Ed25519 (RFC 8037) by
the fleet's key holder. The terminal holds public keys only (``[commands] public_keys``,
PEM SubjectPublicKeyInfo files, several for key rotation); the signature is checked by
PyJWT with cryptography, never by code of ours. A ``kid`` header picks the key (a key's
kid is its file name without the extension, or its RFC 7638 JWK thumbprint); without one
each key is tried.

Claims: ``jti`` (unique, 1..128 printable characters), ``aud`` (this terminal's id),
``iat``, ``exp`` (at most ``MAX_LIFETIME`` after ``iat``), ``act`` (the action), ``args``
(an object, may be left out: ``{}``); ``nbf`` is honoured when present. The clock may be
``SKEW`` off either way.

``Verifier.check`` gives a ``Verdict``: accepted, or refused with one stable reason
(``REASONS``). Every jti whose signature checked out is recorded in the replay cache
(``fleet/replay.py``) unless the caller only asks (``record=False``: ``posagent commands
verify``). Nothing here runs anything: ``daemon/commands.py`` executes accepted commands.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from posagent.config.model import COMMAND_ACTIONS, Config
from posagent.core.base import Level
from posagent.core.i18n import N_
from posagent.fleet import schedule
from posagent.fleet.replay import ReplayCache
from posagent.fleet.transport import MAX_TOKEN

if TYPE_CHECKING:  # PyJWT and cryptography load only when a key or a token is read
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["MAX_JTI", "MAX_LIFETIME", "PRINTING", "REASONS", "SKEW", "KeyFileError", "PublicKey", "Verdict",
           "Verifier", "load_keys", "quiet_window_refusal", "verify"]

#: Clock-skew allowance between the fleet and the terminal (seconds).
SKEW = 120.0
#: The longest a command may live: ``exp - iat`` (seconds).
MAX_LIFETIME = 900.0
MAX_JTI = 128
#: Actions that put paper through a printer: only inside the quiet window.
PRINTING = ("slip",)

#: Why a command was refused (the stable token in ``command_result.reason``) -> what it means.
REASONS: dict[str, str] = {
    "malformed": N_("not a well-formed command token (three base64url parts, a JSON header and claims)"),
    "no_keys": N_("no usable command key is configured ([commands] public_keys)"),
    "unknown_key": N_("the token names a key (kid) this terminal does not have"),
    "bad_signature": N_("the signature does not verify with any configured key"),
    "lifetime_too_long": N_("the token lives longer than 15 minutes (exp - iat)"),
    "wrong_audience": N_("the token is for another terminal (aud)"),
    "not_yet_valid": N_("the token is not valid yet (iat or nbf in the future)"),
    "expired": N_("the token has expired (exp)"),
    "replayed": N_("this command (jti) was already received"),
    "cache_full": N_("too many commands received recently: the replay cache is full"),
    "not_allowed": N_("the action is not allowed on this terminal ([commands] allow)"),
    "bad_args": N_("the action's arguments are not valid"),
    "outside_quiet_window": N_("this would print, and it is not the quiet window (business hours or a blackout day)"),
}


class KeyFileError(ValueError):
    """A ``[commands] public_keys`` file that cannot be used: ``path`` and what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class PublicKey:
    path: str
    key: Ed25519PublicKey
    name: str  # the file name without its extension
    thumbprint: str  # RFC 7638 JWK thumbprint (SHA-256, base64url)

    def matches(self, kid: str) -> bool:
        return kid in (self.name, self.thumbprint)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


MAX_KEY_FILE = 16 * 1024


def load_key(path: str) -> PublicKey:
    """The Ed25519 public key in PEM file ``path``; raises KeyFileError saying what is wrong."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyFileError(path, f"cannot be read ({e.strerror or type(e).__name__})") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(path, "too large for a public key file")
    if b"PRIVATE KEY" in data:
        raise KeyFileError(path, "holds a private key: the terminal must have the public key only")
    from cryptography.hazmat.primitives import serialization  # deferred: ~45 ms with PyJWT, for keys only
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyFileError(path, "not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    except Exception as e:  # an unsupported algorithm
        raise KeyFileError(path, f"not a usable public key ({type(e).__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(path, f"not an Ed25519 key ({type(key).__name__.removeprefix('_')}): "
                                 "commands are signed with EdDSA / Ed25519")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":"), sort_keys=True)
    name = os.path.splitext(os.path.basename(path))[0]
    return PublicKey(path, key, name, _b64url(hashlib.sha256(jwk.encode("ascii")).digest()))


def load_keys(paths: list[str]) -> tuple[list[PublicKey], list[KeyFileError]]:
    """The usable keys of ``paths`` and the problems of the others."""
    keys: list[PublicKey] = []
    problems: list[KeyFileError] = []
    for p in paths:
        try:
            keys.append(load_key(p))
        except KeyFileError as e:
            problems.append(e)
    return keys, problems


@dataclass(frozen=True)
class Verdict:
    """What the terminal makes of one token."""

    reason: str | None  # None: accepted; else a key of REASONS
    detail: str = ""  # more about the reason, in English, for the log and the result
    jti: str | None = None
    act: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # the path of the key that verified the signature
    kid: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)  # the verified claims (never the token)

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def refused(self, reason: str, detail: str = "") -> Verdict:
        return Verdict(reason, detail, self.jti, self.act, self.args, self.key, self.kid, self.claims)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e12


def _printable(s: str) -> bool:
    return all(c.isprintable() for c in s)


def quiet_window_refusal(act: str, args: Mapping[str, Any], config: Config, when: dt.datetime) -> str | None:
    """Why ``act`` may not print now (business hours, a blackout day), or None."""
    prints = act in PRINTING or (act == "selftest" and args.get("level") == "external")
    if not prints:
        return None
    level, why = schedule.level_for(when, config.schedule, Level.EXTERNAL)
    return None if level >= Level.EXTERNAL else why


def check_args(act: str, args: Mapping[str, Any]) -> str | None:
    """What is wrong with ``args`` for ``act``, or None."""
    allowed = {"selftest": {"level"}}.get(act, set())
    unknown = sorted(set(args) - allowed)
    if unknown:
        return f"unknown argument {unknown[0][:40]!r} for {act}"
    if act == "selftest" and args.get("level", "internal") not in ("internal", "external"):
        return "args.level must be internal or external"
    return None


def verify(token: str, keys: list[PublicKey], terminal_id: str, now: float) -> Verdict:
    """The signature and the claims of ``token`` (not the replay cache, the allow-list or the
    quiet window: ``Verifier.check`` adds those)."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or token.count(".") != 2:
        return Verdict("malformed", "not a compact JWS of three parts")
    import jwt  # deferred: only a token to check needs it

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return Verdict("malformed", "the header is not base64url JSON")
    alg, kid = header.get("alg"), header.get("kid")
    if alg != "EdDSA":
        return Verdict("bad_signature", f"algorithm {str(alg)[:20]!r} is not EdDSA")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        return Verdict("malformed", "kid is not a short string")
    if not keys:
        return Verdict("no_keys", "no [commands] public_keys usable")
    candidates = [k for k in keys if kid is None or k.matches(kid)]
    if not candidates:
        return Verdict("unknown_key", f"no key with kid {str(kid)[:64]!r}", kid=kid)
    claims: Any = None
    used: PublicKey | None = None
    for candidate in candidates:
        try:
            claims = jwt.decode(token, candidate.key, algorithms=["EdDSA"],
                                options={"verify_signature": True, "verify_exp": False, "verify_nbf": False,
                                         "verify_iat": False, "verify_aud": False, "verify_iss": False,
                                         "verify_sub": False, "verify_jti": False, "require": []})
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            return Verdict("malformed", "the claims are not a base64url JSON object", kid=kid)
        used = candidate
        break
    if used is None:
        return Verdict("bad_signature", "the signature does not verify", kid=kid)
    return _claims(claims, used, kid, terminal_id, now)


def _claims(claims: Any, used: PublicKey, kid: str | None, terminal_id: str, now: float) -> Verdict:
    if not isinstance(claims, dict):
        return Verdict("malformed", "the claims are not an object", key=used.path, kid=kid)
    jti, aud, act = claims.get("jti"), claims.get("aud"), claims.get("act")
    iat, exp, nbf = claims.get("iat"), claims.get("exp"), claims.get("nbf", None)
    args = claims.get("args", {})
    shown = {k: claims[k] for k in ("jti", "aud", "iat", "exp", "nbf", "act", "args", "iss", "sub") if k in claims}
    base = Verdict(None, jti=jti if isinstance(jti, str) else None, act=act if isinstance(act, str) else None,
                   args=args if isinstance(args, dict) else {}, key=used.path, kid=kid, claims=shown)
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI or not _printable(jti):
        return base.refused("malformed", f"jti must be a string of 1..{MAX_JTI} printable characters")
    if not _number(iat) or not _number(exp) or (nbf is not None and not _number(nbf)):
        return base.refused("malformed", "iat and exp must be numbers (seconds since the epoch)")
    if not isinstance(act, str) or not 0 < len(act) <= 64 or not _printable(act):
        return base.refused("malformed", "act must be a short string")
    if not isinstance(args, dict):
        return base.refused("malformed", "args must be an object")
    iat_s, exp_s = float(iat), float(exp)  # type: ignore[arg-type]  # numbers: checked above
    from_s = max(iat_s, float(nbf)) if nbf is not None else iat_s
    if exp_s - iat_s > MAX_LIFETIME:
        return base.refused("lifetime_too_long", f"exp - iat = {exp_s - iat_s:.0f} s, at most {MAX_LIFETIME:.0f} s")
    if aud != terminal_id:
        return base.refused("wrong_audience", "aud is not this terminal's id")
    if from_s > now + SKEW:
        return base.refused("not_yet_valid", f"valid from {_iso(from_s)}")
    if now > exp_s + SKEW:
        return base.refused("expired", f"expired at {_iso(exp_s)}")
    return base


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


class Verifier:
    """The keys, the replay cache and the config of one terminal: ``check(token)``."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time,
                 wall: Callable[[], dt.datetime] | None = None, cache: ReplayCache | None = None) -> None:
        self.config = config
        self.clock = clock
        self.wall = wall or (lambda: dt.datetime.fromtimestamp(clock()).astimezone())
        self.keys, self.key_problems = load_keys(list(config.commands.public_keys))
        self.cache = cache if cache is not None else ReplayCache(config.agent.state_dir, clock=clock)

    def check(self, token: str, *, record: bool = True) -> Verdict:
        """The verdict on ``token``; with ``record``, a jti whose signature checked out is
        kept in the replay cache (until its exp plus the skew)."""
        now = self.clock()
        verdict = verify(token, self.keys, self.config.agent.terminal_id, now)
        jti, exp = verdict.jti, verdict.claims.get("exp")
        if verdict.key is None or jti is None or not _number(exp):
            return verdict  # no signature that checked out, or no jti to remember
        if verdict.accepted and self.cache.seen(jti):
            return verdict.refused("replayed", "jti already received")
        if record and not self.cache.seen(jti):
            iat = verdict.claims.get("iat")
            until = min(float(exp), float(iat) + MAX_LIFETIME if _number(iat) else now + MAX_LIFETIME)  # type: ignore[arg-type]
            if not self.cache.add(jti, max(until, now) + SKEW):
                return verdict.refused("cache_full", "the replay cache is full of live commands")
        if not verdict.accepted:
            return verdict
        return self._allowed(verdict)

    def _allowed(self, verdict: Verdict) -> Verdict:
        act = verdict.act or ""
        if act not in self.config.commands.allow or act not in COMMAND_ACTIONS:
            return verdict.refused("not_allowed", f"action {act[:64]!r} is not in [commands] allow")
        problem = check_args(act, verdict.args)
        if problem is not None:
            return verdict.refused("bad_args", problem)
        why = quiet_window_refusal(act, verdict.args, self.config, self.wall())
        if why is not None:
            return verdict.refused("outside_quiet_window", why)
        return verdict
