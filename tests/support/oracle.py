"""The conformance oracle for what the emulator (or anything playing OpenAI) sends: the `openai`
package's typed models parse every event and answer, and any field they do not know fails."""

from __future__ import annotations

import re
import typing
from typing import Any

import httpx
import pydantic
from openai.types.realtime import ClientSecretCreateResponse, RealtimeServerEvent

SECRET = re.compile(r"^ek_[0-9a-f]{32}$")
EVENT_MODELS: dict[str, type[pydantic.BaseModel]] = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(RealtimeServerEvent)[0])
}
SERVER_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
# session.created/updated are typed with the *request* session model, which has no id, object
# or expires_at; OpenAI sends them anyway, so they are the only unknown fields allowed.
SESSION_EVENT_EXTRAS = {"session.id", "session.object", "session.expires_at"}


def unknown_fields(value: Any, path: str = "") -> list[str]:
    """Paths of fields the SDK models kept only as extras: what the SDK does not know."""
    if isinstance(value, pydantic.BaseModel):
        found = [f"{path}.{name}".lstrip(".") for name in value.model_extra or {}]
        for name in type(value).model_fields:
            found += unknown_fields(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in unknown_fields(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in unknown_fields(item, f"{path}.{key}")]
    return []


def conform_event(payload: dict[str, Any]) -> pydantic.BaseModel:
    model = EVENT_MODELS.get(payload.get("type", ""))
    assert model is not None, f"not an OpenAI Realtime server event: {payload.get('type')!r}"
    event = model.model_validate(payload)
    SERVER_EVENTS.validate_python(payload)
    allowed = SESSION_EVENT_EXTRAS if payload["type"].startswith("session.") else set()
    assert set(unknown_fields(event)) <= allowed, (payload["type"], unknown_fields(event))
    assert payload["event_id"].startswith("event_")
    return event


def conform_secret(response: httpx.Response) -> ClientSecretCreateResponse:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    secret = ClientSecretCreateResponse.model_validate(response.json())
    assert unknown_fields(secret) == []
    assert SECRET.match(secret.value)
    assert secret.session.id.startswith("sess_")
    return secret
