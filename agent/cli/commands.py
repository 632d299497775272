"""``posagent commands verify TOKEN``: what this terminal would do with a remote command.

    posagent commands verify TOKEN [--json] [--lang en|zh-CN] [--config FILE]
    posagent commands verify - < token.jwt

It checks the token exactly as the daemon does (``posagent.fleet.commands``: signature with
the configured public keys, audience, lifetime, expiry, the replay cache, the allow-list,
the quiet window for what prints) and says which key verified it, its claims, the verdict
and its reason. It runs nothing and records nothing: the jti is not added to the replay
cache, so the daemon still accepts the token afterwards. The token itself is never printed.

Exit codes: 0 the terminal would run it now; 65 it would refuse it (the reason says why);
64 usage error; 78 config error (a ``[commands] public_keys`` file that is missing, not PEM
or not Ed25519).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from typing import Any

from posagent.cli.common import UsageError, add_config, load, setup_language
from posagent.config.errors import ConfigError, problem
from posagent.config.model import Config
from posagent.core.i18n import _
from posagent.fleet.commands import REASONS, Verdict, Verifier
from posagent.fleet.transport import MAX_TOKEN

EX_DATAERR = 65


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    sub.required = True
    v = sub.add_parser("verify", help="say what this terminal would do with a command token, without doing it",
                       description="say what this terminal would do with a command token, without doing it")
    v.add_argument("token", metavar="TOKEN", help="the command token (a JWT); - reads it from standard input")
    add_config(v)
    v.add_argument("--json", action="store_true", help="print one JSON object for machines")
    v.add_argument("--lang", choices=["en", "zh-CN"], help="language of the messages")


def read_token(arg: str) -> str:
    """The token from the argument, or from stdin for ``-`` (bounded)."""
    text = sys.stdin.buffer.read(MAX_TOKEN + 2).decode("utf-8", "replace") if arg == "-" else arg
    token = text.strip()
    if not token:
        raise UsageError(_("no token given (standard input was empty)") if arg == "-" else _("the token is empty"))
    return token


def run(args: argparse.Namespace) -> int:
    config = load(args)
    setup_language(args, config)
    token = read_token(args.token)
    logging.getLogger("posagent.fleet.replay").setLevel(logging.ERROR)  # said below, translated
    verifier = Verifier(config)
    if verifier.key_problems:
        fix = _("give the PEM file of the fleet's Ed25519 public key (-----BEGIN PUBLIC KEY-----)")
        raise ConfigError([problem(config.path, "commands.public_keys", f"{e.path}: {e.problem}", fix)
                           for e in verifier.key_problems])
    verdict = verifier.check(token, record=False)
    out = report(verdict, config, verifier)
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print_text(out, verdict)
    return 0 if verdict.accepted else EX_DATAERR


def report(v: Verdict, config: Config, verifier: Verifier) -> dict[str, Any]:
    """The machine-readable answer (``--json``)."""
    act = v.act
    return {
        "terminal_id": config.agent.terminal_id,
        "verdict": "run" if v.accepted else "refused",
        "reason": v.reason,
        "reason_text": _(REASONS[v.reason]) if v.reason in REASONS else None,
        "detail": v.detail or None,
        "key": v.key,
        "kid": v.kid,
        "claims": v.claims,
        "allowed_action": act in config.commands.allow if act else None,
        "allow": list(config.commands.allow),
        "replay_cache": {"entries": len(verifier.cache), "unreadable": verifier.cache.unreadable},
        "recorded": False,
    }


def _when(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e11:
        return dt.datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")
    return "-"


def print_text(out: dict[str, Any], v: Verdict) -> None:
    claims = out["claims"]
    if v.key:
        print(_("signature: valid, key {key}").format(key=v.key + (f" (kid {v.kid})" if v.kid else "")))
    if claims:
        print(_("command:   {jti}: {act} {args}").format(
            jti=claims.get("jti", "-"), act=claims.get("act", "-"),
            args=json.dumps(claims.get("args", {}), ensure_ascii=False, sort_keys=True)))
        aud = claims.get("aud", "-")
        mark = _("this terminal") if aud == out["terminal_id"] else _("another terminal")
        print(_("for:       {aud} ({mark})").format(aud=aud, mark=mark))
        print(_("valid:     {start} .. {end}").format(start=_when(claims.get("iat")), end=_when(claims.get("exp"))))
    if out["allowed_action"] is not None:
        print(_("allowed:   {answer} ([commands] allow = {allow})").format(
            answer=_("yes") if out["allowed_action"] else _("no"), allow=", ".join(out["allow"]) or "-"))
    if out["replay_cache"]["unreadable"]:
        print(_("note: the replay cache could not be read ({why}); run this as the agent's user to see replays")
              .format(why=out["replay_cache"]["unreadable"]))
    if v.accepted:
        print(_("verdict:   the terminal would run it now (nothing was run or recorded)"))
        return
    print(_("verdict:   refused: {reason}: {text}").format(reason=v.reason, text=out["reason_text"] or ""))
    if v.detail:
        print(_("detail:    {detail}").format(detail=v.detail))
