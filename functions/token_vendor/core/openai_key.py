"""The OpenAI API key, read from Secrets Manager lazily and cached per container.

The value never leaves this module except inside request headers: it is kept out of reprs,
logs and errors.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import DependencyMisconfigured, DependencyUnavailable
from .parsing import NotJson, json_object


class UnusableSecret(ValueError):
    """The secret's value is not a key we can use; the message never quotes the value."""


@dataclass(frozen=True)
class OpenAICredentials:
    """The OpenAI API key (never in a repr) and the optional organization and project."""

    api_key: str = field(repr=False)
    organization: str | None = None
    project: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers


# What an HTTP header value can carry unchanged: printable ASCII, no spaces. Anything else (a
# trailing newline, a zero-width space pasted with the key) would fail every request later,
# as an error nobody expected; here it is a clear 503 naming the secret.
_TOKEN = re.compile(r"[\x21-\x7e]+")


def parse_secret(secret_string: str) -> OpenAICredentials:
    """A plain `sk-...` string, or JSON `{"api_key", "organization"?, "project"?}`.

    Every value is taken as stored, never trimmed: what is sent is what the operator put.
    """
    if secret_string[:1] in ("{", "[", '"'):  # JSON: it must be the object form
        try:
            data = json_object(secret_string)
        except NotJson:
            raise UnusableSecret("the secret is neither a key nor valid JSON") from None
        except ValueError:  # NotAnObject
            data = {}
        if "api_key" not in data:
            raise UnusableSecret("the secret's JSON has no 'api_key'")
        org, project = data.get("organization"), data.get("project")
        return OpenAICredentials(
            _header_value(data["api_key"], "api_key"),
            _header_value(org, "organization") if org is not None else None,
            _header_value(project, "project") if project is not None else None,
        )
    return OpenAICredentials(_header_value(secret_string, "the key"))


def _header_value(value: object, name: str) -> str:
    # The messages never quote the value: a near-miss key is still mostly a key.
    if not isinstance(value, str) or not value:
        raise UnusableSecret(f"{name} is empty or not a string")
    if not _TOKEN.fullmatch(value):
        raise UnusableSecret(f"{name} holds whitespace or characters outside printable ASCII")
    return value


class OpenAIKeyStore:
    """Adapter for the OpenAI key in Secrets Manager: read lazily, cached, re-read on demand."""

    def __init__(
        self,
        secret_id: str,
        client: Any,
        *,
        ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._cached: OpenAICredentials | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> OpenAICredentials:
        with self._lock:
            if self._cached is None or self._clock() - self._read_at > self._ttl:
                self._read()
            assert self._cached is not None
            return self._cached

    def refresh(self) -> OpenAICredentials:
        """Re-read now (OpenAI said 401: the key may have been rotated)."""
        with self._lock:
            self._read()
            assert self._cached is not None
            return self._cached

    def invalidate(self) -> None:
        with self._lock:
            self._cached, self._read_at = None, float("-inf")

    def _read(self) -> None:
        try:
            response = self._client.get_secret_value(SecretId=self._secret_id)
            credentials = parse_secret(response.get("SecretString") or "")
        except (BotoCoreError, ClientError, UnusableSecret) as exc:
            # A warm container keeps serving the key it has; only a cold one must give up.
            if self._cached is not None:
                self._read_at = (
                    self._clock() - self._ttl + 30.0
                )  # try again in 30 s, not every call
                return
            if isinstance(exc, UnusableSecret):
                raise DependencyMisconfigured(
                    "openai_key", f"the secret {self._secret_id!r} is unusable: {exc}"
                ) from None
            raise DependencyUnavailable("openai_key", _describe(exc), retry_after=5) from None
        self._cached, self._read_at = credentials, self._clock()


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"Secrets Manager: {exc.response.get('Error', {}).get('Code', 'error')}"
    return f"Secrets Manager: {type(exc).__name__}"
