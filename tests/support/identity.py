"""An identity provider for the tests: signs tokens like a real one, with keys made per run;
a test overrides any claim or header to forge one."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.test/"
AUDIENCE = "app-client"
JWKS_URL = "https://issuer.test/.well-known/jwks.json"


# An RSA key takes 0.1-0.3 s to make, and nearly every test builds an issuer. The issuers the
# tests build by default take their key from a few made once per run, in turn (any eight in a
# row are distinct, so the issuers of one test never share one), each under a kid of its own.
# A key a test makes itself (SigningKey.rsa(): an attacker's, a rotated one) is always new.
_ISSUER_KEYS: list[Any] = []
_ISSUER_KEY_TURN = itertools.count()
ISSUER_KEY_POOL = 8


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str = "RS256"

    @classmethod
    def rsa(cls, kid: str | None = None) -> SigningKey:
        return cls(
            kid or secrets.token_hex(8),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    @classmethod
    def issuers(cls) -> SigningKey:
        """A default issuer's key: the next of the run's few (see ISSUER_KEY_POOL), new kid."""
        turn = next(_ISSUER_KEY_TURN) % ISSUER_KEY_POOL
        if turn == len(_ISSUER_KEYS):
            _ISSUER_KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return cls(secrets.token_hex(8), _ISSUER_KEYS[turn])

    @classmethod
    def ec(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or secrets.token_hex(8), ec.generate_private_key(ec.SECP256R1()), "ES256")

    def jwk(self) -> dict[str, Any]:
        algo = (
            jwt.algorithms.RSAAlgorithm
            if self.alg.startswith(("RS", "PS"))
            else jwt.algorithms.ECAlgorithm
        )
        data = json.loads(algo.to_jwk(self.private.public_key()))
        return data | {"kid": self.kid, "use": "sig", "alg": self.alg}


@dataclass
class Issuer:
    """Signs tokens like a real IdP; tests override any claim or header to forge one."""

    keys: list[SigningKey] = field(default_factory=lambda: [SigningKey.issuers()])
    issuer: str = ISSUER
    audience: str = AUDIENCE

    def claims(self, subject: str = "user-1", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": now,
            "exp": now + 600,
            "scope": "openid realtime:mint realtime:client_secrets",
            "token_use": "access",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not ...}  # `...` removes a claim

    def token(
        self,
        subject: str = "user-1",
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.keys[0]
        header = {"kid": key.kid} | (headers or {})
        return jwt.encode(
            self.claims(subject, **claims),
            key.private,
            algorithm=key.alg,
            headers={k: v for k, v in header.items() if v is not ...},
        )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys]}
