"""The API's one public door: with the page's distribution in front of the API, only requests
that came through it are served.

WAF attaches to CloudFront, not to an HTTP API, so a request sent straight to the API's own
`execute-api` URL would meet none of its rules. CloudFront adds a header to every request it
forwards to the API (the `api` origin's custom header in template.yaml) whose value is a
secret in Secrets Manager; the handler checks it before anything else, so a request that
skipped the door is a 403 before its token is read, a quota counted or OpenAI called.

The value is read lazily, cached per container and never logged, repr'd or compared in a
way that leaks it (`hmac.compare_digest`). Rotation (docs/deploy.md): both the secret's
AWSCURRENT and AWSPREVIOUS versions are accepted, so the value CloudFront sends may change
at any time after every container has read the new one; a value that matches neither
re-reads the secret at most every `mismatch_reread` seconds, so a flood of wrong values
costs no more Secrets Manager calls than a quiet day.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ..core.errors import DependencyMisconfigured, DependencyUnavailable, WrongDoor

HEADER = "x-origin-verify"  # the name CloudFront's origin custom header uses (template.yaml)
MIN_LENGTH = 32  # what the template generates is 64; anything guessable is refused
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: a header value as is


def usable_secret(value: str) -> bool:
    """Whether `value` can be the door's secret: long enough not to be guessed, and a header
    value as it stands (the deploy's preflight asks the same)."""
    return len(value) >= MIN_LENGTH and bool(_HEADER_SAFE.fullmatch(value))


class Door(Protocol):
    def check(self, presented: str | None) -> None: ...

    def invalidate(self) -> None: ...


class OpenDoor:
    """No distribution in front (ApiDoor=execute-api): the API's own URL is the door."""

    def check(self, presented: str | None) -> None:
        return None

    def invalidate(self) -> None:
        return None


class FrontDoor:
    """The secret the distribution sends, from Secrets Manager; `check` raises WrongDoor for a
    request without it."""

    def __init__(
        self,
        secret_id: str,
        client: Any,
        *,
        ttl_seconds: float = 300.0,
        mismatch_reread: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._client = client
        self._ttl = ttl_seconds
        self._mismatch_reread = mismatch_reread
        self._clock = clock
        self._values: tuple[bytes, ...] = ()  # the current value, then the previous if read
        self._previous_read = False
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the values
        return f"FrontDoor(secret_id={self._secret_id!r})"

    def check(self, presented: str | None) -> None:
        if not presented:
            raise WrongDoor("missing")  # no secret read for these: the cheapest refusal
        given = presented.encode("utf-8", "surrogateescape")
        with self._lock:
            if not self._values or self._clock() - self._read_at > self._ttl:
                self._read_current()
            if self._opens(given):
                return
            # Rotated since the last read (the operator pushed the new value to CloudFront
            # before every container had read it): read again, but not for every request.
            if self._clock() - self._read_at < self._mismatch_reread:
                raise WrongDoor("mismatch")
            self._read_current()
            if not self._opens(given):
                raise WrongDoor("mismatch")

    def _opens(self, given: bytes) -> bool:
        """Whether `given` is the current value or, read only when needed, the previous one:
        between a rotation's new value and CloudFront's switch to it, CloudFront still sends
        the old one, now the previous version. A steady cold start so reads one version."""
        if _matches(given, self._values):
            return True
        if self._previous_read:
            return False
        try:
            previous = self._version("AWSPREVIOUS")
        except (BotoCoreError, ClientError) as exc:
            raise DependencyUnavailable("origin_secret", _describe(exc), retry_after=5) from None
        self._previous_read = True
        if previous is not None:
            self._values = (*self._values, previous)
        return _matches(given, self._values)

    def invalidate(self) -> None:
        """After a SnapStart restore: the snapshot's values may be stale."""
        with self._lock:
            self._values, self._read_at = (), float("-inf")

    def _read_current(self) -> None:
        try:
            current = self._version("AWSCURRENT")
            if current is None:
                raise _Unusable
        except (BotoCoreError, ClientError, _Unusable) as exc:
            # A warm container keeps the values it has (read again soon, not at every
            # request); only a cold one must refuse: fail closed, a 503, never an open door.
            if self._values:
                self._read_at = self._clock() - self._ttl + self._mismatch_reread
                return
            if isinstance(exc, _Unusable):
                raise DependencyMisconfigured(
                    "origin_secret",
                    f"the secret {self._secret_id!r} is unusable: at least {MIN_LENGTH} "
                    "printable ASCII characters without spaces are needed",
                ) from None
            raise DependencyUnavailable("origin_secret", _describe(exc), retry_after=5) from None
        self._values, self._previous_read = (current,), False
        self._read_at = self._clock()

    def _version(self, stage: str) -> bytes | None:
        """The value at `stage`, or None when there is none (no rotation yet) or it is not
        a usable secret. No message quotes it."""
        try:
            response = self._client.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if stage != "AWSCURRENT" and code == "ResourceNotFoundException":
                return None
            raise
        value = response.get("SecretString") or ""
        return value.encode() if usable_secret(value) else None


class _Unusable(Exception):
    """The current value is no secret the door can use (too short, or not a header value)."""


def _matches(given: bytes, values: tuple[bytes, ...]) -> bool:
    # Every value compared, each in constant time: nothing about either leaks by timing.
    return any([hmac.compare_digest(given, value) for value in values])


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"Secrets Manager: {exc.response.get('Error', {}).get('Code', 'error')}"
    return f"Secrets Manager: {type(exc).__name__}"
