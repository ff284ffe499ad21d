"""The local OpenAI Realtime emulator against the contract OpenAI documents.

The conformance oracle is the `openai` package: every HTTP answer and every data-channel event
is parsed with its typed models, and any field those models do not know is a failure too."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
import openai
import pydantic
import pytest
from aiohttp import web
from openai.types.realtime import ClientSecretCreateResponse

from devstack.openai_emulator import EMULATOR, create_app
from tests.support.caller import Caller, run
from tests.support.emulator import KEY, Running, assert_error, emulator_thread, server_headers
from tests.support.env import ROOT
from tests.support.oracle import SECRET, conform_event, conform_secret
from tests.support.realtime import LOCATION, user_says

pytestmark = pytest.mark.stack

T = TypeVar("T")


def test_the_oracle_rejects_broken_payloads() -> None:
    session = {"type": "realtime", "object": "realtime.session", "id": "sess_1"}
    good: dict[str, Any] = {"value": "ek_" + "0" * 32, "expires_at": 1, "session": session}
    ClientSecretCreateResponse.model_validate(good)
    broken: list[tuple[type[pydantic.BaseModel], dict[str, Any]]] = [
        (ClientSecretCreateResponse, {k: v for k, v in good.items() if k != "value"}),
        (ClientSecretCreateResponse, good | {"session": {"type": "realtime", "id": "sess_1"}}),
        (
            ClientSecretCreateResponse,
            good | {"session": session | {"output_modalities": ["video"]}},
        ),
    ]
    for model, payload in broken:
        with pytest.raises(pydantic.ValidationError):
            model.model_validate(payload)
    for event in (
        {"type": "session.created", "event_id": "event_1", "session": {"type": "bogus"}},
        {"type": "response.done", "event_id": "event_1", "response": {"status": "finished"}},
        {"type": "response.output_text.delta", "event_id": "event_1", "delta": "hi"},
        {"type": "conversation.created", "conversation": {}},
    ):
        with pytest.raises(pydantic.ValidationError):
            conform_event(event)
    with pytest.raises(AssertionError, match="not an OpenAI Realtime server event"):
        conform_event({"type": "session.welcome", "event_id": "event_1"})
    with pytest.raises(AssertionError):  # valid for pydantic, but a field the SDK never heard of
        conform_event(
            {
                "type": "conversation.created",
                "event_id": "event_1",
                "conversation": {},
                "surprise": 1,
            }
        )


# --- the emulator under test, on loopback in its own thread ---------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Running]:
    with emulator_thread() as running:
        yield running


@pytest.fixture(scope="module")
def http(emulator: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=10) as client:
        yield client


@pytest.fixture(autouse=True)
def _fresh(emulator: Running, http: httpx.Client) -> Iterator[None]:
    emulator.clock.offset = 0
    http.delete("/__emulator/faults").raise_for_status()
    yield
    http.delete("/__emulator/faults").raise_for_status()


def mint(http: httpx.Client, body: Any = None, **headers: str) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": server_headers(**headers)}
    if body is not None:
        kwargs["json"] = body
    return http.post("/v1/realtime/client_secrets", **kwargs)


def state(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/__emulator/state")
    response.raise_for_status()
    return typing.cast(dict[str, Any], response.json())


# --- POST /v1/realtime/client_secrets -------------------------------------------------------


def test_an_empty_request_gets_a_secret_with_every_default(
    http: httpx.Client, emulator: Running
) -> None:
    before = int(emulator.clock())
    secret = conform_secret(mint(http))
    assert before + 600 <= secret.expires_at <= before + 601
    session = secret.session.model_dump(mode="json", exclude_unset=True)
    assert session["model"] == "gpt-realtime-2.1"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}


def test_the_documented_request_gets_the_documented_answer(http: httpx.Client) -> None:
    body = {
        "expires_after": {"anchor": "created_at", "seconds": 60},
        "session": {
            "type": "realtime",
            "model": "gpt-realtime-2.1",
            "instructions": "You are a friendly assistant.",
            "audio": {"output": {"voice": "marin"}},
        },
    }
    response = mint(http, body)
    secret = conform_secret(response)
    session = response.json()["session"]
    assert session.pop("id") == secret.session.id
    assert session == {
        "type": "realtime",
        "object": "realtime.session",
        "model": "gpt-realtime-2.1",
        "output_modalities": ["audio"],
        "instructions": "You are a friendly assistant.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": 0,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "marin",
                "speed": 1.0,
            },
        },
    }


@pytest.mark.parametrize(
    "session",
    [
        {"type": "realtime", "model": "gpt-realtime-2.1-2026-08-01"},
        {"type": "realtime", "model": "gpt-realtime-mini", "output_modalities": ["text"]},
        {"type": "realtime", "audio": {"output": {"voice": {"id": "voice_1234"}, "speed": 1.2}}},
        {
            "type": "realtime",
            "audio": {
                "input": {
                    "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
                    "noise_reduction": {"type": "near_field"},
                }
            },
            "max_output_tokens": 512,
            "tracing": "auto",
        },
        {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        {
            "type": "transcription",
            "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"}}},
        },
    ],
    ids=["snapshot", "text", "custom-voice", "semantic-vad", "no-vad", "transcription"],
)
def test_valid_sessions_are_accepted_and_completed(
    http: httpx.Client, session: dict[str, Any]
) -> None:
    secret = conform_secret(mint(http, {"session": session}))
    assert secret.session.type == session["type"]


def test_the_sdk_mints_through_the_emulator(emulator: Running) -> None:
    client = openai.OpenAI(base_url=emulator.v1, api_key=KEY, max_retries=0)
    secret = client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "model": "gpt-realtime-2.1-mini"},
    )
    assert SECRET.match(secret.value) and secret.session.type == "realtime"
    with pytest.raises(openai.AuthenticationError) as raised:
        openai.OpenAI(
            base_url=emulator.v1, api_key="sk-wrong", max_retries=0
        ).realtime.client_secrets.create()
    assert raised.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        client.realtime.client_secrets.create(session={"type": "realtime", "model": "gpt-9"})
    assert bad.value.param == "session.model"


def test_the_safety_identifier_is_kept_and_no_secret_is_shown(http: httpx.Client) -> None:
    secret = conform_secret(
        mint(http, {"session": {"type": "realtime"}}, **{"OpenAI-Safety-Identifier": "u-9f86d0"})
    )
    seen = state(http)
    assert seen["last_safety_identifier"] == "u-9f86d0"
    last = seen["last_requests"]["client_secrets"]
    assert last["auth"] == "server_key"
    assert last["body"] == {"session": {"type": "realtime"}}
    assert last["headers"]["OpenAI-Safety-Identifier"] == "u-9f86d0"
    text = json.dumps(seen)
    assert KEY not in text and secret.value not in text and "ek_" not in text


BAD_REQUESTS: list[tuple[str, Any, dict[str, str], int, str | None, str | None]] = [
    ("wrong-key", None, {"Authorization": "Bearer sk-not-the-key"}, 401, "invalid_api_key", None),
    ("no-key", None, {"Authorization": ""}, 401, "invalid_api_key", None),
    ("beta-header", None, {"OpenAI-Beta": "realtime=v1"}, 400, "beta_api_shape_disabled", None),
    ("unknown-top-level", {"ttl": 60}, {}, 400, "unknown_parameter", "ttl"),
    (
        "unknown-session-field",
        {"session": {"type": "realtime", "colour": "red"}},
        {},
        400,
        "unknown_parameter",
        "session.colour",
    ),
    (
        "beta-modalities",
        {"session": {"type": "realtime", "modalities": ["text"]}},
        {},
        400,
        "unknown_parameter",
        "session.modalities",
    ),
    (
        "beta-temperature",
        {"session": {"type": "realtime", "temperature": 0.8}},
        {},
        400,
        "unknown_parameter",
        "session.temperature",
    ),
    (
        "beta-input-audio-format",
        {"session": {"type": "realtime", "input_audio_format": "pcm16"}},
        {},
        400,
        "unknown_parameter",
        "session.input_audio_format",
    ),
    (
        "beta-voice",
        {"session": {"type": "realtime", "voice": "marin"}},
        {},
        400,
        "unknown_parameter",
        "session.voice",
    ),
    (
        "anchor",
        {"expires_after": {"anchor": "now", "seconds": 60}},
        {},
        400,
        "invalid_value",
        "expires_after.anchor",
    ),
    (
        "seconds-low",
        {"expires_after": {"anchor": "created_at", "seconds": 9}},
        {},
        400,
        "invalid_value",
        "expires_after.seconds",
    ),
    (
        "seconds-high",
        {"expires_after": {"anchor": "created_at", "seconds": 7201}},
        {},
        400,
        "invalid_value",
        "expires_after.seconds",
    ),
    (
        "seconds-string",
        {"expires_after": {"anchor": "created_at", "seconds": "60"}},
        {},
        400,
        "invalid_value",
        "expires_after.seconds",
    ),
    (
        "seconds-float",
        {"expires_after": {"anchor": "created_at", "seconds": 60.5}},
        {},
        400,
        "invalid_value",
        "expires_after.seconds",
    ),
    (
        "no-session-type",
        {"session": {"model": "gpt-realtime-2.1"}},
        {},
        400,
        "missing_required_parameter",
        "session.type",
    ),
    (
        "bad-session-type",
        {"session": {"type": "conversation"}},
        {},
        400,
        "invalid_value",
        "session.type",
    ),
    (
        "retired-model",
        {"session": {"type": "realtime", "model": "gpt-4o-realtime-preview"}},
        {},
        400,
        "invalid_value",
        "session.model",
    ),
    (
        "unknown-model",
        {"session": {"type": "realtime", "model": "gpt-realtime-9"}},
        {},
        400,
        "invalid_value",
        "session.model",
    ),
    (
        "unknown-voice",
        {"session": {"type": "realtime", "audio": {"output": {"voice": "nova"}}}},
        {},
        400,
        "invalid_value",
        "session.audio.output.voice",
    ),
    (
        "both-modalities",
        {"session": {"type": "realtime", "output_modalities": ["audio", "text"]}},
        {},
        400,
        "invalid_value",
        "session.output_modalities",
    ),
    (
        "max-output-tokens",
        {"session": {"type": "realtime", "max_output_tokens": 5000}},
        {},
        400,
        "invalid_value",
        "session.max_output_tokens",
    ),
    (
        "transcription-model",
        {"session": {"type": "transcription", "model": "gpt-realtime"}},
        {},
        400,
        "unknown_parameter",
        "session.model",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "param"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_openai_errors(
    http: httpx.Client,
    body: Any,
    headers: dict[str, str],
    status: int,
    code: str | None,
    param: str | None,
) -> None:
    before = state(http)["secrets_minted"]
    response = http.post(
        "/v1/realtime/client_secrets", json=body, headers=server_headers() | headers
    )
    assert_error(response, status, code, param)
    assert state(http)["secrets_minted"] == before


@pytest.mark.parametrize("body", [b"{not json", b"[" * 100_000], ids=["garbled", "deep"])
def test_a_body_that_is_not_json_is_refused(http: httpx.Client, body: bytes) -> None:
    response = http.post(
        "/v1/realtime/client_secrets",
        content=body,
        headers=server_headers(**{"Content-Type": "application/json"}),
    )
    assert_error(response, 400, None)


def test_a_client_secret_cannot_mint_another(http: httpx.Client) -> None:
    value = conform_secret(mint(http)).value
    response = http.post(
        "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {value}"}
    )
    assert_error(response, 401, "invalid_api_key")
    assert value not in response.text


def test_the_credential_is_checked_before_the_body(http: httpx.Client) -> None:
    response = http.post(
        "/v1/realtime/client_secrets",
        content=b"{not json",
        headers={"Authorization": "Bearer sk-wrong", "Content-Type": "application/json"},
    )
    assert_error(response, 401, "invalid_api_key")


def test_browsers_may_post_offers_across_origins(http: httpx.Client) -> None:
    # The page posts its SDP offer itself and needs the call id from Location.
    preflight = http.options(
        "/v1/realtime/calls",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "location" in preflight.headers["access-control-expose-headers"].lower()


def test_a_preflight_grants_the_headers_openais_browser_sdks_send_and_no_other(
    http: httpx.Client,
) -> None:
    """The Agents SDK posts its offer with `X-OpenAI-Agents-SDK`, the `openai` package sends
    `X-Stainless-*`: granted, as OpenAI must (its SDKs work from browsers). A header of the
    app's own is not listed, so the browser refuses it, as OpenAI is reported to."""
    preflight = http.options(
        "/v1/realtime/calls",
        headers={
            "Origin": "http://127.0.0.1:5174",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-openai-agents-sdk",
        },
    )
    allowed = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }

    assert preflight.headers["access-control-allow-origin"] == "*"
    assert {"authorization", "content-type", "x-openai-agents-sdk"} <= allowed
    assert {"x-stainless-lang", "x-stainless-os", "x-stainless-retry-count"} <= allowed
    assert "originator" not in allowed and "*" not in allowed


def test_unknown_routes_answer_in_the_envelope(http: httpx.Client) -> None:
    assert_error(http.post("/v1/realtime/sessions", headers=server_headers()), 404, None)
    assert_error(http.get("/v1/realtime/client_secrets", headers=server_headers()), 405, None)


# --- WebRTC --------------------------------------------------------------------------------


async def post_offer(
    client: httpx.AsyncClient, secret: str, offer: str, query: str = ""
) -> httpx.Response:
    return await client.post(
        "/v1/realtime/calls" + query,
        content=offer,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/sdp"},
    )


def call_id(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/sdp"
    match = LOCATION.match(response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def test_a_call_from_mint_to_hangup(http: httpx.Client, emulator: Running) -> None:
    minted = mint(http, {"session": {"type": "realtime", "instructions": "Be brief."}})
    secret = conform_secret(minted)
    run(_call_from_mint_to_hangup(emulator, secret.value, minted.json()["session"]))
    seen = state(http)
    assert seen["calls_open"] == 0 and seen["hangups"] >= 1
    assert seen["last_requests"]["calls"]["auth"] == "client_secret"


async def _call_from_mint_to_hangup(
    emulator: Running, secret: str, session: dict[str, Any]
) -> None:
    caller = Caller(microphone=True)
    try:
        async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as client:
            offer = await caller.offer()
            started = time.perf_counter()
            answer = await post_offer(client, secret, offer, "?model=gpt-realtime-2.1")
            rtc_id = call_id(answer)
            await caller.accept(answer.text)
            created = await caller.next_event()
            print(f"handshake {(time.perf_counter() - started) * 1000:.0f} ms")
            assert created["type"] == "session.created" and created["session"] == session
            assert (await caller.next_event())["type"] == "conversation.created"
            await _converse_in_audio(caller)
            await caller.wait_frames(25)  # half a second of the caller's own voice, echoed
            assert await caller.rtp_packets_received() > 0
            state_now = (await client.get("/__emulator/state")).json()
            assert state_now["calls_open"] == 1 and state_now["open_calls"][0]["audio"] == "echo"
            hung = await client.post(
                f"/v1/realtime/calls/{rtc_id}/hangup", headers=server_headers()
            )
            assert hung.status_code == 200 and hung.json() == {}
            await caller.wait_state("closed")
            again = await client.post(
                f"/v1/realtime/calls/{rtc_id}/hangup", headers=server_headers()
            )
            assert_error(again, 404, "call_not_found")
    finally:
        await caller.close()


async def _converse_in_audio(caller: Caller) -> None:
    caller.send(user_says("what time is it?"))
    added, done = await caller.next_event(), await caller.next_event()
    assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
    assert added["item"]["content"][0]["text"] == "what time is it?"
    caller.send({"type": "response.create"})
    events = await caller.until("response.done")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created"
    assert "response.output_text.delta" not in kinds
    deltas = [e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"]
    (transcript,) = [
        e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"
    ]
    expected = "Hello from the local Realtime emulator. You said: what time is it?"
    assert len(deltas) > 1 and "".join(deltas) == transcript == expected
    response = events[-1]["response"]
    assert response["status"] == "completed" and response["usage"]["total_tokens"] > 0
    assert (await caller.next_event())["type"] == "output_audio_buffer.stopped"


def test_a_text_session_without_microphone(http: httpx.Client, emulator: Running) -> None:
    secret = conform_secret(
        mint(http, {"session": {"type": "realtime", "output_modalities": ["text"]}})
    )
    run(_text_session_without_microphone(emulator, secret.value))
    assert state(http)["calls_open"] == 0


async def _text_session_without_microphone(emulator: Running, secret: str) -> None:
    caller = Caller(microphone=False)
    try:
        async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as client:
            answer = await post_offer(client, secret, await caller.offer())
            rtc_id = call_id(answer)
            await caller.accept(answer.text)
            assert [(await caller.next_event())["type"] for _ in range(2)] == [
                "session.created",
                "conversation.created",
            ]
            await _session_updates(caller)
            caller.send(user_says("hi"))
            await caller.until("conversation.item.done")
            caller.send({"type": "response.create"})
            events = await caller.until("response.done")
            text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
            assert text == "Hello from the local Realtime emulator. You said: hi"
            assert not any(e["type"].startswith("output_audio_buffer") for e in events)
            await caller.wait_frames(10)  # no microphone: the emulator plays a tone instead
            await client.post(f"/v1/realtime/calls/{rtc_id}/hangup", headers=server_headers())
    finally:
        await caller.close()


async def _session_updates(caller: Caller) -> None:
    caller.send(
        {"type": "session.update", "event_id": "evt_1", "session": {"instructions": "No type."}}
    )
    error = await caller.next_event()
    assert error["type"] == "error" and error["error"]["param"] == "session.type"
    assert error["error"]["event_id"] == "evt_1"
    caller.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "instructions": "Speak like a pirate."},
        }
    )
    updated = await caller.next_event()
    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] == "Speak like a pirate."
    assert updated["session"]["output_modalities"] == ["text"]
    caller.send({"type": "session.dance"})
    unknown = await caller.next_event()
    assert unknown["type"] == "error" and unknown["error"]["code"] == "invalid_value"
    caller.channel.send("not json")
    assert (await caller.next_event())["type"] == "error"


def test_the_server_side_call_through_the_sdk(http: httpx.Client, emulator: Running) -> None:
    run(_server_side_call(emulator))
    seen = state(http)
    assert seen["last_requests"]["calls"]["auth"] == "server_key"
    assert seen["last_requests"]["calls"]["body"]["content_type"] == "multipart/form-data"
    assert seen["calls_open"] == 0


async def _server_side_call(emulator: Running) -> None:
    server = openai.AsyncOpenAI(base_url=emulator.v1, api_key=KEY, max_retries=0)
    caller = Caller()
    try:
        raw = await server.realtime.calls.with_raw_response.create(
            sdp=await caller.offer(),
            session={
                "type": "realtime",
                "model": "gpt-realtime-2.1-mini",  # the standard key chooses the model
                "instructions": "From the server.",
                "output_modalities": ["text"],
            },
        )
        assert raw.status_code == 201
        location = LOCATION.match(raw.headers["location"])
        assert location is not None
        await caller.accept(raw.text)
        created = await caller.next_event()
        assert created["session"]["instructions"] == "From the server."
        assert created["session"]["model"] == "gpt-realtime-2.1-mini"
        await caller.next_event()
        await server.realtime.calls.hangup(location.group(1))
        await caller.wait_state("closed")
    finally:
        await caller.close()
        await server.close()


def test_hangup_ends_the_callers_peer(http: httpx.Client, emulator: Running) -> None:
    """What a browser sees: its data channel closes and its audio stops, at once."""
    rtc_id, seconds = run(_hangup_ends_the_callers_peer(emulator))
    (ended,) = [c for c in state(http)["ended_calls"] if c["id"] == rtc_id]
    assert ended["ended_by"] == "hangup" and ended["seconds"] < 10
    print(f"hangup -> caller's channel closed in {seconds * 1000:.0f} ms")


async def _hangup_ends_the_callers_peer(emulator: Running) -> tuple[str, float]:
    server = openai.AsyncOpenAI(base_url=emulator.v1, api_key=KEY, max_retries=0)
    caller = Caller(microphone=True)
    try:
        raw = await server.realtime.calls.with_raw_response.create(
            sdp=await caller.offer(), session={"type": "realtime"}
        )
        location = LOCATION.match(raw.headers["location"])
        assert location is not None
        await caller.accept(raw.text)
        await caller.until("conversation.created")
        await caller.wait_frames(10)
        assert caller.pc.connectionState == "connected"
        hung_up = time.monotonic()
        await server.realtime.calls.hangup(location.group(1))
        await asyncio.wait_for(caller.channel_closed.wait(), 5)
        seconds = time.monotonic() - hung_up
        assert caller.channel.readyState == "closed"
        await caller.wait_state("closed", timeout=5)
        frames = caller.frames
        await asyncio.sleep(0.3)
        assert caller.frames == frames, "audio kept arriving after the hangup"
        return location.group(1), seconds
    finally:
        await caller.close()
        await server.close()


def test_a_call_ends_at_the_session_limit() -> None:
    """OpenAI's 60-minute cap, shortened: an `error` event saying why, then the call ends."""
    with emulator_thread(session_limit_s=1.5) as short:
        rtc_id, error, lasted = run(_a_call_ends_at_the_session_limit(short))
        seen = httpx.get(short.url + "/__emulator/state").json()
    assert error["code"] == "session_expired"
    assert error["message"] == "Your session hit the maximum duration of 1.5 seconds."
    assert 1.4 <= lasted < 5
    assert seen["calls_open"] == 0 and seen["session_limit_s"] == 1.5
    assert [c["ended_by"] for c in seen["ended_calls"] if c["id"] == rtc_id] == ["session_limit"]


async def _a_call_ends_at_the_session_limit(
    emulator: Running,
) -> tuple[str, dict[str, Any], float]:
    caller = Caller(microphone=False)
    try:
        async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as client:
            minted = await client.post("/v1/realtime/client_secrets", headers=server_headers())
            started = time.monotonic()
            answer = await post_offer(client, minted.json()["value"], await caller.offer())
            rtc_id = call_id(answer)
            await caller.accept(answer.text)
            await caller.until("conversation.created")
            (error,) = [e for e in await caller.until("error") if e["type"] == "error"]
            await asyncio.wait_for(caller.channel_closed.wait(), 5)
            await caller.wait_state("closed", timeout=5)
            return rtc_id, error["error"], time.monotonic() - started
    finally:
        await caller.close()


def test_the_session_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        create_app(KEY, session_limit_s=0)
    for bad in ("0", "-1", "nan", "soon"):
        done = subprocess.run(
            emulator_command("--port", "0", "--session-limit", bad),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2 and "positive number of seconds" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_secret_opens_several_calls_until_it_expires(
    http: httpx.Client, emulator: Running
) -> None:
    secret = conform_secret(mint(http, {"expires_after": {"anchor": "created_at", "seconds": 10}}))
    offer = run(_an_offer())
    headers = {"Authorization": f"Bearer {secret.value}", "Content-Type": "application/sdp"}
    ids = [
        call_id(http.post("/v1/realtime/calls", content=offer, headers=headers)) for _ in range(2)
    ]
    assert len(set(ids)) == 2 and state(http)["calls_open"] == 2
    emulator.clock.offset = 11
    expired = http.post("/v1/realtime/calls", content=offer, headers=headers)
    assert_error(expired, 401, "invalid_api_key")
    assert "expired" in expired.json()["error"]["message"]
    for rtc_id in ids:
        hung = http.post(f"/v1/realtime/calls/{rtc_id}/hangup", headers=server_headers())
        assert hung.status_code == 200
    assert state(http)["calls_open"] == 0


async def _an_offer() -> str:
    caller = Caller()
    try:
        return await caller.offer()
    finally:
        await caller.close()


def test_call_errors(http: httpx.Client) -> None:
    secret = conform_secret(mint(http))
    sdp_headers = {"Authorization": f"Bearer {secret.value}", "Content-Type": "application/sdp"}
    calls = "/v1/realtime/calls"
    assert_error(
        http.post(calls, content="v=0", headers=sdp_headers | {"Content-Type": "application/json"}),
        400,
        "unsupported_content_type",
    )
    assert_error(
        http.post(calls, content="", headers=sdp_headers), 400, "missing_required_parameter", "sdp"
    )
    assert_error(
        http.post(calls, content="v=0\r\nnonsense", headers=sdp_headers),
        400,
        "invalid_offer",
        "sdp",
    )
    assert_error(
        http.post(
            calls, content="v=0", headers=sdp_headers | {"Authorization": "Bearer ek_" + "0" * 32}
        ),
        401,
        "invalid_api_key",
    )
    other_model = {"type": "realtime", "model": "gpt-realtime-2.1-mini"}
    assert_error(  # the client secret fixed the model; only the standard key chooses it
        http.post(
            calls,
            headers={"Authorization": f"Bearer {secret.value}"},
            files={
                "sdp": (None, "v=0", "application/sdp"),
                "session": (None, json.dumps(other_model), "application/json"),
            },
        ),
        400,
        "invalid_value",
        "session.model",
    )
    assert_error(
        http.post(f"{calls}/rtc_unknown/hangup", headers=server_headers()), 404, "call_not_found"
    )
    assert_error(
        http.post(
            f"{calls}/rtc_unknown/hangup", headers={"Authorization": f"Bearer {secret.value}"}
        ),
        401,
        "invalid_api_key",
    )
    assert state(http)["calls_open"] == 0


def test_shutdown_closes_every_call() -> None:
    run(_shutdown_closes_every_call())


async def _shutdown_closes_every_call() -> None:
    app = create_app(KEY)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    caller = Caller()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            minted = await client.post("/v1/realtime/client_secrets", headers=server_headers())
            answer = await post_offer(client, minted.json()["value"], await caller.offer())
            call_id(answer)
            await caller.accept(answer.text)
            await caller.until("conversation.created")
        assert len(app[EMULATOR].calls) == 1
        await runner.cleanup()
        await caller.wait_state("closed")
        assert app[EMULATOR].calls == {}
    finally:
        await caller.close()
        await runner.cleanup()


# --- fault switches ------------------------------------------------------------------------


def set_fault(http: httpx.Client, **body: Any) -> None:
    http.post("/__emulator/faults", json=body).raise_for_status()


def hit(http: httpx.Client, endpoint: str, timeout: float = 10) -> httpx.Response:
    if endpoint == "client_secrets":
        return http.post("/v1/realtime/client_secrets", headers=server_headers(), timeout=timeout)
    return http.post(
        "/v1/realtime/calls",
        content="v=0",
        timeout=timeout,
        headers={"Authorization": "Bearer ek_x", "Content-Type": "application/sdp"},
    )


@pytest.mark.parametrize("endpoint", ["client_secrets", "calls"])
@pytest.mark.parametrize(
    ("fault", "status", "type_", "code"),
    [
        ("429", 429, "requests", "rate_limit_exceeded"),
        ("insufficient_quota", 429, "insufficient_quota", "insufficient_quota"),
        ("500", 500, "server_error", None),
        ("503", 503, "server_error", None),
    ],
)
def test_error_faults(
    http: httpx.Client, endpoint: str, fault: str, status: int, type_: str, code: str | None
) -> None:
    set_fault(http, **{endpoint: fault})
    response = hit(http, endpoint)
    assert assert_error(response, status, code).type == type_
    if fault == "429":
        assert int(response.headers["retry-after"]) >= 1
    assert hit(http, endpoint).status_code == status  # without `times`, until cleared


def test_malformed_faults(http: httpx.Client) -> None:
    set_fault(http, client_secrets="malformed", calls="malformed", times=1)
    response = hit(http, "client_secrets")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    call = hit(http, "calls")
    assert call.status_code == 201 and "location" not in call.headers
    assert not call.text.startswith("v=0")
    set_fault(http, client_secrets="missing_value")
    missing = hit(http, "client_secrets")
    assert missing.status_code == 200 and "value" not in missing.json()
    with pytest.raises(pydantic.ValidationError):
        ClientSecretCreateResponse.model_validate(missing.json())


@pytest.mark.parametrize("endpoint", ["client_secrets", "calls"])
def test_the_hang_fault_holds_until_the_client_gives_up(http: httpx.Client, endpoint: str) -> None:
    set_fault(http, **{endpoint: "hang"}, times=1)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        hit(http, endpoint, timeout=0.5)
    assert time.monotonic() - started < 5
    assert state(http)["faults"][endpoint] is None
    assert hit(http, endpoint).status_code in (200, 401)  # served normally again


def test_faults_count_down_and_clear(http: httpx.Client) -> None:
    set_fault(http, client_secrets="500", times=2)
    assert state(http)["faults"]["client_secrets"] == {"fault": "500", "remaining": 2}
    assert [hit(http, "client_secrets").status_code for _ in range(3)] == [500, 500, 200]
    set_fault(http, calls="429")
    http.delete("/__emulator/faults").raise_for_status()
    assert state(http)["faults"] == {
        "client_secrets": None,
        "calls": None,
        "sideband": None,
        "live_sessions": None,
        "live_sideband": None,
    }
    for bad in ({"calls": "418"}, {"client_secrets": "429", "times": 0}, {"everything": "500"}):
        assert http.post("/__emulator/faults", json=bad).status_code == 400


# --- the command line ----------------------------------------------------------------------


def emulator_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "devstack.openai_emulator", "--server-key", KEY, *args]


def test_a_busy_port_is_one_clear_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            emulator_command("--port", str(port)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert str(port) in line


def test_the_cli_serves_with_a_fault_and_stops_on_sigterm() -> None:
    command = emulator_command("--port", "0", "--fault", "client_secrets=429")
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", banner)
            assert match, banner
            response = httpx.post(
                match.group(1) + "/v1/realtime/client_secrets",
                headers=server_headers(),
                timeout=10,
            )
            assert_error(response, 429, "rate_limit_exceeded")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
