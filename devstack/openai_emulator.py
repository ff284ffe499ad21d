"""A local stand-in for OpenAI's voice APIs: the Realtime API (its GA shape, as OpenAI
documents it: client secrets, WebRTC calls answered by a real aiortc peer, hangup, the
sideband) and GPT-Live (WebRTC sessions created with the standard key, their sideband, usage
in seconds and `session.closed`), with fault switches for every endpoint.

    python -m devstack.openai_emulator --host 127.0.0.1 --port 8090 --server-key sk-local
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from devstack.delay import delay_media
from devstack.network import Link
from devstack.openai_live import LiveSession
from devstack.openai_live_schema import check_create
from devstack.openai_live_sideband import open_live_sideband
from devstack.openai_live_usage import check_live_script
from devstack.openai_rtc import SESSION_LIMIT_S, Call
from devstack.openai_schema import (
    ApiError,
    apply_session,
    build_session,
    check_client_secret_request,
    check_session,
    new_id,
    refuse_beta_shape,
)
from devstack.openai_sideband import open_sideband
from devstack.openai_usage import check_script
from devstack.wire import NotJson, is_int, json_value

log = logging.getLogger("openai_emulator")

Clock = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENDPOINTS = ("client_secrets", "calls", "sideband", "live_sessions", "live_sideband")
FAULTS = ("429", "insufficient_quota", "500", "503", "hang", "malformed", "missing_value")
HANG_LIMIT_S = 60.0
RETRY_AFTER_S = "1"
RECORDED_HEADERS = (
    "Content-Type",
    "OpenAI-Beta",
    "OpenAI-Organization",
    "OpenAI-Project",
    "OpenAI-Safety-Identifier",
    "User-Agent",
    "X-OpenAI-Agents-SDK",
)
ENDED_CALLS_KEPT = 50
# How often a Live session reports its usage. OpenAI's cadence is unverified (Azure documents
# about once a minute); every second locally, so that a meter is seen moving.
LIVE_USAGE_EVERY_S = 1.0
SECRET_KEYS = frozenset({"value", "client_secret", "api_key", "authorization", "api-key"})


@dataclass
class Secret:
    value: str
    expires_at: int
    session: dict[str, Any]
    safety_identifier: str | None


@dataclass
class Fault:
    kind: str
    remaining: int | None  # None: until cleared

    def describe(self) -> dict[str, Any]:
        return {"fault": self.kind, "remaining": self.remaining}


@dataclass
class Emulator:
    """Everything the emulator remembers; one per application."""

    server_key: str
    clock: Clock
    session_limit_s: float = SESSION_LIMIT_S
    live_usage_every_s: float = LIVE_USAGE_EVERY_S
    secrets: dict[str, Secret] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)
    ended_calls: list[dict[str, Any]] = field(default_factory=list)  # the latest, oldest first
    live_sessions: dict[str, LiveSession] = field(default_factory=dict)
    ended_live_sessions: list[dict[str, Any]] = field(default_factory=list)  # as ended_calls
    live_sessions_total: int = 0
    live_closing: list[LiveSession] = field(default_factory=list)  # ended, the peer closing
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    last_requests: dict[str, Any] = field(default_factory=dict)
    safety_identifiers: list[str | None] = field(default_factory=list)
    secrets_minted: int = 0
    calls_total: int = 0
    hangups: int = 0
    sidebands_total: int = 0
    faults_served: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> int:
        return int(self.clock())

    def take_fault(self, endpoint: str) -> str | None:
        fault = self.faults.get(endpoint)
        if fault is None:
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self.faults[endpoint]
        self.faults_served += 1
        return fault.kind

    def record(self, endpoint: str, request: web.Request, body: Any) -> None:
        self.requests[endpoint] = self.requests.get(endpoint, 0) + 1
        headers = {
            name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers
        }
        self.last_requests[endpoint] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "auth": self.auth_kind(request),
            "headers": headers,
            "body": redact(body, self.server_key),
        }

    def auth_kind(self, request: web.Request) -> str:
        token = bearer(request)
        if token is None:
            return "missing"
        if secrets.compare_digest(token.encode(), self.server_key.encode()):
            return "server_key"
        if token in self.secrets:
            return "client_secret"
        return "invalid"

    def state(self) -> dict[str, Any]:
        now = self.now()
        return {
            "secrets_minted": self.secrets_minted,
            "secrets_live": sum(1 for s in self.secrets.values() if s.expires_at > now),
            "calls_open": len(self.calls),
            "calls_total": self.calls_total,
            "hangups": self.hangups,
            "requests": dict(self.requests),
            "last_safety_identifier": self.safety_identifiers[-1]
            if self.safety_identifiers
            else None,
            "safety_identifiers": self.safety_identifiers[-20:],
            "last_requests": self.last_requests,
            "faults": self.fault_state(),
            "faults_served": self.faults_served,
            "open_calls": [
                {
                    "id": call.id,
                    "audio": call.audio_source,
                    "events_sent": call.events_sent,
                    # The effective session, as the model would follow it now.
                    "session": call.session,
                    "sidebands": len(call.listeners),
                    "sidebands_total": call.sidebands_total,
                    "sidebands_peak": call.sidebands_peak,
                    "usages": call.usages,
                }
                for call in self.calls.values()
            ],
            "sidebands_total": self.sidebands_total,
            "ended_calls": list(self.ended_calls),
            "session_limit_s": self.session_limit_s,
            # GPT-Live: each session with its usage (every update sent, the final one), its
            # backend usages, sidebands, the audio copies' bytes and the channel's permissions.
            "live_sessions_open": [live.describe() for live in self.live_sessions.values()],
            "live_sessions_ended": list(self.ended_live_sessions),
            "live_sessions_total": self.live_sessions_total,
            "live_usage_every_s": self.live_usage_every_s,
        }

    def fault_state(self) -> dict[str, Any]:
        return {
            name: self.faults[name].describe() if name in self.faults else None
            for name in ENDPOINTS
        }

    def forget_call(self, call: Call) -> None:
        """Called once per call, however it ended: what ended it stays visible to tests."""
        self.calls.pop(call.id, None)
        seconds = round(time.monotonic() - call.started, 3)
        self.ended_calls.append(
            {
                "id": call.id,
                "ended_by": call.ended_by,
                "seconds": seconds,
                "sidebands_total": call.sidebands_total,
                "sidebands_peak": call.sidebands_peak,
                "usages": call.usages,
            }
        )
        del self.ended_calls[:-ENDED_CALLS_KEPT]

    def forget_live_session(self, live: LiveSession) -> None:
        """Called once per Live session, however it ended."""
        self.live_sessions.pop(live.id, None)
        self.live_closing = [*(s for s in self.live_closing if not s.finished.is_set()), live]
        self.ended_live_sessions.append(live.describe())
        del self.ended_live_sessions[:-ENDED_CALLS_KEPT]

    def prune_secrets(self) -> None:
        # Old secrets only need to be remembered long enough to answer "expired" clearly.
        cutoff = self.now() - 3600
        for value in [v for v, s in self.secrets.items() if s.expires_at < cutoff]:
            del self.secrets[value]


EMULATOR = web.AppKey("emulator", Emulator)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("api-key") or None  # Azure's header (doc section 5)


def redact(value: Any, server_key: str) -> Any:
    """A request body as tests may see it: no key or secret ever leaves the emulator."""
    if isinstance(value, dict):
        return {
            k: "[redacted]" if k.lower() in SECRET_KEYS else redact(v, server_key)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, server_key) for v in value]
    if isinstance(value, str) and (value == server_key or value.startswith(("sk-", "ek_"))):
        return "[redacted]"
    return value


def masked(token: str) -> str:
    return token[:3] + "*" * 4 + token[-4:] if len(token) > 10 else "*" * len(token)


def invalid_key(token: str | None) -> ApiError:
    if token is None:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        message = f"Incorrect API key provided: {masked(token)}."
    return ApiError(401, message, code="invalid_api_key")


def require_server_key(emulator: Emulator, request: web.Request) -> None:
    if emulator.auth_kind(request) != "server_key":
        raise invalid_key(bearer(request))


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


# --- faults ------------------------------------------------------------------------------


def fault_error(kind: str) -> ApiError | None:
    if kind == "429":
        return ApiError(
            429,
            "Rate limit reached for requests. Please try again in 1s.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    if kind == "insufficient_quota":
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    if kind == "500":
        return ApiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    if kind == "503":
        return ApiError(
            503, "The engine is currently overloaded, please try again later.", type="server_error"
        )
    return None


async def serve_fault(
    emulator: Emulator, request: web.Request, endpoint: str, kind: str
) -> web.Response:
    error = fault_error(kind)
    if error is not None:
        raise error
    if kind == "hang":
        await hang(emulator, request)
        raise ApiError(504, "The emulator gave up waiting (fault 'hang').", type="server_error")
    if endpoint == "calls":
        # An answer no client can use: not SDP, and no Location with a call id.
        return web.Response(
            status=201, body=b"this is not an SDP answer", content_type="application/sdp"
        )
    if endpoint == "live_sessions":
        if kind == "missing_value":  # a session id, but no answer to give the browser
            return json_response({"session": {"id": new_id("live")}}, status=201)
        return web.Response(
            status=201, body=b'{"session": {"id": "live_', content_type="application/json"
        )
    if kind == "missing_value":
        body = {"expires_at": emulator.now() + 600, "session": build_session(None)}
        return json_response(body)
    return web.Response(status=200, body=b'{"value": "ek_', content_type="application/json")


async def hang(emulator: Emulator, request: web.Request) -> None:
    """Holds the request until the client gives up, the emulator stops, or a bound passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_LIMIT_S
    while loop.time() < deadline and not emulator.stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(emulator.stopping.wait(), 0.1)


def fault_gate(endpoint: str) -> Callable[[Handler], Handler]:
    """Runs the endpoint's fault, if one is set, instead of the endpoint."""

    def wrap(handler: Handler) -> Handler:
        async def gated(request: web.Request) -> web.StreamResponse:
            emulator = request.app[EMULATOR]
            kind = emulator.take_fault(endpoint)
            if kind is not None:
                emulator.record(endpoint, request, await peek_body(request))
                log.info("fault %s on %s", kind, endpoint)
                return await serve_fault(emulator, request, endpoint, kind)
            return await handler(request)

        return gated

    return wrap


async def peek_body(request: web.Request) -> Any:
    """The body as recorded for /__emulator/state; never raises (aiohttp caches the body)."""
    text = await request.text() if request.content_type != "multipart/form-data" else ""
    if not text.strip():
        return None
    with contextlib.suppress(NotJson):
        return json_value(text)
    return {"content_type": request.content_type, "unparsed_bytes": len(text.encode())}


# --- POST /v1/realtime/client_secrets ----------------------------------------------------


@fault_gate("client_secrets")
async def create_client_secret(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.record("client_secrets", request, await peek_body(request))
    require_server_key(emulator, request)  # the credential first, as OpenAI does
    body = parse_json_body(await request.text())
    refuse_beta_shape(request.headers)
    seconds, session_request = check_client_secret_request(body)
    secret = Secret(
        value="ek_" + secrets.token_hex(16),
        expires_at=emulator.now() + seconds,
        session=build_session(session_request),
        safety_identifier=request.headers.get("OpenAI-Safety-Identifier"),
    )
    emulator.prune_secrets()
    emulator.secrets[secret.value] = secret
    emulator.secrets_minted += 1
    emulator.safety_identifiers.append(secret.safety_identifier)
    return json_response(
        {"value": secret.value, "expires_at": secret.expires_at, "session": secret.session}
    )


def parse_json_body(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json_value(text)
    except NotJson as error:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        ) from error


# --- POST /v1/realtime/calls -------------------------------------------------------------


@fault_gate("calls")
async def create_call(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.record("calls", request, {"content_type": request.content_type})
    base = call_session(emulator, request)  # the credential first, as OpenAI does
    sdp, session_part = await read_offer(request)
    emulator.last_requests["calls"]["body"] = redact(
        {
            "content_type": request.content_type,
            "sdp_bytes": len(sdp.encode()),
            "session": session_part,
        },
        emulator.server_key,
    )
    # A client secret fixed the model; with the standard key the session part chooses it.
    fixed = emulator.auth_kind(request) == "client_secret"
    session = merge_session_part(base, session_part, model_fixed=fixed)
    if not sdp.strip():
        raise ApiError(
            400,
            "Missing required parameter: 'sdp'.",
            code="missing_required_parameter",
            param="sdp",
        )
    call = Call(session, on_closed=emulator.forget_call, limit_s=emulator.session_limit_s)
    try:
        answer = await call.answer(sdp)
    except BaseException:
        await call.close()
        raise
    emulator.calls[call.id] = call
    emulator.calls_total += 1
    log.info("call %s open (audio: %s)", call.id, call.audio_source)
    return web.Response(
        status=201,
        body=answer.encode(),
        content_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


async def read_offer(request: web.Request) -> tuple[str, dict[str, Any] | None]:
    """The SDP offer and the optional session: raw SDP, or the server-side multipart form."""
    if request.content_type == "application/sdp":
        return await request.text(), None
    if request.content_type == "multipart/form-data":
        return await read_form(request)
    raise ApiError(
        400,
        f"Unsupported content type: '{request.content_type}'. Send the SDP offer as "
        "'application/sdp', or a 'multipart/form-data' form with an 'sdp' part.",
        code="unsupported_content_type",
        param="Content-Type",
    )


async def read_form(request: web.Request) -> tuple[str, dict[str, Any] | None]:
    sdp = ""
    session: dict[str, Any] | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "Nested multipart forms are not supported.")
        text = await part.text()
        name = part.name
        if name == "sdp":
            sdp = text
        elif name == "session":
            session = parse_json_body(text)
        else:
            raise ApiError(
                400, f"Unknown parameter: '{name}'.", code="unknown_parameter", param=name
            )
    return sdp, session


def call_session(emulator: Emulator, request: web.Request) -> dict[str, Any]:
    """The session the credential carries: the secret's, or defaults for the server key."""
    token = bearer(request)
    kind = emulator.auth_kind(request)
    if kind == "server_key":
        return build_session(None)
    secret = emulator.secrets.get(token or "")
    if secret is None:
        raise invalid_key(token)
    if secret.expires_at <= emulator.now():
        raise ApiError(
            401,
            "The client secret has expired. Mint a new one.",
            code="invalid_api_key",
        )
    return secret.session


def merge_session_part(base: dict[str, Any], part: Any, *, model_fixed: bool) -> dict[str, Any]:
    if part is None:
        return base
    request = check_session(part, "session")
    if request["type"] != base["type"]:
        return build_session(request)
    if model_fixed and "model" in request and base.get("model") not in (None, request["model"]):
        raise ApiError(
            400,
            "The model is fixed by the client secret.",
            code="invalid_value",
            param="session.model",
        )
    return apply_session(base, request)


# --- GET /v1/realtime?call_id= (the sideband) ----------------------------------------------


@fault_gate("sideband")
async def sideband(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.record("sideband", request, None)
    return await open_sideband(emulator, request)


# --- GPT-Live: POST /v1/live/sessions and its sideband --------------------------------------


@fault_gate("live_sessions")
async def create_live_session(request: web.Request) -> web.StreamResponse:
    """A WebRTC Live session: the browser's offer in a JSON body, posted by the application's
    server with its standard key (Live has no client secrets); the answer of a real peer."""
    emulator = request.app[EMULATOR]
    emulator.record("live_sessions", request, without_sdp(await peek_body(request)))
    require_server_key(emulator, request)  # the credential first, as OpenAI does
    if request.content_type != "application/json":
        raise ApiError(
            400,
            f"Unsupported content type: '{request.content_type}'. A Live session is created "
            "with a JSON body: {session, transport: {type: 'webrtc', sdp}}.",
            code="unsupported_content_type",
            param="Content-Type",
        )
    session_request, sdp = check_create(parse_json_body(await request.text()))
    live = LiveSession(
        session_request,
        clock=emulator.clock,
        limit_s=emulator.session_limit_s,
        usage_every_s=emulator.live_usage_every_s,
        on_closed=emulator.forget_live_session,
    )
    try:
        answer = await live.answer(sdp)
    except BaseException:
        await live.discard()
        raise
    emulator.live_sessions[live.id] = live
    emulator.live_sessions_total += 1
    log.info("live session %s open (audio: %s)", live.id, live.audio_source)
    return json_response(
        {"session": {"id": live.id}, "transport": {"type": "webrtc", "sdp": answer}}, status=201
    )


def without_sdp(body: Any) -> Any:
    """A create as /__emulator/state records it: the offer's size, not the offer."""
    transport = body.get("transport") if isinstance(body, dict) else None
    if isinstance(transport, dict) and isinstance(transport.get("sdp"), str):
        sdp = transport["sdp"]
        return body | {
            "transport": {k: v for k, v in transport.items() if k != "sdp"}
            | {"sdp_bytes": len(sdp.encode())}
        }
    return body


async def live_websocket(request: web.Request) -> web.StreamResponse:
    raise ApiError(
        400,
        "The local emulator serves Live over WebRTC only (POST /v1/live/sessions), not over "
        "its primary WebSocket.",
        code="unsupported_transport",
    )


@fault_gate("live_sideband")
async def live_sideband(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.record("live_sideband", request, None)
    return await open_live_sideband(emulator, request)


# --- POST /v1/realtime/calls/{call_id}/hangup ----------------------------------------------


async def hangup(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.record("hangup", request, None)
    require_server_key(emulator, request)
    call_id = request.match_info["call_id"]
    call = emulator.calls.get(call_id)
    if call is None:
        raise ApiError(404, f"Call '{call_id}' not found.", code="call_not_found", param="call_id")
    await call.close("hangup")
    emulator.hangups += 1
    return json_response({})


# --- /__emulator: switches for tests and demos ---------------------------------------------


async def get_state(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[EMULATOR].state())


async def get_faults(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[EMULATOR].fault_state())


async def set_faults(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    body = parse_json_body(await request.text()) or {}
    apply_fault_request(emulator, body)
    return json_response(emulator.fault_state())


async def clear_faults(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.faults.clear()
    return json_response(emulator.fault_state())


async def script_call(request: web.Request) -> web.StreamResponse:
    """What a live call's next responses and transcriptions report as their usage, in order
    (tests of exact accounting choose the sizes; the call's own counts resume after)."""
    emulator = request.app[EMULATOR]
    call_id = request.match_info["call_id"]
    call = emulator.calls.get(call_id)
    if call is None:
        raise ApiError(404, f"Call '{call_id}' not found.", code="call_not_found", param="call_id")
    responses, transcriptions = check_script(parse_json_body(await request.text()))
    call.scripted_responses.extend(responses)
    call.scripted_transcriptions.extend(transcriptions)
    return json_response(
        {
            "responses": len(call.scripted_responses),
            "transcriptions": len(call.scripted_transcriptions),
        }
    )


async def script_live_session(request: web.Request) -> web.StreamResponse:
    """What a Live session's caller says next and what its backend responses report
    (devstack/openai_live_usage.py): each scripted usage is reported at once, as a delegation
    of its own, or by the turn a scripted caller's words start."""
    emulator = request.app[EMULATOR]
    session_id = request.match_info["session_id"]
    live = emulator.live_sessions.get(session_id)
    if live is None or live.closed:
        raise ApiError(
            404,
            f"Live session '{session_id}' not found.",
            code="session_not_found",
            param="session_id",
        )
    says, responses = check_live_script(parse_json_body(await request.text()))
    live.run_script(says, responses)
    return json_response({"caller_says": len(says), "responses": len(responses)})


def apply_fault_request(emulator: Emulator, body: Any) -> None:
    if not isinstance(body, dict):
        raise ApiError(400, "Expected a JSON object.", code="invalid_type")
    for key in body:
        if key not in (*ENDPOINTS, "times"):
            raise ApiError(400, f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key)
    times = body.get("times")
    if times is not None and (not is_int(times) or times < 1):
        raise ApiError(
            400, "'times' must be a positive integer.", code="invalid_value", param="times"
        )
    for endpoint in ENDPOINTS:
        if endpoint not in body:
            continue
        kind = body[endpoint]
        if kind is None:
            emulator.faults.pop(endpoint, None)
            continue
        if str(kind) not in FAULTS:
            supported = ", ".join(FAULTS)
            raise ApiError(
                400,
                f"Invalid fault '{kind}'. Supported: {supported}, or null.",
                code="invalid_value",
                param=endpoint,
            )
        emulator.faults[endpoint] = Fault(str(kind), times)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def parse_fault_flag(flag: str) -> tuple[str, str]:
    endpoint, _, kind = flag.partition("=")
    if endpoint not in ENDPOINTS or kind not in FAULTS:
        raise argparse.ArgumentTypeError(
            f"expected ENDPOINT=FAULT with ENDPOINT in {ENDPOINTS} and FAULT in {FAULTS}"
        )
    return endpoint, kind


# --- the application -----------------------------------------------------------------------


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """OpenAI's error envelope, request id and CORS on every /v1 answer."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    if request.method == "OPTIONS":
        return cors(web.Response(status=204))
    try:
        response = await handler(request)
    except ApiError as error:
        response = json_response(error.envelope(), error.status, error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = json_response(route_error(request, error).envelope(), error.status)
    if response.prepared:  # a sideband's upgrade: its headers left long ago
        return response
    response.headers["x-request-id"] = "req_" + secrets.token_hex(16)
    return cors(response)


@web.middleware
async def plain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return json_response(error.envelope(), error.status, error.headers)


def route_error(request: web.Request, error: web.HTTPException) -> ApiError:
    if error.status == 404:
        return ApiError(404, f"Invalid URL ({request.method} {request.path})")
    return ApiError(error.status, error.reason)


# What a browser may send OpenAI's API: any origin, and the headers OpenAI's own browser SDKs
# send (the Agents SDK's `X-OpenAI-Agents-SDK` on its offer, the `openai` package's
# `X-Stainless-*`, its optional organization and project), nothing else: OpenAI is reported to
# refuse a preflight naming another header (a client's own `originator`), so an app that adds
# one fails here as it would there (devstack/README.md).
CORS_ALLOW_HEADERS = (
    "Authorization", "Content-Type", "OpenAI-Organization", "OpenAI-Project",
    "OpenAI-Safety-Identifier", "X-OpenAI-Agents-SDK", "X-Stainless-Arch", "X-Stainless-Lang",
    "X-Stainless-OS", "X-Stainless-Package-Version", "X-Stainless-Retry-Count",
    "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Timeout",
)  # fmt: skip


def cors(response: web.StreamResponse) -> web.StreamResponse:
    # The browser posts its SDP offer straight to /v1/realtime/calls and must read Location.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = ", ".join(CORS_ALLOW_HEADERS)
    response.headers["Access-Control-Expose-Headers"] = "Location, x-request-id"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


async def close_calls(app: web.Application) -> None:
    emulator = app[EMULATOR]
    emulator.stopping.set()
    calls = list(emulator.calls.values())
    await asyncio.gather(*(call.close("shutdown") for call in calls), return_exceptions=True)
    # OpenAI going away, as a Live session's connections see it.
    lives = list(emulator.live_sessions.values())
    await asyncio.gather(*(live.end("connection_lost") for live in lives), return_exceptions=True)
    closing = [live.finished.wait() for live in emulator.live_closing]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*closing), HANG_LIMIT_S)


def create_app(
    server_key: str,
    *,
    clock: Clock = time.time,
    faults: Sequence[tuple[str, str]] = (),
    session_limit_s: float = SESSION_LIMIT_S,
    live_usage_every_s: float = LIVE_USAGE_EVERY_S,
) -> web.Application:
    """`session_limit_s` is OpenAI's 60-minute cap; tests shorten it to see a call hit it. A
    Live session lasts as long (its `expires_at`: OpenAI's horizon is unverified) and reports
    its usage every `live_usage_every_s`."""
    if not server_key:
        raise ValueError("server_key must not be empty")
    if not session_limit_s > 0:
        raise ValueError("session_limit_s must be positive")
    if not live_usage_every_s > 0:
        raise ValueError("live_usage_every_s must be positive")
    app = web.Application(middlewares=[openai_errors, plain_errors])
    emulator = Emulator(
        server_key=server_key,
        clock=clock,
        session_limit_s=session_limit_s,
        live_usage_every_s=live_usage_every_s,
    )
    for endpoint, kind in faults:
        emulator.faults[endpoint] = Fault(kind, None)
    app[EMULATOR] = emulator
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup)
    app.router.add_get("/v1/realtime", sideband)
    app.router.add_post("/v1/live/sessions", create_live_session)
    app.router.add_get("/v1/live/sessions", live_websocket)
    app.router.add_get("/v1/live/sessions/{session_id}/attach", live_sideband)
    app.router.add_get("/__emulator/state", get_state)
    app.router.add_get("/__emulator/faults", get_faults)
    app.router.add_post("/__emulator/faults", set_faults)
    app.router.add_delete("/__emulator/faults", clear_faults)
    app.router.add_post("/__emulator/calls/{call_id}/script", script_call)
    app.router.add_post("/__emulator/live/sessions/{session_id}/script", script_live_session)
    app.on_shutdown.append(close_calls)
    return app


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.openai_emulator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument(
        "--server-key",
        default=os.environ.get("OPENAI_EMULATOR_SERVER_KEY"),
        help="the standard API key the emulator accepts (env OPENAI_EMULATOR_SERVER_KEY)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=parse_fault_flag,
        default=[],
        metavar="ENDPOINT=FAULT",
        help="e.g. client_secrets=429; repeatable",
    )
    parser.add_argument(
        "--session-limit",
        type=positive_seconds,
        default=os.environ.get("OPENAI_EMULATOR_SESSION_LIMIT_S", str(SESSION_LIMIT_S)),
        metavar="SECONDS",
        help="the longest a call or a Live session lasts, OpenAI's 60 minutes by default "
        "(env OPENAI_EMULATOR_SESSION_LIMIT_S)",
    )
    parser.add_argument(
        "--live-usage-every",
        type=positive_seconds,
        default=os.environ.get("OPENAI_EMULATOR_LIVE_USAGE_EVERY_S", str(LIVE_USAGE_EVERY_S)),
        metavar="SECONDS",
        help="how often a Live session reports its usage, every second by default "
        "(env OPENAI_EMULATOR_LIVE_USAGE_EVERY_S)",
    )
    parser.add_argument(
        "--media-link",
        type=parse_media_link,
        default=None,
        metavar="JSON",
        help="a network profile's browser-to-OpenAI link (devstack/network.py's Link as JSON) "
        "put on every call's media path: ICE, DTLS, SCTP and RTP (devstack/delay.py)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.server_key:
        parser.error("--server-key is required")
    return args


async def serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"OpenAI Realtime and Live emulator on http://{host}:{bound}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def parse_media_link(text: str) -> Link:
    try:
        return Link(**json.loads(text))
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"not a link: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.media_link is not None:
        delay_media(args.media_link)
        print(f"media path delayed: {args.media_link}", flush=True)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app = create_app(
        args.server_key,
        faults=args.fault,
        session_limit_s=args.session_limit,
        live_usage_every_s=args.live_usage_every,
    )
    try:
        asyncio.run(serve(app, args.host, args.port))
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        print(
            f"openai_emulator: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
