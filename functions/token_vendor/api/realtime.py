"""OpenAI's Realtime REST API, as the token function uses it: it mints client secrets and
places server-owned calls (the browser's SDP offer relayed with the standard key, never
retried: a retry can allocate a second call). Requests go through the shared request path
(`core.openai_rest`), which also hangs calls up.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from ..core.deadline import Deadline
from ..core.errors import UpstreamBadResponse
from ..core.ids import CALL_ID, CallId, UserId
from ..core.openai_rest import RealtimeRest, Upstream
from ..core.parsing import is_int, json_object
from .policy import CallPlan

_SECRET_VALUE = re.compile(r"ek_[A-Za-z0-9_-]{8,256}")


@dataclass(frozen=True)
class ClientSecret:
    """A minted `ek_` client secret, its expiry and the session OpenAI echoed."""

    value: str
    expires_at: int
    session: dict[str, Any]
    upstream: Upstream


@dataclass(frozen=True)
class PlacedCall:
    call_id: CallId
    answer_sdp: str
    upstream: Upstream


class RealtimeApi(RealtimeRest):
    """Mints client secrets and places calls."""

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

    def create(self, plan: CallPlan, sdp: str, user: UserId, deadline: Deadline) -> PlacedCall:
        """A server-owned call for the plan (placement's way to create either family)."""
        return self.create_call(sdp, plan.session, user, deadline)

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
        return PlacedCall(CallId(call_id), answer, upstream)

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
