"""Who is calling: the bearer token from the app's identity provider, verified strictly.

Issuer, audience, algorithms and key source come from configuration; the token's header
never chooses them. PyJWT checks the signature; every claim is then checked here with strict
types, because PyJWT's defaults are looser than this endpoint wants (optional `exp`, numeric
strings accepted as times).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
from jwt.exceptions import PyJWTError

from ..core.deadline import Deadline
from ..core.errors import InsufficientScope, InvalidToken
from ..core.ids import UserId
from ..core.parsing import is_number, json_object

MAX_TOKEN_BYTES = 8192
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9_.-]+)")
# Headers that would let the token pick its own key or change how it is read.
_REFUSED_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit", "b64")
_LATEST_TIME = 10_000_000_000  # the year 2286: anything later is not a real expiry


class KeySource(Protocol):
    """Where the verifier gets the key for a token (port; `jwks.JwksKeySource` in production)."""

    def key_for(self, kid: str | None, algorithm: str, deadline: Deadline) -> Any: ...


@dataclass(frozen=True)
class Caller:
    """Who a verified token says is calling, and with which scopes."""

    issuer: str
    subject: str
    scopes: frozenset[str]
    kid: str | None
    # Every claim, for the plan (api.plans): never logged, never compared.
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def user_hash(self) -> UserId:
        """A stable pseudonym: quota key, OpenAI safety identifier and log field."""
        raw = f"{self.issuer}\x00{self.subject}".encode()
        return UserId(hashlib.sha256(raw).hexdigest()[:32])


def bearer_token(authorization: str | None) -> str:
    """The token from an Authorization header value, or InvalidToken."""
    if not authorization or not authorization.strip():
        raise InvalidToken("missing", "a bearer token is required")
    match = _BEARER.fullmatch(authorization.strip())
    if not match:
        raise InvalidToken("malformed_header", "expected 'Authorization: Bearer <token>'")
    return match.group(1)


class JwtVerifier:
    """Adapter for the app's identity provider: a bearer JWT in, a `Caller` or InvalidToken out."""

    def __init__(
        self,
        *,
        issuer: str,
        audiences: tuple[str, ...],
        algorithms: tuple[str, ...],
        keys: KeySource,
        required_scopes: tuple[str, ...] = (),
        token_use: str | None = None,
        required_typ: str | None = None,
        leeway: int = 30,
        max_lifetime: int = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._audiences = frozenset(audiences)
        self._algorithms = algorithms
        self._keys = keys
        self._required_scopes = required_scopes
        self._token_use = token_use
        self._required_typ = _media_type(required_typ) if required_typ else None
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock
        self._jws = jwt.PyJWS()

    def verify(self, token: str, deadline: Deadline) -> Caller:
        header = self._header(token)
        kid = header.get("kid")
        key = self._keys.key_for(kid, header["alg"], deadline)
        try:
            payload = self._jws.decode(token, key, algorithms=[header["alg"]])
        except PyJWTError:
            raise InvalidToken("bad_signature", "the token's signature does not verify") from None
        claims = _json_object(payload, "payload")
        caller = self._check_claims(claims, kid)
        missing = tuple(s for s in self._required_scopes if s not in caller.scopes)
        if missing:
            raise InsufficientScope("missing_scope", "the token lacks a required scope", missing)
        return caller

    def _header(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("too_large", "the token is too large")
        segments = token.split(".")
        if len(segments) != 3 or not all(_SEGMENT.fullmatch(s) for s in segments):
            raise InvalidToken("malformed", "the token is not a compact JWS")
        header = _json_object(_b64decode(segments[0]), "header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken("alg_not_allowed", "the token's algorithm is not accepted")
        for name in _REFUSED_HEADERS:
            if name in header:
                raise InvalidToken("header_not_allowed", f"the '{name}' header is not accepted")
        kid = header.get("kid")
        if "kid" in header and (not isinstance(kid, str) or not kid or len(kid) > 256):
            raise InvalidToken("bad_kid", "the token's 'kid' is not a key id")
        if "typ" in header and not isinstance(header["typ"], str):
            raise InvalidToken("bad_typ", "the token's 'typ' is not a string")
        # RFC 9068: access tokens say `typ: at+jwt`, so an ID token for the same client (an
        # external issuer whose audience is the page's client id) cannot pass for one.
        if self._required_typ and _media_type(header.get("typ", "")) != self._required_typ:
            raise InvalidToken("wrong_typ", f"a '{self._required_typ}' token is required")
        return header

    def _check_claims(self, claims: dict[str, Any], kid: str | None) -> Caller:
        now = self._clock()
        if claims.get("iss") != self._issuer:  # exact match: no prefixes, no trailing slashes
            raise InvalidToken("wrong_issuer", "the token is from another issuer")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip() or len(sub) > 512:
            raise InvalidToken("bad_subject", "the token has no usable subject")
        exp = _time(claims, "exp", required=True)
        assert exp is not None
        if now > exp + self._leeway:
            raise InvalidToken("expired", "the token has expired")
        nbf = _time(claims, "nbf")
        if nbf is not None and nbf > now + self._leeway:
            raise InvalidToken("not_yet_valid", "the token is not valid yet")
        iat = _time(claims, "iat")
        if iat is not None and iat > now + self._leeway:
            raise InvalidToken("issued_in_future", "the token claims to be issued in the future")
        if exp - (iat if iat is not None else now) > self._max_lifetime:
            raise InvalidToken("lifetime_too_long", "the token lives longer than policy allows")
        self._check_audience(claims)
        if self._token_use is not None and claims.get("token_use") != self._token_use:
            raise InvalidToken("wrong_token_use", f"a '{self._token_use}' token is required")
        return Caller(
            issuer=self._issuer, subject=sub, scopes=_scopes(claims), kid=kid, claims=claims
        )

    def _check_audience(self, claims: dict[str, Any]) -> None:
        if "aud" in claims:
            aud = claims["aud"]
            values = [aud] if isinstance(aud, str) else aud
            if not isinstance(values, list) or not all(isinstance(a, str) for a in values):
                raise InvalidToken("bad_audience", "the token's audience is malformed")
            if self._audiences.isdisjoint(values):
                raise InvalidToken("wrong_audience", "the token is for another audience")
            return
        # Cognito access tokens carry the app client in `client_id` instead of `aud`.
        if claims.get("client_id") not in self._audiences:
            raise InvalidToken("wrong_audience", "the token is for another audience")


def _b64decode(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise InvalidToken("malformed", "the token is not valid base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed", "the token is not valid base64url") from None


def _json_object(raw: bytes, part: str) -> dict[str, Any]:
    try:
        return json_object(raw)
    except ValueError as exc:  # NotJson or NotAnObject: the message says which
        raise InvalidToken("malformed", f"the token's {part} is {exc}") from None


def _time(claims: dict[str, Any], name: str, required: bool = False) -> float | None:
    if name not in claims:
        if required:
            raise InvalidToken(f"missing_{name}", f"the token has no '{name}' claim")
        return None
    value = claims[name]
    if not is_number(value):
        raise InvalidToken(f"bad_{name}", f"the token's '{name}' is not a number")
    if not math.isfinite(value) or not 0 < value < _LATEST_TIME:
        raise InvalidToken(f"bad_{name}", f"the token's '{name}' is out of range")
    return float(value)


def _media_type(typ: str) -> str:
    """RFC 7515 4.1.9: `typ` may omit the "application/" prefix; compare case-insensitively."""
    typ = typ.strip().lower()
    return typ.removeprefix("application/")


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    # OAuth servers put scopes in `scope` (a string); Okta and Entra use `scp` (a list or string).
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            # RFC 6749 3.3: space-delimited. Not str.split(): a tab or a no-break space
            # inside one scope must not turn it into two.
            found.update(part for part in value.split(" ") if part)
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return frozenset(found)
