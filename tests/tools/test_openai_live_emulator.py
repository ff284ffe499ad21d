"""The emulator's GPT-Live: `POST /v1/live/sessions` answered by a real aiortc peer, the
`oai-events` data channel with its permission lists, the sideband
(`/v1/live/sessions/{id}/attach`), usage in seconds, and `session.closed` with its reason.

The conformance oracle is the `openai` package's typed Live models: every answer and every
event, on the channel and on the sideband, is parsed with them, nested backend events with
the Responses stream models, and a field those models do not know fails the test, except the
few OpenAI documents that are newer than the pinned SDK (NEWER_THAN_SDK)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
import typing
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
import websockets
from openai.types.live import LiveCreateResponse
from websockets.asyncio.client import ClientConnection, connect

from devstack.openai_emulator import create_app
from devstack.openai_rtc import ToneTrack
from devstack.openai_usage import DEFAULT_TRANSCRIPT
from tests.support.caller import run
from tests.support.emulator import (
    KEY,
    Running,
    ShiftedClock,
    assert_error,
    emulator_thread,
    server_headers,
)
from tests.support.live import (
    AUDIO_COPIES,
    PREPAID_S,
    STANDBY_EVENTS,
    LiveCaller,
    conform,
    conform_create,
)

pytestmark = pytest.mark.stack

USAGE_EVERY_S = 0.2


def test_the_oracle_rejects_broken_live_payloads() -> None:
    usage = {"seconds": 15, "active_seconds": 15, "paused_seconds": 0}
    conform({"type": "session.usage.updated", "event_id": "event_1", "usage": usage})
    for broken in (
        {"type": "session.usage.updated", "event_id": "event_1", "usage": {}},
        {"type": "session.closed", "event_id": "event_1", "reason": "bored", "usage": usage},
        {"type": "session.output_transcript.delta", "event_id": "event_1", "delta": "hi"},
        {"type": "info", "event_id": "event_1", "message": "no code"},
    ):
        with pytest.raises(pydantic.ValidationError):
            conform(broken)
    for wrong in (
        {"type": "session.created", "event_id": "event_1"},  # Realtime's, not Live's
        {"type": "info", "event_id": "event_1", "code": "c", "message": "m", "surprise": 1},
        {"type": "session.usage.updated", "event_id": "event_1", "usage": usage | {"seconds": 9}},
        {"type": "session.input_audio.append", "event_id": "event_1", "audio": ""},
        {"type": "session.paused", "event_id": "event_1", "why": "idle"},
    ):
        with pytest.raises(AssertionError):
            conform(wrong)
    with pytest.raises(pydantic.ValidationError):
        LiveCreateResponse.model_validate({"session": {"id": "live_1"}})


# --- the parties -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Running]:
    with emulator_thread(live_usage_every_s=USAGE_EVERY_S) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(emulator: Running) -> Iterator[None]:
    emulator.clock.offset = 0
    httpx.delete(emulator.url + "/__emulator/faults").raise_for_status()
    yield
    httpx.delete(emulator.url + "/__emulator/faults").raise_for_status()


class Side:
    """A server's sideband: every event checked, the audio copies set aside as they come."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.copies: list[dict[str, Any]] = []
        self.copy_bytes = 0

    async def next_event(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            event: dict[str, Any] = json.loads(raw)
            conform(event)
            if event["type"] not in AUDIO_COPIES:
                return event
            self.copies.append(event)
            self.copy_bytes += len(raw)

    async def until(self, kind: str, timeout: float = 10) -> list[dict[str, Any]]:
        seen = [await self.next_event(timeout)]
        while seen[-1]["type"] != kind:
            seen.append(await self.next_event(timeout))
        return seen

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def closed(self, timeout: float = 10) -> tuple[int | None, list[dict[str, Any]]]:
        """Reads to the end: the close frame's code (None without one), and the events."""
        seen: list[dict[str, Any]] = []
        try:
            while True:
                seen.append(await self.next_event(timeout))
        except websockets.ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), seen


def attach(emulator: Running, session_id: str, query: str = "", key: str = KEY) -> Any:
    url = emulator.url.replace("http://", "ws://") + f"/v1/live/sessions/{session_id}/attach"
    return connect(
        url + query, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10
    )


async def post_create(
    http: httpx.AsyncClient, offer: str, session: dict[str, Any], key: str = KEY
) -> httpx.Response:
    return await http.post(
        "/v1/live/sessions",
        json={"session": session, "transport": {"type": "webrtc", "sdp": offer}},
        headers={"Authorization": f"Bearer {key}"},
    )


@contextlib.asynccontextmanager
async def live(
    emulator: Running, session: dict[str, Any] | None = None, *, microphone: bool = False
) -> AsyncIterator[tuple[LiveCaller, str, dict[str, Any]]]:
    """A Live session created with the standard key, its browser peer connected: the peer,
    the session's id and its `session.started`. The peer is closed after."""
    browser = LiveCaller(microphone=microphone)
    try:
        async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as http:
            created = conform_create(
                await post_create(http, await browser.offer(), session or {"model": "gpt-live-1"})
            )
        await browser.accept(created.transport.sdp)
        started = await browser.next_event()
        assert started["type"] == "session.started"
        assert started["session"]["id"] == created.session.id
        yield browser, created.session.id, started
    finally:
        await browser.close()


def state(emulator: Running) -> dict[str, Any]:
    return typing.cast(dict[str, Any], httpx.get(emulator.url + "/__emulator/state").json())


def ended(emulator: Running, session_id: str, timeout: float = 5) -> dict[str, Any]:
    """The ended session's record (a browser's hangup reaches the emulator a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in state(emulator)["live_sessions_ended"] if s["id"] == session_id]
        if found or time.monotonic() > deadline:
            (record,) = found
            return record
        time.sleep(0.05)


def open_session(emulator: Running, session_id: str) -> dict[str, Any]:
    (found,) = [s for s in state(emulator)["live_sessions_open"] if s["id"] == session_id]
    return found


def spoken(events: list[dict[str, Any]], kind: str = "session.output_transcript.delta") -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)


async def until_spoken(side: Side, text: str) -> list[dict[str, Any]]:
    seen = [await side.next_event()]
    while not spoken(seen).endswith(text):
        seen.append(await side.next_event())
    return seen


async def usage_from(side: Side, seconds: int) -> dict[str, int]:
    """The first usage update counting at least `seconds` (earlier ones may be in flight)."""
    while True:
        usage = (await side.until("session.usage.updated"))[-1]["usage"]
        if usage["seconds"] >= seconds:
            return typing.cast(dict[str, int], usage)


async def script(emulator: Running, session_id: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as http:
        return await http.post(f"/__emulator/live/sessions/{session_id}/script", json=body)


# --- the create ------------------------------------------------------------------------------

RESPONSES: dict[str, Any] = {
    "type": "responses",
    "responses": {
        "model": "gpt-5.2",
        "instructions": "Answer billing questions.",
        "tools": [{"type": "function", "name": "lookup_invoice", "parameters": {}}],
        "max_output_tokens": 256,
    },
}


def test_the_sdk_creates_a_session_and_the_browser_hears_it_start(emulator: Running) -> None:
    session_id, started = run(_sdk_create(emulator))
    resolved = started["session"]
    assert resolved["model"] == "gpt-live-1.1" and resolved["status"] == "active"
    assert resolved["instructions"] == "Be brief."
    assert resolved["audio"] == {"output": {"voice": {"id": "voice_123"}}}
    assert resolved["delegation"]["type"] == "responses"
    assert resolved["delegation"]["responses"]["model"] == "gpt-5.2"
    assert resolved["client"]["data_channel"] == {
        "allowed_client_events": "all",
        "allowed_server_events": "all",
    }
    assert resolved["store"] is False and resolved["safety_identifier"] == "user-7"
    created_at = ended(emulator, session_id)["created_at"]
    assert resolved["expires_at"] == int(created_at + 3600)  # --session-limit's 60 minutes
    seen = state(emulator)
    request = seen["last_requests"]["live_sessions"]
    assert request["auth"] == "server_key" and request["body"]["transport"]["sdp_bytes"] > 100
    assert "sdp" not in request["body"]["transport"]


async def _sdk_create(emulator: Running) -> tuple[str, dict[str, Any]]:
    server = openai.AsyncOpenAI(base_url=emulator.v1, api_key=KEY, max_retries=0)
    browser = LiveCaller(microphone=True)
    try:
        created = await server.live.create(
            session={
                "model": "gpt-live-1.1",
                "instructions": "Be brief.",
                "audio": {"output": {"voice": {"id": "voice_123"}}},
                "delegation": RESPONSES,  # type: ignore[typeddict-item]
                "safety_identifier": "user-7",
            },
            transport={"type": "webrtc", "sdp": await browser.offer()},
        )
        assert created.session.id.startswith("live_")
        await browser.accept(created.transport.sdp)
        started = await browser.next_event()
        assert started["type"] == "session.started"
        await browser.wait_frames(10)  # the model's voice: the caller's own, echoed
        assert open_session(emulator, created.session.id)["audio"] == "echo"
        return created.session.id, started
    finally:
        await browser.close()
        await server.close()


def test_defaults_fill_a_minimal_session(emulator: Running) -> None:
    async def minimal() -> dict[str, Any]:
        async with live(emulator, {"model": "gpt-live-1", "instructions": "  "}) as (_, _, started):
            return typing.cast(dict[str, Any], started["session"])

    resolved = run(minimal())
    assert resolved["audio"]["output"]["voice"] == "marin"
    assert resolved["instructions"].startswith("You are a helpful voice assistant.")
    assert resolved["delegation"] == {"type": "client", "acknowledgement_delay_ms": 0}
    assert resolved["input"] == [] and resolved["triggers"] == []


OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({}, "missing_required_parameter", "session.model"),
        ({"model": "gpt-realtime-2.1"}, "invalid_value", "session.model"),
        ({"model": "gpt-live-1", "voice": "marin"}, "unknown_parameter", "session.voice"),
        (
            {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 24000}}},
            "unknown_parameter",
            "session.audio.format",
        ),
        (
            {"model": "gpt-live-1", "audio": {"output": {"voice": "nobody"}}},
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            {"model": "gpt-live-1", "audio": {"output": {"voice": {"id": "marin"}}}},
            "invalid_value",
            "session.audio.output.voice.id",
        ),
        ({"model": "gpt-live-1", "instructions": 7}, "invalid_type", "session.instructions"),
        (
            {"model": "gpt-live-1", "delegation": {"type": "responses", "responses": {}}},
            "missing_required_parameter",
            "session.delegation.responses.model",
        ),
        (
            {
                "model": "gpt-live-1",
                "delegation": {"type": "responses", "responses": {"model": "m", "temp": 1}},
            },
            "unknown_parameter",
            "session.delegation.responses.temp",
        ),
        (
            {
                "model": "gpt-live-1",
                "delegation": {
                    "type": "responses",
                    "responses": {"model": "m", "max_output_tokens": 8},
                },
            },
            "invalid_value",
            "session.delegation.responses.max_output_tokens",
        ),
        (
            {"model": "gpt-live-1", "delegation": {"type": "agent"}},
            "invalid_value",
            "session.delegation.type",
        ),
        (
            {
                "model": "gpt-live-1",
                "client": {"data_channel": {"allowed_client_events": ["session.dance"]}},
            },
            "invalid_value",
            "session.client.data_channel.allowed_client_events[0]",
        ),
        (
            {
                "model": "gpt-live-1",
                "client": {"data_channel": {"allowed_server_events": [{"type": "response.event"}]}},
            },
            "missing_required_parameter",
            "session.client.data_channel.allowed_server_events[0].response_event",
        ),
        (
            {
                "model": "gpt-live-1",
                "client": {
                    "data_channel": {
                        "allowed_server_events": [{"type": "info", "response_event": "x"}]
                    }
                },
            },
            "unknown_parameter",
            "session.client.data_channel.allowed_server_events[0].response_event",
        ),
        (
            {"model": "gpt-live-1", "client": {"data_channel": {"allowed": "all"}}},
            "unknown_parameter",
            "session.client.data_channel.allowed",
        ),
        ({"model": "gpt-live-1", "store": "yes"}, "invalid_type", "session.store"),
        (
            {"model": "gpt-live-1", "wake_policy": {"type": "speech"}},
            "missing_required_parameter",
            "session.idle_timeout_s",
        ),
        (
            {"model": "gpt-live-1", "wake_policy": {"type": "speech"}, "idle_timeout_s": 0},
            "invalid_value",
            "session.idle_timeout_s",
        ),
        (
            {
                "model": "gpt-live-1",
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "a"}, {"text": "b"}],
                    }
                ],
            },
            "invalid_value",
            "session.input[0].content",
        ),
        (
            {
                "model": "gpt-live-1",
                "triggers": [
                    {
                        "type": "decisions",
                        "event_type": "session.input_transcript.delta",
                        "decisions": {"questions": []},
                    }
                ]
                * 2,
            },
            "invalid_value",
            "session.triggers[1].event_type",
        ),
    ],
)
def test_a_session_config_is_checked_strictly(
    emulator: Running, session: dict[str, Any], code: str, param: str
) -> None:
    response = httpx.post(
        emulator.v1 + "/live/sessions",
        json={"session": session, "transport": {"type": "webrtc", "sdp": OFFER}},
        headers=server_headers(),
    )
    assert_error(response, 400, code, param)


def test_the_create_request_itself_is_checked(emulator: Running) -> None:
    url = emulator.v1 + "/live/sessions"
    session = {"model": "gpt-live-1"}
    transport = {"type": "webrtc", "sdp": OFFER}
    for body, code, param in [
        ({"session": session}, "missing_required_parameter", "transport"),
        ({"transport": transport}, "missing_required_parameter", "session"),
        ({"session": session, "transport": transport, "x": 1}, "unknown_parameter", "x"),
        ({"session": session, "transport": {"type": "sip", "sdp": OFFER}}, "invalid_value", None),
        ({"session": session, "transport": {"type": "webrtc"}}, "missing_required_parameter", None),
        (
            {"session": session, "transport": {"type": "webrtc", "sdp": "v=0\r\n"}},
            "invalid_offer",
            "transport.sdp",
        ),
    ]:
        assert_error(httpx.post(url, json=body, headers=server_headers()), 400, code, param)
    as_sdp = httpx.post(
        url, content=OFFER, headers=server_headers() | {"Content-Type": "application/sdp"}
    )
    assert_error(as_sdp, 400, "unsupported_content_type")
    not_json = httpx.post(
        url, content=b"{", headers=server_headers() | {"Content-Type": "application/json"}
    )
    assert_error(not_json, 400, None)
    assert state(emulator)["live_sessions_open"] == []  # a refused create leaves nothing


def test_only_the_standard_key_creates_or_attaches(emulator: Running) -> None:
    """Live has no browser secrets: a Realtime client secret is refused like any wrong key."""
    minted = httpx.post(emulator.v1 + "/realtime/client_secrets", headers=server_headers())
    secret = minted.json()["value"]
    body = {"session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": OFFER}}
    for auth, kind in [
        (f"Bearer {secret}", "client_secret"),
        ("Bearer sk-wrong", "invalid"),
        ("", "missing"),
    ]:
        refused = httpx.post(
            emulator.v1 + "/live/sessions", json=body, headers={"Authorization": auth}
        )
        assert_error(refused, 401, "invalid_api_key")
        assert secret not in refused.text and KEY not in refused.text
        assert state(emulator)["last_requests"]["live_sessions"]["auth"] == kind
    # The credential comes before the body, as for every OpenAI route.
    assert_error(
        httpx.post(emulator.v1 + "/live/sessions", content=b"{", headers={"Authorization": ""}),
        401,
        "invalid_api_key",
    )
    run(_sideband_refusals(emulator, secret))


async def _sideband_refusals(emulator: Running, secret: str) -> None:
    async with (
        live(emulator) as (_, session_id, _),
        httpx.AsyncClient(base_url=emulator.url, timeout=10) as http,
    ):
        path = f"/v1/live/sessions/{session_id}/attach"
        for where, auth, status, code in [
            (path, f"Bearer {secret}", 401, "invalid_api_key"),
            (path, "", 401, "invalid_api_key"),
            ("/v1/live/sessions/live_nope/attach", f"Bearer {KEY}", 404, "session_not_found"),
            (path + "?graceful_close=yes", f"Bearer {KEY}", 400, "invalid_value"),
            (path, f"Bearer {KEY}", 400, "websocket_upgrade_required"),  # not an upgrade
        ]:
            response = await http.get(where, headers={"Authorization": auth})
            assert_error(response, status, code)
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with attach(emulator, session_id, key=secret):
                pass
        assert refused.value.response.status_code == 401
        primary = await http.get("/v1/live/sessions", headers=server_headers())
        assert_error(primary, 400, "unsupported_transport")


# --- the data channel's permissions ------------------------------------------------------------

RESTRICTED: dict[str, Any] = {
    "model": "gpt-live-1",
    "client": {
        "data_channel": {
            "allowed_client_events": ["session.input_audio.mute", "session.input_audio.unmute"],
            "allowed_server_events": [
                {"type": "session.output_transcript.delta"},
                {"type": "session.input_audio.muted"},
                {"type": "session.input_audio.unmuted"},
                {"type": "session.closed"},
            ],
        }
    },
}


def test_the_browser_may_send_and_hear_only_what_its_lists_allow(emulator: Running) -> None:
    session_id = run(_permissions(emulator))
    final = ended(emulator, session_id)
    assert final["ended_by"] == "close_requested"
    assert final["permissions"] == {
        "allowed_client_events": ["session.input_audio.mute", "session.input_audio.unmute"],
        "allowed_server_events": RESTRICTED["client"]["data_channel"]["allowed_server_events"],
        "restricted": True,
    }
    assert final["channel"]["client_events_refused"] == 4
    assert final["channel"]["events_withheld"] > 0


async def _permissions(emulator: Running) -> str:
    async with live(emulator, RESTRICTED) as (browser, session_id, started):
        info = await browser.next_event()
        assert info["type"] == "info" and info["code"] == "data_channel_permissions"
        assert "session.input_audio.mute" in info["message"]
        assert started["session"]["client"] == RESTRICTED["client"]
        async with attach(emulator, session_id) as ws:
            side = Side(ws)
            # What the browser may not send: each refused, to the browser alone.
            refused: list[dict[str, Any]] = [
                {"type": "session.close"},
                {"type": "session.update", "session": {"triggers": []}},
                {"type": "session.instructions.append", "content": "Obey.", "delegation_id": None},
                {"type": "response.create", "surprise": 1},  # refused unread
            ]
            for index, event in enumerate(refused):
                browser.send(event | {"event_id": f"evt_{index}"})
                error = await browser.next_event()
                assert error["type"] == "error" and error["client_event_id"] == f"evt_{index}"
                assert error["error"]["code"] == "data_channel_permissions"
                assert error["error"]["client_event_id"] == f"evt_{index}"
            # What it may: acknowledged to both.
            browser.send({"type": "session.input_audio.mute", "event_id": "evt_mute"})
            muted = await browser.next_event()
            assert muted == {
                **muted,
                "type": "session.input_audio.muted",
                "client_event_id": "evt_mute",
            }
            heard = await side.until("session.input_audio.muted")
            assert heard[-1]["event_id"] == muted["event_id"]
            assert not any(e["type"] == "error" for e in heard)  # the refusals were not its own
            browser.send({"type": "session.input_audio.unmute"})
            assert (await browser.next_event())["type"] == "session.input_audio.unmuted"
            # The caller speaks: the browser hears the model's words, not its own transcript.
            said = await script(emulator, session_id, {"caller_says": "what time is it"})
            assert said.json() == {"caller_says": 1, "responses": 0}
            reply = "Hello from the local Live emulator. You said: what time is it"
            side_seen = await until_spoken(side, reply)
            assert spoken(side_seen, "session.input_transcript.delta") == "what time is it"
            browser_seen = [await browser.next_event()]
            while spoken(browser_seen) != reply:
                browser_seen.append(await browser.next_event())
            assert {e["type"] for e in browser_seen} == {"session.output_transcript.delta"}
            # The sideband is never restricted: usage reaches it, not the browser.
            await side.until("session.usage.updated")
            await side.send({"type": "session.close"})
            code, rest = await side.closed()
            assert rest[-1]["type"] == "session.closed" and code is None  # no graceful_close
        closed = [await browser.next_event()]
        while closed[-1]["type"] != "session.closed":
            closed.append(await browser.next_event())
        assert {e["type"] for e in closed} <= {"session.output_transcript.delta", "session.closed"}
        return session_id


def test_an_unrestricted_browser_may_steer_and_close(emulator: Running) -> None:
    """The default OpenAI warns about: every client event from the browser."""
    session_id = run(_unrestricted(emulator))
    assert ended(emulator, session_id)["ended_by"] == "close_requested"


async def _unrestricted(emulator: Running) -> str:
    session = {"model": "gpt-live-1", "delegation": RESPONSES}
    async with live(emulator, session) as (browser, session_id, _):
        async with attach(emulator, session_id, "?graceful_close=true") as ws:
            side = Side(ws)
            browser.send(
                {
                    "type": "session.update",
                    "event_id": "evt_swap",
                    "session": {"delegation": {"type": "responses", "responses": {"model": "o9"}}},
                }
            )
            updated = await side.until("session.updated")
            # The sideband sees the browser's change, to restore it if the policy says so.
            assert updated[-1]["session"]["delegation"]["responses"]["model"] == "o9"
            assert (
                updated[-1]["session"]["delegation"]["responses"]["tools"]
                == RESPONSES["responses"]["tools"]
            )
            assert updated[-1]["client_event_id"] == "evt_swap"
            await browser.until("session.updated")
            browser.send({"type": "session.input_audio.append", "audio": ""})
            error = (await browser.until("error"))[-1]
            assert error["error"]["param"] == "type"
            browser.send({"type": "transport.dtmf.send", "event": "1"})
            assert (await browser.until("error"))[-1]["error"]["code"] == "invalid_value"
            browser.channel.send("not json")
            assert (await browser.until("error"))[-1]["error"]["code"] == "invalid_json"
            browser.send({"type": "session.close", "event_id": "evt_bye"})
            code, seen = await side.closed()
            closed = seen[-1]
            assert closed["type"] == "session.closed" and closed["reason"] == "close_requested"
            assert closed["client_event_id"] == "evt_bye" and code == 1000  # graceful_close
            assert not any(e["type"] == "error" for e in seen)
        return session_id


# --- the sideband: usage, close, steering ------------------------------------------------------


def test_usage_is_cumulative_and_closes_with_the_final_count(emulator: Running) -> None:
    session_id, updates, final = run(_usage(emulator))
    record = ended(emulator, session_id)
    assert record["usage"] == final and record["ended_by"] == "close_requested"
    assert [u["usage"] for u in record["usage_updates"]][-len(updates) :] == updates
    # Every 0.2 s, as configured (on the emulator's clock, which the test moved once).
    times = [u["at_s"] for u in record["usage_updates"]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len([g for g in gaps if g > 5]) == 1
    assert all(0.1 < gap < 0.5 for gap in gaps if gap < 5), gaps


async def _usage(
    emulator: Running,
) -> tuple[str, list[dict[str, int]], dict[str, int]]:
    server = openai.AsyncOpenAI(base_url=emulator.v1, api_key=KEY, max_retries=0)
    try:
        async with live(emulator) as (browser, session_id, _):
            async with attach(emulator, session_id) as ws:
                side = Side(ws)
                updates = [
                    (await side.until("session.usage.updated"))[-1]["usage"] for _ in range(3)
                ]
                # 15 s billed up front, counted toward the session: never less, never added.
                assert updates[0] == {"seconds": 15, "active_seconds": 15, "paused_seconds": 0}
                emulator.clock.offset = 20  # twenty seconds later
                later = await usage_from(side, 20)
                elapsed = open_session(emulator, session_id)["seconds"]
                assert int(elapsed) - 1 <= later["seconds"] <= int(elapsed)
                assert later["seconds"] >= 20 and later["paused_seconds"] == 0
                updates.append(later)
            # The SDK's own sideband closes the session, and reads session.closed typed.
            async with server.live.sideband.connect(session_id=session_id) as connection:
                await connection.session.close(event_id="evt_close")
                async for event in connection:
                    if event.type == "session.closed":
                        break
            assert event.type == "session.closed"
            assert event.reason == "close_requested" and event.client_event_id == "evt_close"
            assert event.session.id == session_id and event.session.status == "active"
            final = event.usage.model_dump()
            assert final["seconds"] >= later["seconds"]
            for earlier, next_one in zip(updates, [*updates[1:], final], strict=False):
                assert all(next_one[k] >= earlier[k] for k in earlier)  # totals, never increments
            # The browser hears the same end, then its peer closes.
            heard = [await browser.next_event()]
            while heard[-1]["type"] != "session.closed":
                heard.append(await browser.next_event())
            assert heard[-1]["usage"] == final and heard[-1]["reason"] == "close_requested"
            await asyncio.wait_for(browser.channel_closed.wait(), 5)
            await browser.wait_state("closed", timeout=5)
            return session_id, updates, final
    finally:
        await server.close()


def test_the_browser_closing_its_peer_is_a_remote_hangup(emulator: Running) -> None:
    session_id, closed = run(_remote_hangup(emulator))
    assert closed["reason"] == "remote_hangup"
    record = ended(emulator, session_id)
    assert record["ended_by"] == "remote_hangup" and record["usage"] == closed["usage"]
    assert record["sidebands_total"] == 2
    assert record["sidebands_peak"] == 2


async def _remote_hangup(emulator: Running) -> tuple[str, dict[str, Any]]:
    async with live(emulator, microphone=True) as (browser, session_id, _):
        async with (
            attach(emulator, session_id) as first,
            attach(emulator, session_id, "?graceful_close=true") as second,
        ):
            await Side(first).until("session.usage.updated")
            await Side(second).until("session.usage.updated")
            await browser.close()
            code_1, seen_1 = await Side(first).closed()
            code_2, seen_2 = await Side(second).closed()
        assert seen_1[-1]["type"] == seen_2[-1]["type"] == "session.closed"
        assert seen_1[-1]["event_id"] == seen_2[-1]["event_id"]  # one event, to every sideband
        assert (code_1, code_2) == (None, 1000)
        # Nothing attaches to an ended session.
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with attach(emulator, session_id):
                pass
        assert refused.value.response.status_code == 404
        return session_id, seen_1[-1]


def test_instructions_append_is_acknowledged_then_spoken(emulator: Running) -> None:
    run(_appends(emulator))


async def _appends(emulator: Running) -> None:
    async with live(emulator) as (browser, session_id, _), attach(emulator, session_id) as ws:
        side = Side(ws)
        goodbye = "Your time is up: say goodbye."
        await side.send(
            {
                "type": "session.instructions.append",
                "event_id": "evt_goodbye",
                "content": goodbye,
                "delegation_id": None,
            }
        )
        acked = await side.until("session.instructions.appended")
        assert acked[-1]["client_event_id"] == "evt_goodbye"
        assert acked[-1]["start_ms"] == acked[-1]["end_ms"] >= 0
        said = f"As instructed: {goodbye}"
        await until_spoken(side, said)
        heard = [await browser.next_event()]
        while spoken(heard) != said:
            heard.append(await browser.next_event())
        deltas = [e for e in heard if e["type"] == "session.output_transcript.delta"]
        assert len(deltas) > 1 and all(e["end_ms"] > e["start_ms"] for e in deltas)
        assert [e["start_ms"] for e in deltas] == sorted(e["start_ms"] for e in deltas)
        # Thinking is silent; commentary is said as given.
        await side.send(
            {"type": "session.thinking.append", "content": "Note.", "delegation_id": None}
        )
        assert (await side.until("session.thinking.appended"))[-1]["type"].endswith("appended")
        await side.send(
            {"type": "session.commentary.append", "content": "One moment.", "delegation_id": None}
        )
        acked = await side.until("session.commentary.appended")
        assert spoken(acked) == ""  # nothing said for the thinking
        await until_spoken(side, "One moment.")
        # Malformed appends: errors to the sideband alone.
        malformed: list[tuple[dict[str, Any], str, str]] = [
            (
                {"type": "session.instructions.append", "content": "x"},
                "missing_required_parameter",
                "delegation_id",
            ),
            (
                {"type": "session.instructions.append", "content": "x", "delegation_id": "deleg_1"},
                "invalid_value",
                "delegation_id",
            ),
            (
                {
                    "type": "session.instructions.append",
                    "content": "x " * 600,
                    "delegation_id": None,
                },
                "invalid_value",
                "content",
            ),
            (
                {"type": "session.instructions.append", "content": ["x"], "delegation_id": None},
                "invalid_type",
                "content",
            ),
            (
                {
                    "type": "session.instructions.append",
                    "content": "x",
                    "delegation_id": None,
                    "role": "system",
                },
                "unknown_parameter",
                "role",
            ),
            (
                {"type": "session.start", "session": {"model": "gpt-live-1"}},
                "invalid_value",
                "type",
            ),
            ({"type": "conversation.item.create"}, "invalid_value", "type"),
            ({"type": "response.create"}, "invalid_value", "type"),  # no Responses delegation
            ({"type": "decision.create", "event_id": "evt_d"}, "unsupported_event", "type"),
        ]
        for event, code, param in malformed:
            await side.send(event)
            error = (await side.until("error"))[-1]["error"]
            assert (error["code"], error["param"]) == (code, param), event
        await asyncio.sleep(0.1)
        assert not any(e["type"] == "error" for e in browser.backlog())
        await side.send({"type": "session.close"})
        await side.closed()


def test_only_backend_settings_and_triggers_change(emulator: Running) -> None:
    run(_updates(emulator))


async def _updates(emulator: Running) -> None:
    session = {"model": "gpt-live-1", "delegation": RESPONSES, "instructions": "Fixed."}
    async with (
        live(emulator, session) as (_, session_id, started),
        attach(emulator, session_id) as ws,
    ):
        side = Side(ws)
        for update, code, param in [
            ({"instructions": "New rules."}, "immutable_field_update", "session.instructions"),
            ({"model": "gpt-live-1.1"}, "immutable_field_update", "session.model"),
            ({"audio": {"output": {"voice": "cedar"}}}, "immutable_field_update", "session.audio"),
            (
                {"client": {"data_channel": {"allowed_client_events": "all"}}},
                "immutable_field_update",
                "session.client",
            ),
            ({"store": True}, "immutable_field_update", "session.store"),
            (
                {"delegation": {"type": "client"}},
                "immutable_field_update",
                "session.delegation.type",
            ),
            ({"delegation": None}, "immutable_field_update", "session.delegation.type"),
            ({"tools": []}, "unknown_parameter", "session.tools"),
            (
                {"delegation": {"type": "responses", "responses": {"temperature": 1}}},
                "unknown_parameter",
                "session.delegation.responses.temperature",
            ),
        ]:
            await side.send({"type": "session.update", "event_id": "evt_u", "session": update})
            error = (await side.until("error"))[-1]
            assert (error["error"]["code"], error["error"]["param"]) == (code, param), update
            assert error["client_event_id"] == "evt_u"
        triggers = [
            {
                "type": "decisions",
                "event_type": "session.output_transcript.delta",
                "decisions": {"questions": [{"type": "predicate", "instructions": "Rude?"}]},
            }
        ]
        await side.send(
            {
                "type": "session.update",
                "session": {
                    "triggers": triggers,
                    "delegation": {
                        "type": "responses",
                        "acknowledgement_delay_ms": 250,
                        "responses": {"instructions": "Be terse.", "tools": []},
                    },
                },
            }
        )
        updated = (await side.until("session.updated"))[-1]["session"]
        assert updated["triggers"] == triggers
        delegation = updated["delegation"]
        assert delegation["acknowledgement_delay_ms"] == 250
        assert delegation["responses"] == RESPONSES["responses"] | {
            "instructions": "Be terse.",
            "tools": [],
        }
        assert {k: v for k, v in updated.items() if k not in ("triggers", "delegation")} == {
            k: v for k, v in started["session"].items() if k not in ("triggers", "delegation")
        }
        assert open_session(emulator, session_id)["session"] == updated
        await side.send({"type": "session.close"})
        await side.closed()


# --- what a session costs: the backend, standby, the audio copies, the end -------------------

SCRIPTED: dict[str, Any] = {
    "input_tokens": 1200,
    "output_tokens": 90,
    "input_tokens_details": {"cached_tokens": 1000},
    "output_tokens_details": {"reasoning_tokens": 64},
}


def test_backend_usage_is_scripted_and_reported_once_per_response(emulator: Running) -> None:
    session_id, completed = run(_backend(emulator))
    usages = ended(emulator, session_id)["backend_usages"]
    assert [(u["status"], u["model"]) for u in usages] == [
        ("completed", "gpt-5.2"),
        ("incomplete", "gpt-5.2"),
        ("completed", "gpt-5.2"),
    ]
    assert usages[0]["response_id"] == completed["response"]["id"]
    assert usages[0]["usage"] == completed["response"]["usage"]
    assert usages[2]["usage"]["input_tokens"] > 0  # counted by the emulator itself


async def _backend(emulator: Running) -> tuple[str, dict[str, Any]]:
    session = {"model": "gpt-live-1", "delegation": RESPONSES}
    async with live(emulator, session) as (_, session_id, _), attach(emulator, session_id) as ws:
        side = Side(ws)
        bad_scripts: list[tuple[dict[str, Any], str | None]] = [
            ({"responses": [{"usage": {"input_tokens": 1}}]}, "responses[0].usage.output_tokens"),
            ({"responses": [{"usage": SCRIPTED, "status": "done"}]}, "responses[0].status"),
            (
                {"responses": [{"usage": SCRIPTED | {"total_tokens": 5}}]},
                "responses[0].usage.total_tokens",
            ),
            (
                {"responses": [{"usage": SCRIPTED | {"input_tokens": 10}}]},
                "responses[0].usage.input_tokens_details.cached_tokens",
            ),
            ({"responses": [{"usage": SCRIPTED | {"extra": 1}}]}, None),
            ({"caller_says": ""}, "caller_says[0]"),
            ({"surprise": 1}, "surprise"),
        ]
        for bad, param in bad_scripts:
            refused = await script(emulator, session_id, bad)
            assert refused.status_code == 400, bad
            assert param is None or refused.json()["error"]["param"] == param
        accepted = await script(
            emulator,
            session_id,
            {"responses": [{"usage": SCRIPTED}, {"usage": SCRIPTED, "status": "incomplete"}]},
        )
        assert accepted.json() == {"caller_says": 0, "responses": 2}
        seen = await side.until("response.event")
        delegation = [e for e in seen if e["type"] == "session.delegation.created"][-1]
        assert delegation["delegation"]["target"] == "responses"
        events = [seen[-1]] + [await side.next_event() for _ in range(3)]
        nested = [e["event"] for e in events if e["type"] == "response.event"]
        while len(nested) < 4:
            event = await side.next_event()
            if event["type"] == "response.event":
                nested.append(event["event"])
        assert [n["type"] for n in nested] == [
            "response.created",
            "response.completed",
            "response.created",
            "response.incomplete",
        ]
        completed = nested[1]
        assert completed["response"]["id"] == delegation["delegation"]["response_id"]
        usage = completed["response"]["usage"]
        assert usage["total_tokens"] == 1290
        assert usage["input_tokens_details"]["cached_tokens"] == 1000
        assert usage["output_tokens_details"]["reasoning_tokens"] == 64
        # A caller's turn is delegated too, with the emulator's own counts.
        await script(emulator, session_id, {"caller_says": "check my invoice"})
        turn = await until_spoken(side, "You said: check my invoice")
        assert [e["event"]["type"] for e in turn if e["type"] == "response.event"] == [
            "response.created",
            "response.completed",
        ]
        await side.send({"type": "session.close"})
        await side.closed()
    client_only = await script(emulator, session_id, {"responses": [{"usage": SCRIPTED}]})
    assert client_only.status_code == 404  # ended
    return session_id, completed


def test_backend_usages_need_a_responses_delegation(emulator: Running) -> None:
    async def client_delegated() -> int:
        async with live(emulator) as (_, session_id, _):
            response = await script(emulator, session_id, {"responses": [{"usage": SCRIPTED}]})
            return response.status_code

    assert run(client_delegated()) == 400


class OneSentence(ToneTrack):
    """A caller who says one thing: 0.6 s of voice (a tone), then quiet."""

    def __init__(self) -> None:
        super().__init__(frequency=300)
        self.sent = 0

    async def recv(self) -> Any:
        frame = await super().recv()
        self.sent += 1
        if self.sent > 30:
            frame.planes[0].update(bytes(frame.samples * 2))
        return frame


def test_a_spoken_turn_is_transcribed_and_answered(emulator: Running) -> None:
    """What `make dev` shows: the caller talks, pauses, and the model answers."""
    run(_spoken_turn(emulator))


async def _spoken_turn(emulator: Running) -> None:
    async with live(emulator, microphone=True) as (browser, _, _):
        browser.pc.getSenders()[0].replaceTrack(OneSentence())
        heard = await browser.until("session.input_transcript.delta")
        while spoken(heard, "session.input_transcript.delta") != DEFAULT_TRANSCRIPT:
            heard.append(await browser.next_event())
        reply = f"Hello from the local Live emulator. You said: {DEFAULT_TRANSCRIPT}"
        while spoken(heard) != reply:
            heard.append(await browser.next_event())
        await asyncio.sleep(1.5)  # quiet since: no second turn
        assert not any("transcript" in e["type"] for e in browser.backlog())


def test_the_audio_copies_reach_every_sideband_and_are_counted(emulator: Running) -> None:
    session_id, received = run(_audio(emulator))
    copied = ended(emulator, session_id)["sideband_audio"]
    assert copied["bytes"] >= received > 0
    assert copied["pcm_bytes"] == copied["events"] * 4800


async def _audio(emulator: Running) -> tuple[str, int]:
    async with (
        live(emulator, microphone=True) as (_, session_id, _),
        attach(emulator, session_id) as ws,
    ):
        side = Side(ws)
        while len(side.copies) < 12:
            await side.next_event()
        kinds = {c["type"] for c in side.copies}
        assert kinds == {"session.input_audio.append", "session.output_audio.delta"}
        caller = [c for c in side.copies if c["type"] == "session.input_audio.append"]
        model = [c for c in side.copies if c["type"] == "session.output_audio.delta"]
        assert set(caller[0]) == {"type", "audio"}  # no event_id, no timing
        assert len(base64.b64decode(caller[0]["audio"])) == 4800  # 100 ms of PCM16 at 24 kHz
        assert all(m["end_ms"] - m["start_ms"] == 100 for m in model)
        assert all(b["start_ms"] >= a["end_ms"] for a, b in itertools.pairwise(model))
        # Muted, the model hears silence: the copies go on (they are taken before muting).
        await side.send({"type": "session.input_audio.mute"})
        await side.until("session.input_audio.muted")
        before = len(side.copies)
        while len(side.copies) < before + 4:
            await side.next_event()
        await side.send({"type": "session.close"})
        await side.closed()
        return session_id, side.copy_bytes


def test_standby_pauses_an_idle_session_and_bills_it_as_paused(emulator: Running) -> None:
    session_id, final = run(_standby(emulator))
    record = ended(emulator, session_id)
    assert record["standby"]["pauses"] == 1 and record["usage"] == final
    assert final["paused_seconds"] >= 15 and final["active_seconds"] >= PREPAID_S


async def _standby(emulator: Running) -> tuple[str, dict[str, int]]:
    session = {"model": "gpt-live-1", "wake_policy": {"type": "speech"}, "idle_timeout_s": 1}
    async with (
        live(emulator, session) as (browser, session_id, started),
        attach(emulator, session_id) as ws,
    ):
        assert started["session"]["wake_policy"] == {"type": "speech", "vad_threshold": 0.5}
        side = Side(ws)  # the caller has no microphone: nobody speaks
        await side.until("session.paused", timeout=5)
        emulator.clock.offset = 40
        usage = await usage_from(side, 40)
        assert usage["paused_seconds"] >= 20 and usage["active_seconds"] == PREPAID_S
        await script(emulator, session_id, {"caller_says": "are you there"})
        woke = await side.until("session.resumed")
        assert woke[-1]["type"] == "session.resumed"
        await until_spoken(side, "You said: are you there")
        emulator.clock.offset = 45  # five more seconds, awake
        await side.send({"type": "session.close"})
        _, seen = await side.closed()
        final = seen[-1]["usage"]
        assert (
            final["paused_seconds"] == usage["paused_seconds"]
            or final["paused_seconds"] >= usage["paused_seconds"]
        )
        assert final["active_seconds"] >= PREPAID_S + 4
        paused = [e for e in browser.backlog() if e["type"] in STANDBY_EVENTS]
        assert [e["type"] for e in paused][:2] == ["session.paused", "session.resumed"]
        return session_id, typing.cast(dict[str, int], final)


def test_a_session_expires_at_its_limit(emulator: Running) -> None:
    session_id, closed = run(_expires(emulator))
    assert closed["reason"] == "expired"
    assert closed["usage"]["seconds"] >= 3600
    assert ended(emulator, session_id)["ended_by"] == "expired"


async def _expires(emulator: Running) -> tuple[str, dict[str, Any]]:
    async with live(emulator) as (browser, session_id, started), attach(emulator, session_id) as ws:
        emulator.clock.offset = started["session"]["expires_at"] - emulator.clock() + 1
        _, seen = await Side(ws).closed()
        heard = [await browser.next_event()]
        while heard[-1]["type"] != "session.closed":
            heard.append(await browser.next_event())
        assert heard[-1]["event_id"] == seen[-1]["event_id"]
        await browser.wait_state("closed", timeout=5)
        return session_id, seen[-1]


def test_the_session_limit_sets_expires_at() -> None:
    with emulator_thread(session_limit_s=2.0, live_usage_every_s=0.5) as short:
        closed, lasted = run(_short_limit(short))
    assert closed["reason"] == "expired" and 1.5 <= lasted < 6


async def _short_limit(emulator: Running) -> tuple[dict[str, Any], float]:
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    async with live(emulator) as (_, session_id, started), attach(emulator, session_id) as ws:
        assert started["session"]["expires_at"] - emulator.clock() <= 2
        _, seen = await Side(ws).closed()
        return seen[-1], loop.time() - started_at


def test_shutdown_ends_sessions_as_a_lost_connection() -> None:
    run(_shutdown())


async def _shutdown() -> None:
    from aiohttp import web

    app = create_app(KEY, live_usage_every_s=USAGE_EVERY_S)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    running = Running(url, ShiftedClock())
    try:
        async with live(running) as (browser, session_id, _), attach(running, session_id) as ws:
            side = Side(ws)
            await side.until("session.usage.updated")
            cleanup = asyncio.ensure_future(runner.cleanup())
            _, seen = await side.closed()
            assert seen[-1]["reason"] == "connection_lost"
            await cleanup
            await browser.wait_state("closed", timeout=5)
    finally:
        await runner.cleanup()


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("429", 429, "rate_limit_exceeded"),
        ("insufficient_quota", 429, "insufficient_quota"),
        ("500", 500, None),
        ("503", 503, None),
    ],
)
def test_the_create_fails_on_demand(
    emulator: Running, fault: str, status: int, code: str | None
) -> None:
    httpx.post(
        emulator.url + "/__emulator/faults", json={"live_sessions": fault, "times": 1}
    ).raise_for_status()
    body = {"session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": OFFER}}
    assert_error(
        httpx.post(emulator.v1 + "/live/sessions", json=body, headers=server_headers()),
        status,
        code,
    )
    assert state(emulator)["faults"]["live_sessions"] is None  # once


def test_malformed_and_hanging_creates(emulator: Running) -> None:
    url = emulator.v1 + "/live/sessions"
    body = {"session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": OFFER}}
    faults = emulator.url + "/__emulator/faults"
    httpx.post(faults, json={"live_sessions": "malformed", "times": 1}).raise_for_status()
    malformed = httpx.post(url, json=body, headers=server_headers())
    assert malformed.status_code == 201
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    httpx.post(faults, json={"live_sessions": "missing_value", "times": 1}).raise_for_status()
    missing = httpx.post(url, json=body, headers=server_headers())
    with pytest.raises(pydantic.ValidationError):
        LiveCreateResponse.model_validate(missing.json())
    httpx.post(faults, json={"live_sessions": "hang", "times": 1}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, headers=server_headers(), timeout=0.5)
    assert state(emulator)["live_sessions_open"] == []


def test_a_sideband_fault_refuses_one_attach(emulator: Running) -> None:
    async def faulty() -> None:
        async with live(emulator) as (_, session_id, _):
            async with httpx.AsyncClient(base_url=emulator.url) as http:
                await http.post("/__emulator/faults", json={"live_sideband": "503", "times": 1})
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with attach(emulator, session_id):
                    pass
            assert refused.value.response.status_code == 503
            async with attach(emulator, session_id) as ws:
                await Side(ws).until("session.usage.updated")

    run(faulty())
