"""GPT-Live as the tests see it: the `openai` package's typed Live models as the oracle for every
answer and event (a field the models do not know fails, except the few OpenAI documents that are
newer than the pinned SDK), and a WebRTC browser peer that hears Live's events."""

from __future__ import annotations

import asyncio
import typing
from typing import Any

import httpx
import pydantic
from openai.types.live import LiveCreateResponse, ServerEvent
from openai.types.responses import ResponseStreamEvent

from tests.support.caller import Caller
from tests.support.oracle import unknown_fields

PREPAID_S = 15  # what each WebRTC create bills up front, in seconds


# --- the oracle ----------------------------------------------------------------------------

LIVE_EVENT_MODELS: dict[str, type[pydantic.BaseModel]] = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(ServerEvent)[0])
}
LIVE_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
RESPONSE_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
# OpenAI documents these and the SDK pinned here (openai 3.54) does not know them yet: the
# standby settings of a session, the active/paused split of its usage, and standby's events.
NEWER_THAN_SDK = {
    "session": {"session.wake_policy", "session.idle_timeout_s"},
    "usage": {"usage.active_seconds", "usage.paused_seconds"},
}
STANDBY_EVENTS = ("session.paused", "session.resumed")
AUDIO_COPIES = ("session.input_audio.append", "session.output_audio.delta")


def conform(payload: dict[str, Any]) -> None:
    """A Live server event, as the SDK's models parse it."""
    kind = payload.get("type", "")
    if kind in STANDBY_EVENTS:
        assert set(payload) == {"type", "event_id"}, payload
        assert payload["event_id"].startswith("event_")
        return
    model = LIVE_EVENT_MODELS.get(kind)
    assert model is not None, f"not a Live server event: {kind!r}"
    event = model.model_validate(payload)
    LIVE_EVENTS.validate_python(payload)
    allowed = NEWER_THAN_SDK["session"] if "session" in payload else set()
    allowed |= NEWER_THAN_SDK["usage"] if "usage" in payload else set()
    assert set(unknown_fields(event)) <= allowed, (kind, unknown_fields(event))
    if kind in AUDIO_COPIES:  # reflected audio carries no event_id
        assert "event_id" not in payload
    else:
        assert payload["event_id"].startswith("event_")
    if kind == "response.event":
        nested = RESPONSE_EVENTS.validate_python(payload["event"])
        assert unknown_fields(nested) == [], unknown_fields(nested)
    if "usage" in payload and kind != "response.event":
        usage = payload["usage"]
        assert usage["seconds"] == usage["active_seconds"] + usage["paused_seconds"]
        assert usage["active_seconds"] >= PREPAID_S


def conform_create(response: httpx.Response) -> LiveCreateResponse:
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    created = LiveCreateResponse.model_validate(response.json())
    assert unknown_fields(created) == []
    assert created.session.id.startswith("live_") and created.transport.type == "webrtc"
    assert created.transport.sdp.startswith("v=0")
    return created


class LiveCaller(Caller):
    """The page's peer, hearing Live's events on its data channel."""

    async def next_event(self, timeout: float = 10) -> dict[str, Any]:
        event = await asyncio.wait_for(self.events.get(), timeout)
        conform(event)
        return event

    def backlog(self) -> list[dict[str, Any]]:
        seen = []
        while not self.events.empty():
            seen.append(self.events.get_nowait())
            conform(seen[-1])
        return seen
