"""OpenAI's GPT-Live REST API, as the token function uses it: it creates a Live session for the
browser's WebRTC offer with the standard key (Live has no browser secrets), never retried (a
retry could create, and bill, a second session).

`POST /live/sessions`, JSON `{session, transport: {type: "webrtc", sdp}}`, answers 201
`{session: {id}, transport: {type: "webrtc", sdp}}`. OpenAI documents its REST hangup for SIP
sessions only: a session is ended through its sideband (`api.starter.LiveCloser`, which asks
the call watcher's function).
"""

from __future__ import annotations

import time
from typing import Any

from ..core.deadline import Deadline
from ..core.errors import UpstreamBadResponse
from ..core.ids import CALL_ID, CallId, UserId
from ..core.openai_rest import OpenAIRest, Upstream
from ..core.parsing import json_object
from .policy import CallPlan
from .realtime import PlacedCall


class LiveApi(OpenAIRest):
    """Creates GPT-Live sessions."""

    def create(self, plan: CallPlan, sdp: str, user: UserId, deadline: Deadline) -> PlacedCall:
        """The profile's session for `user` (its pseudonym as the safety identifier), the
        answer and OpenAI's session id."""
        started = time.monotonic()
        body: dict[str, Any] = {
            "session": plan.session | {"safety_identifier": user},
            "transport": {"type": "webrtc", "sdp": sdp},
        }
        reply, attempts = self._send(
            "/live/sessions", {}, deadline, json_body=body, success=201, retry=False
        )
        upstream = Upstream(
            reply.status, reply.headers.get("x-request-id"), attempts, time.monotonic() - started
        )
        try:
            data = json_object(reply.content)
        except ValueError as exc:
            raise UpstreamBadResponse("openai", f"response is {exc}") from None
        session, transport = data.get("session"), data.get("transport")
        session_id = session.get("id") if isinstance(session, dict) else None
        answer = transport.get("sdp") if isinstance(transport, dict) else None
        if not isinstance(session_id, str) or not CALL_ID.fullmatch(session_id):
            raise UpstreamBadResponse("openai", "the session's id is missing or odd")
        if not isinstance(answer, str) or not answer.startswith("v=0"):
            raise UpstreamBadResponse("openai", "the answer is not SDP")
        return PlacedCall(CallId(session_id), answer, upstream)
