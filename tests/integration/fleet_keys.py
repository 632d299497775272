"""The fleet's side of remote commands, for the tests: an Ed25519 key pair made in the test
(cryptography), its public key written as the PEM file a terminal is given, and command
tokens signed with PyJWT (EdDSA), right or wrong on purpose."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class FleetKey:
    def __init__(self, kid: str = "fleet-1") -> None:
        self.kid = kid
        self.private = Ed25519PrivateKey.generate()

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def write_public(self, directory: Path) -> Path:
        """The public key as ``<kid>.pem`` in ``directory`` (what the terminal holds)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.kid}.pem"
        path.write_bytes(self.public_pem())
        return path

    def sign(self, act: str = "selftest", aud: str = "SIM-CMD", *, args: dict[str, Any] | None = None,
             jti: str | None = None, iat: float | None = None, lifetime: float = 300.0, kid: str | None = "",
             extra: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> str:
        """A command token; ``kid=""`` puts this key's kid in the header, None leaves it out."""
        now = time.time() if iat is None else iat
        claims: dict[str, Any] = {"jti": jti or str(uuid.uuid4()), "aud": aud, "iat": int(now),
                                  "exp": int(now + lifetime), "act": act, "args": args if args is not None else {}}
        claims.update(extra or {})
        for k in drop:
            claims.pop(k, None)
        headers = {"kid": self.kid if kid == "" else kid} if kid is not None else None
        return jwt.encode(claims, self.private, algorithm="EdDSA", headers=headers)


def tamper(token: str) -> str:
    """``token`` with one character of its signature changed (a forgery)."""
    head, payload, sig = token.split(".")
    c = "A" if sig[5] != "A" else "B"
    return f"{head}.{payload}.{sig[:5]}{c}{sig[6:]}"
