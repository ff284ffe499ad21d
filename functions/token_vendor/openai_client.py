"""OpenAI's Realtime REST API, as this function uses it.

One request path (`_send`) owns what every call needs: the key and its 401 re-read, the
retry budget, the timeouts against the Lambda deadline, the size cap, and the mapping of
failures to domain errors. It mints client secrets, places server-owned calls (the browser's
SDP offer relayed with the standard key, never retried: a retry can allocate a second call)
and hangs them up.
"""

from __future__ import annotations

import json
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
CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


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


@dataclass(frozen=True)
class PlacedCall:
    call_id: str
    answer_sdp: str
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
            {"OpenAI-Safety-Identifier": safety_identifier},
            deadline,
            json_body=body,
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

    def create_call(
        self, sdp: str, session: dict[str, Any], safety_identifier: str, deadline: Deadline
    ) -> PlacedCall:
        """Relay the offer with the standard key; the answer and OpenAI's call id. Never
        retried, not even after a timeout: OpenAI may have allocated the call."""
        started = time.monotonic()
        files = {
            "sdp": (None, sdp, "application/sdp"),
            "session": (None, json.dumps(session), "application/json"),
        }
        reply, attempts = self._send(
            "/realtime/calls",
            {"OpenAI-Safety-Identifier": safety_identifier, "Accept": "application/sdp"},
            deadline,
            files=files,
            success=201,
            retry=False,
        )
        upstream = Upstream(
            reply.status, reply.headers.get("x-request-id"), attempts, time.monotonic() - started
        )
        call_id = reply.headers.get("location", "").rstrip("/").rsplit("/", 1)[-1]
        if not CALL_ID.fullmatch(call_id):
            raise UpstreamBadResponse("openai", "the call's Location is missing or odd")
        try:
            answer = reply.content.decode("utf-8")
        except UnicodeDecodeError:
            raise UpstreamBadResponse("openai", "the answer is not text") from None
        if not answer.startswith("v=0"):
            raise UpstreamBadResponse("openai", "the answer is not SDP")
        return PlacedCall(call_id, answer, upstream)

    def hang_up(self, call_id: str, deadline: Deadline) -> bool:
        """End a call upstream. False when OpenAI no longer knows it (it ended already)."""
        if not CALL_ID.fullmatch(call_id):
            return False
        try:
            self._send(f"/realtime/calls/{call_id}/hangup", {}, deadline)
        except UpstreamRejected as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _send(
        self,
        path: str,
        headers: dict[str, str],
        deadline: Deadline,
        *,
        json_body: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        success: int = 200,
        retry: bool = True,
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
                reply = self._post(path, json_body, files, credentials.headers() | headers, timeout)
            except httpx.TimeoutException as exc:
                # A read timeout may have minted upstream; retrying would only mint twice.
                if (
                    retry
                    and isinstance(exc, httpx.ConnectTimeout)
                    and self._may_retry(attempt, deadline)
                ):
                    continue
                raise UpstreamTimeout("openai", type(exc).__name__) from None
            except httpx.HTTPError as exc:
                if retry and self._may_retry(attempt, deadline):
                    continue
                raise DependencyUnavailable("openai", type(exc).__name__, retry_after=5) from None
            status = reply.status
            if status == success:
                return reply, attempt
            if status == 401 and not reread:
                reread = True  # the key may have been rotated: read it again, once
                credentials = self._api_key.refresh()
                if deadline.allows(MIN_ATTEMPT_SECONDS):
                    continue
            if status in _RETRYABLE and retry and self._may_retry(attempt, deadline, reply):
                continue
            reason = f"HTTP {status} ({_error_code(reply)}; request {_request_id(reply)})"
            if status in _RETRYABLE:
                raise DependencyUnavailable(
                    "openai", reason, retry_after=_retry_after(reply), status=status
                )
            raise UpstreamRejected("openai", reason, status)

    def _post(
        self,
        path: str,
        body: dict[str, Any] | None,
        files: dict[str, Any] | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> Reply:
        url = f"{self._base}{path}"
        with self._http.stream(
            "POST",
            url,
            json=body,
            files=files,
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
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


def _request_id(reply: Reply) -> str:
    """OpenAI's request id, for support; capped, as anything quoted from upstream."""
    return str(reply.headers.get("x-request-id"))[:64]


def _retry_after(reply: Reply) -> int:
    raw = reply.headers.get("retry-after", "")
    return min(max(int(raw), 1), 3600) if raw.isdigit() else 5
