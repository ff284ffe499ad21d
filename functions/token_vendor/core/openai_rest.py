"""OpenAI's REST API as both functions call it: one request path for every call.

`OpenAIRest._send` owns what every request needs: the key and its 401 re-read, the retry
budget, the timeouts against the caller's deadline, the size cap, and the mapping of failures
to domain errors. `RealtimeRest` hangs Realtime calls up (both functions do); minting and
placing calls are the token function's (`api.realtime`, `api.live`). A GPT-Live session has no
REST hangup for WebRTC: it is closed through its sideband (`watcher.closer`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .deadline import Deadline
from .errors import DependencyUnavailable, UpstreamBadResponse, UpstreamRejected, UpstreamTimeout
from .ids import CALL_ID, CallId, UserId
from .openai_key import OpenAICredentials
from .parsing import TooLarge, json_object, read_capped

MAX_RESPONSE_BYTES = 64 * 1024
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 8.0
MIN_ATTEMPT_SECONDS = 1.0  # an attempt with less time than this left is not worth starting
_RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


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


HANGUP_PATH = "/realtime/calls/{}/hangup"  # a Realtime call's


class OpenAIRest:
    """Adapter for OpenAI's REST API: retries, timeouts and the key's 401 re-read."""

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


class RealtimeRest(OpenAIRest):
    """OpenAI's REST API with the Realtime call's hangup."""

    def hang_up(self, call_id: CallId, deadline: Deadline, user: UserId | None = None) -> bool:
        """End a call upstream. False when OpenAI no longer knows it (it ended already).
        (`user` is not needed: a Realtime call's usage is metered from its events.)"""
        if not CALL_ID.fullmatch(call_id):
            return False
        try:
            self._send(HANGUP_PATH.format(call_id), {}, deadline)
        except UpstreamRejected as exc:
            if exc.status == 404:
                return False
            raise
        return True
