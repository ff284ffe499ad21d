"""A fake internet for the function: every outbound HTTP request lands here and is recorded;
the identity provider's key set and OpenAI (client secrets, calls, hangups) answer."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.openai_schema import build_session
from tests.support.identity import ISSUER, JWKS_URL, Issuer

OPENAI_BASE = "https://api.openai.test/v1"
OPENAI_KEY = "sk-test-" + "k" * 40  # the fake OpenAI accepts only this (or what a test sets)


def openai_secret_response(body: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """What OpenAI answers to a mint: the session shaped by the emulator's own schema."""
    now = int(time.time() if now is None else now)
    return {
        "value": "ek_" + secrets.token_hex(16),
        "expires_at": now + body.get("expires_after", {}).get("seconds", 600),
        "session": build_session(body.get("session") or {}),
    }


Responder = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeInternet:
    """Every outbound HTTP request of the function lands here and is recorded."""

    issuer: Issuer
    openai_key: str = OPENAI_KEY
    requests: list[httpx.Request] = field(default_factory=list)
    openai_script: list[Responder] = field(default_factory=list)  # consumed one per mint
    jwks_down: bool = False
    minted: list[str] = field(default_factory=list)
    # Server-owned calls: id -> what the call was placed with; `hung_up` in order of hangup.
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    hung_up: list[str] = field(default_factory=list)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport, follow_redirects=False)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if url.startswith(ISSUER.rstrip("/")):
            if self.jwks_down:
                raise httpx.ConnectError("issuer unreachable", request=request)
            if request.url.path == "/.well-known/openid-configuration":
                return httpx.Response(
                    200, json={"issuer": self.issuer.issuer, "jwks_uri": JWKS_URL}
                )
            if url == JWKS_URL:
                return httpx.Response(200, json=self.issuer.jwks())
            return httpx.Response(404)
        if url.startswith(OPENAI_BASE):
            if self.openai_script:
                return self.openai_script.pop(0)(request)
            return self.openai(request)
        raise httpx.ConnectError(f"no such host in the fake internet: {url}", request=request)

    def openai(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.openai_key}":
            return openai_error(401, "invalid_api_key", "Incorrect API key provided.")
        path = request.url.path.removeprefix("/v1")
        if path == "/realtime/calls":
            return self.place_call(request)
        if path == "/live/sessions":
            return self.create_live(request)
        if path.startswith("/realtime/calls/") and path.endswith("/hangup"):
            return self.hang_up(path.split("/")[3])
        reply = openai_secret_response(json.loads(request.content))
        self.minted.append(reply["value"])
        return httpx.Response(
            200, json=reply, headers={"x-request-id": "req_" + secrets.token_hex(6)}
        )

    def place_call(self, request: httpx.Request) -> httpx.Response:
        """OpenAI's POST /realtime/calls with the standard key: multipart `sdp` + `session`."""
        parts = multipart_parts(request)
        if set(parts) - {"sdp", "session"} or not parts.get("sdp", "").startswith("v=0"):
            return openai_error(400, "invalid_value", "Invalid SDP offer.")
        call_id = "rtc_" + secrets.token_hex(12)
        self.calls[call_id] = {
            "sdp": parts["sdp"],
            "session": json.loads(parts.get("session", "{}")),
            "live": True,
            "safety_identifier": request.headers.get("openai-safety-identifier"),
        }
        return httpx.Response(
            201,
            content=ANSWER_SDP.encode(),
            headers={
                "content-type": "application/sdp",
                "location": f"/v1/realtime/calls/{call_id}",
                "x-request-id": "req_" + secrets.token_hex(6),
            },
        )

    def create_live(self, request: httpx.Request) -> httpx.Response:
        """OpenAI's POST /live/sessions with the standard key: JSON `session` + `transport`."""
        body = json.loads(request.content)
        transport = body.get("transport") or {}
        if transport.get("type") != "webrtc" or not str(transport.get("sdp")).startswith("v=0"):
            return openai_error(400, "invalid_value", "Invalid SDP offer.")
        session_id = "live_" + secrets.token_hex(10)
        self.calls[session_id] = {
            "sdp": transport["sdp"],
            "session": body.get("session"),
            "live": True,
            "safety_identifier": (body.get("session") or {}).get("safety_identifier"),
        }
        return httpx.Response(
            201,
            json={
                "session": {"id": session_id},
                "transport": {"type": "webrtc", "sdp": ANSWER_SDP},
            },
            headers={"x-request-id": "req_" + secrets.token_hex(6)},
        )

    def hang_up(self, call_id: str) -> httpx.Response:
        call = self.calls.get(call_id)
        if call is None or not call["live"]:
            return openai_error(404, "call_not_found", "No such call.")
        call["live"] = False
        self.hung_up.append(call_id)
        return httpx.Response(200, json={})

    def live_calls(self) -> list[str]:
        return [call_id for call_id, call in self.calls.items() if call["live"]]

    def openai_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url).startswith(OPENAI_BASE)]

    def issuer_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url).startswith(ISSUER.rstrip("/"))]


ANSWER_SDP = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
)
OFFER_SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
    "a=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
)


def multipart_parts(request: httpx.Request) -> dict[str, str]:
    """The named parts of a multipart/form-data request, as text."""
    from email import policy
    from email.parser import BytesParser

    header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(header + request.content)
    if not message.is_multipart():
        return {}
    return {
        str(part.get_param("name", header="content-disposition")): bytes(
            part.get_payload(decode=True)
        ).decode()
        for part in message.iter_parts()
    }


def openai_error(
    status: int, code: str | None, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        },
        headers={"x-request-id": "req_err"} | (headers or {}),
    )
