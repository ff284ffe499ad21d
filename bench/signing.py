"""The bench's own issuer key: an RS256 key, its public JWK, and tokens signed with it.

Standard library, PyJWT and cryptography only, so it loads in the function-only environment.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "app"


class BenchKey:
    """One RSA signing key with a key id."""

    def __init__(self, kid: str = "bench") -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key())
        )
        return public | {"kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, issuer: str, subject: str = "bench", lifetime: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer, "sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + lifetime,
            # The mint's profile is the opt-in client-secret one: its caller holds the scope.
            "scope": "openid realtime:mint realtime:client_secrets",
        }  # fmt: skip
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})
