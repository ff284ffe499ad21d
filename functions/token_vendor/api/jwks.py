"""The issuer's signing keys (JWKS): fetched lazily, cached, refetched sparingly.

A flood of tokens with unknown `kid`s costs at most one fetch per cooldown; a failed refresh
keeps the keys we have; with no keys at all and the key set unreachable, the caller hears
"try again" (503), not "your token is bad" (401).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable, InvalidToken
from ..core.parsing import json_object, read_capped

MAX_DOCUMENT_BYTES = 64 * 1024


class FetchFailed(Exception):
    """The key set or discovery document could not be fetched or used; says why, for logs."""


_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def key_type_for(algorithm: str) -> str:
    return _KTY_FOR_ALG[algorithm[:2]]


class JwksKeySource:
    """Adapter for the issuer's published signing keys (JWKS): fetched, cached, rotated."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        issuer: str,
        algorithms: tuple[str, ...],
        jwks_url: str | None = None,
        cache_seconds: float = 600.0,
        cooldown_seconds: float = 10.0,
        fetch_timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._issuer = issuer.rstrip("/")
        self._algorithms = algorithms
        self._jwks_url = jwks_url
        self._cache_seconds = cache_seconds
        self._cooldown = cooldown_seconds
        self._timeout = fetch_timeout
        self._clock = clock
        self._keys: dict[str | None, Any] | None = None
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")  # backs off a failing issuer
        self._refetched_at = float("-inf")  # the last refetch for an unknown kid
        self._lock = threading.Lock()

    def key_for(self, kid: str | None, algorithm: str, deadline: Deadline) -> Any:
        """The verification key for this `kid`, or InvalidToken / DependencyUnavailable."""
        with self._lock:
            if self._keys is None or self._clock() - self._fetched_at > self._cache_seconds:
                self._refresh(deadline)
            found = self._lookup(kid)
            if found is None and self._clock() - self._refetched_at >= self._cooldown:
                # Perhaps a rotation: refetch, but once per cooldown however many kids come.
                self._refetched_at = self._clock()
                self._refresh(deadline, backoff=False)
                found = self._lookup(kid)
        if found is None:
            raise InvalidToken("unknown_kid", "the token was not signed by a key of the issuer")
        key, declared_alg = found
        # A key whose JWK names its algorithm is used with that one only (RFC 8725, 3.1).
        if key.key_type != key_type_for(algorithm) or declared_alg not in (None, algorithm):
            raise InvalidToken("alg_key_mismatch", "the token's algorithm does not fit its key")
        return key.key

    def invalidate(self) -> None:
        """Drop cached keys (after a SnapStart restore, for instance)."""
        with self._lock:
            self._keys = None
            self._fetched_at = self._failed_at = self._refetched_at = float("-inf")

    def _lookup(self, kid: str | None) -> Any:
        if not self._keys:
            return None
        if kid is None:
            # Without a kid we may only guess when there is nothing to choose between.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _refresh(self, deadline: Deadline, backoff: bool = True) -> None:
        waited = self._clock() - self._failed_at
        if backoff and waited < self._cooldown:
            if self._keys is None:
                retry_after = int(self._cooldown - waited) + 1
                raise DependencyUnavailable("jwks", "key set unavailable", retry_after=retry_after)
            return
        try:
            self._keys = self._fetch(deadline)
            self._fetched_at = self._clock()
        except (httpx.HTTPError, FetchFailed, PyJWTError) as exc:
            self._failed_at = self._clock()
            if self._keys is None:
                raise DependencyUnavailable(
                    "jwks",
                    f"key set fetch failed: {type(exc).__name__}",
                    retry_after=int(self._cooldown),
                ) from None

    def _fetch(self, deadline: Deadline) -> dict[str | None, Any]:
        url = self._jwks_url or self._discover(deadline)
        document = self._get_json(url, deadline)
        keys: dict[str | None, Any] = {}
        for jwk in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            if "alg" in jwk and jwk["alg"] not in self._algorithms:
                continue
            algorithm = jwk.get("alg") or _default_alg(jwk, self._algorithms)
            if algorithm is None:
                continue  # a key of a family we do not accept
            try:
                parsed = PyJWK(jwk, algorithm=algorithm)
            except PyJWTError:  # PyJWKError, and InvalidKeyError for a malformed key
                continue  # one odd key must not take the others down
            kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
            keys[kid] = (parsed, jwk.get("alg"))
        if not keys:
            raise FetchFailed("the key set holds no usable signing key")
        return keys

    def _discover(self, deadline: Deadline) -> str:
        config = self._get_json(f"{self._issuer}/.well-known/openid-configuration", deadline)
        if str(config.get("issuer", "")).rstrip("/") != self._issuer:
            raise FetchFailed("the discovery document names another issuer")
        jwks_uri = config.get("jwks_uri")
        try:
            uri = urlsplit(jwks_uri) if isinstance(jwks_uri, str) else None
        except ValueError:  # not a URL at all, e.g. an unclosed IPv6 bracket
            uri = None
        if uri is None or uri.scheme not in {"https", "http"}:
            raise FetchFailed("the discovery document has no usable jwks_uri")
        if uri.scheme == "http" and uri.hostname != urlsplit(self._issuer).hostname:
            raise FetchFailed(
                "plain-http jwks_uri is only accepted from a plain-http issuer's own host"
            )
        self._jwks_url = uri.geturl()
        return self._jwks_url

    def _get_json(self, url: str, deadline: Deadline) -> dict[str, Any]:
        timeout = deadline.cap(self._timeout)
        # No redirects: a key set that moves is a key set we do not trust.
        with self._http.stream("GET", url, timeout=timeout, follow_redirects=False) as response:
            if response.status_code != 200:
                raise FetchFailed(f"HTTP {response.status_code}")
            try:
                return json_object(read_capped(response.iter_bytes(), MAX_DOCUMENT_BYTES))
            except ValueError as exc:  # TooLarge, NotJson, NotAnObject
                raise FetchFailed(f"the document is {exc}") from None


def _default_alg(jwk: dict[str, Any], algorithms: tuple[str, ...]) -> str | None:
    for alg in algorithms:
        if key_type_for(alg) == jwk.get("kty"):
            return alg
    return None
