"""OpenAI's Realtime REST API, as this function uses it.

One request path (`_send`) owns what every call needs: the key and its 401 re-read, the
retry budget, the timeouts against the Lambda deadline, the size cap, and the mapping of
failures to domain errors. Today it mints client secrets; relaying the SDP offer
(`/realtime/calls`) and hanging up (`/realtime/calls/{id}/hangup`) are further methods on it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .deadline import Deadline
from .errors import DependencyUnavailable, UpstreamBadResponse, UpstreamRejected, UpstreamTimeout
from .openai_key import OpenAICredentials
from .parsing import TooLarge, is_int, json_object, read_capped

MAX_RESPONSE_BYTES = 64 * 1024
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 8.0
MIN_ATTEMPT_SECONDS = 1.0  # an attempt with less time than this left is not worth starting
_RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
_SECRET_VALUE = re.compile(r"ek_[A-Za-z0-9_-]{8,256}")


class ApiKeySource(Protocol):
    """Port: the OpenAI key, cached, and re-read on demand (`openai_key.OpenAIKeyStore`)."""

    def get(self) -> OpenAICredentials: ...
    def refresh(self) -> OpenAICredentials: ...


@dataclass(frozen=True)
class Upstream:
    """What one call learned, for logs and metrics (never a secret)."""

    status: int
    request_id: str | None
    attempts: int
    seconds: float


@dataclass(frozen=True)
class Reply:
    """OpenAI's raw answer to one request, read within the size cap."""

    status: int
    headers: httpx.Headers
    content: bytes


@dataclass(frozen=True)
class ClientSecret:
    """A minted `ek_` client secret, its expiry and the session OpenAI echoed."""

    value: str
    expires_at: int
    session: dict[str, Any]
    upstream: Upstream


class RealtimeApi:
    """Adapter for OpenAI's Realtime REST API: retries, timeouts and the key's 401 re-read."""

    def __init__(
        self,
        base_url: str,
        http: httpx.Client,
        api_key: ApiKeySource,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._http = http
        self._api_key = api_key
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter

    def create_client_secret(
        self, body: dict[str, Any], safety_identifier: str, deadline: Deadline
    ) -> ClientSecret:
        started = time.monotonic()
        reply, attempts = self._send(
            "/realtime/client_secrets",
            body,
            {"OpenAI-Safety-Identifier": safety_identifier},
            deadline,
        )
        upstream = Upstream(
            reply.status, reply.headers.get("x-request-id"), attempts, time.monotonic() - started
        )
        data = _json(reply.content)
        lifetime = body.get("expires_after", {}).get("seconds", 600)
        return ClientSecret(
            value=_secret_value(data),
            expires_at=self._expiry(data, lifetime),
            session=_session(data, body.get("session", {}).get("model")),
            upstream=upstream,
        )

    def _send(
        self, path: str, body: dict[str, Any], headers: dict[str, str], deadline: Deadline
    ) -> tuple[Reply, int]:
        credentials = self._api_key.get()
        reread = False
        attempt = 0
        while True:
            attempt += 1
            if not deadline.allows(MIN_ATTEMPT_SECONDS):
                raise UpstreamTimeout("openai", "no time left for the request")
            timeout = httpx.Timeout(
                deadline.cap(READ_TIMEOUT), connect=deadline.cap(CONNECT_TIMEOUT)
            )
            try:
                reply = self._post(path, body, credentials.headers() | headers, timeout)
            except httpx.TimeoutException as exc:
                # A read timeout may have minted upstream; retrying would only mint twice.
                if isinstance(exc, httpx.ConnectTimeout) and self._may_retry(attempt, deadline):
                    continue
                raise UpstreamTimeout("openai", type(exc).__name__) from None
            except httpx.HTTPError as exc:
                if self._may_retry(attempt, deadline):
                    continue
                raise DependencyUnavailable("openai", type(exc).__name__, retry_after=5) from None
            status = reply.status
            if status == 200:
                return reply, attempt
            if status == 401 and not reread:
                reread = True  # the key may have been rotated: read it again, once
                credentials = self._api_key.refresh()
                if deadline.allows(MIN_ATTEMPT_SECONDS):
                    continue
            if status in _RETRYABLE and self._may_retry(attempt, deadline, reply):
                continue
            reason = (
                f"HTTP {status} ({_error_code(reply)}; request {reply.headers.get('x-request-id')})"
            )
            if status in _RETRYABLE:
                raise DependencyUnavailable(
                    "openai", reason, retry_after=_retry_after(reply), status=status
                )
            raise UpstreamRejected("openai", reason, status)

    def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], timeout: httpx.Timeout
    ) -> Reply:
        url = f"{self._base}{path}"
        with self._http.stream(
            "POST", url, json=body, headers=headers, timeout=timeout, follow_redirects=False
        ) as response:
            try:  # never buffer an unbounded answer
                content = read_capped(response.iter_bytes(), MAX_RESPONSE_BYTES)
            except TooLarge:
                raise UpstreamBadResponse("openai", "response body too large") from None
            return Reply(response.status_code, response.headers, content)

    def _may_retry(self, attempt: int, deadline: Deadline, reply: Reply | None = None) -> bool:
        if attempt >= 2:
            return False
        pause = 0.1 + 0.2 * self._jitter()
        if reply is not None and reply.status == 429:
            pause = max(pause, min(_retry_after(reply), 2))
        if not deadline.allows(pause + MIN_ATTEMPT_SECONDS + 1):
            return False
        self._sleep(pause)
        return True

    def _expiry(self, data: dict[str, Any], lifetime: int) -> int:
        expires_at = data.get("expires_at")
        now = self._clock()
        if not is_int(expires_at):
            raise UpstreamBadResponse("openai", "expires_at is not an integer")
        if not now < expires_at <= now + lifetime + 120:
            raise UpstreamBadResponse("openai", "expires_at is past or beyond the asked lifetime")
        return expires_at


def _json(content: bytes) -> dict[str, Any]:
    try:
        return json_object(content)
    except ValueError as exc:  # NotJson or NotAnObject: the message says which
        raise UpstreamBadResponse("openai", f"response is {exc}") from None


def _secret_value(data: dict[str, Any]) -> str:
    value = data.get("value")
    if not isinstance(value, str) or not _SECRET_VALUE.fullmatch(value):
        raise UpstreamBadResponse("openai", "value is not a client secret")
    return value


def _session(data: dict[str, Any], model: str | None) -> dict[str, Any]:
    session = data.get("session")
    if not isinstance(session, dict):
        raise UpstreamBadResponse("openai", "session is missing")
    for name in ("type", "id", "object"):
        if not isinstance(session.get(name), str):
            raise UpstreamBadResponse("openai", f"session.{name} is missing")
    if model is not None and session.get("model", model) != model:
        raise UpstreamBadResponse("openai", "session.model is not the model asked for")
    return session


def _error_code(reply: Reply) -> str:
    try:
        error = json_object(reply.content).get("error")
    except ValueError:
        return "no error body"
    if not isinstance(error, dict):
        return "no error body"
    return str(error.get("code") or error.get("type") or "no code")[:64]


def _retry_after(reply: Reply) -> int:
    raw = reply.headers.get("retry-after", "")
    return min(max(int(raw), 1), 3600) if raw.isdigit() else 5
