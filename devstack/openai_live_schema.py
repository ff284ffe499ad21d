"""The request shapes of GPT-Live, OpenAI's second voice API: how the Live emulator checks a
create (`POST /v1/live/sessions`), a `session.update` and every client event, and how it
resolves a session with its defaults. The config object is strict, as OpenAI's is: a key it
does not know is refused, naming the key. The tests hold every answer to the `openai`
package's typed Live models (tests/tools/test_openai_live_emulator.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from devstack.openai_schema import (
    ApiError,
    _boolean,
    _enum,
    _integer,
    _list,
    _number,
    _object,
    _string,
    invalid_type,
    invalid_value,
    missing_parameter,
    unknown_parameter,
)
from devstack.openai_usage import text_tokens

MODELS = ("gpt-live-1", "gpt-live-1.1")
# The built-in voices the SDK's `BuiltInVoice` lists; a custom voice is `{"id": "voice_..."}`.
VOICES = (
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone",
    "tempo", "verse", "vesper", "willow",
)  # fmt: skip
DEFAULT_VOICE = "marin"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant. This is the local Live emulator: it answers with "
    "scripted sentences."
)
INSTRUCTIONS_TOKENS = 16_384
INPUT_ITEMS = 128
INPUT_TOKENS = 8_192
APPEND_TOKENS = 500  # each instructions, thinking or commentary append
MIN_BACKEND_OUTPUT_TOKENS = 16
# What a Responses delegation acknowledges after by default (ms): 400 for Decisions, else 0.
ACK_DELAY_MS = {"client": 0, "responses": 0, "decisions": 400}

# Every client event of the Live API, and where each may be sent.
CLIENT_EVENTS = (
    "session.start",
    "session.update",
    "session.input_audio.append",
    "session.input_audio.mute",
    "session.input_audio.unmute",
    "session.output_audio.fixture.play",
    "session.instructions.append",
    "session.thinking.append",
    "session.commentary.append",
    "decision.create",
    "decision.item.create",
    "decision.item.delete",
    "response.item.create",
    "response.create",
    "session.close",
    "transport.dtmf.send",
)
# The primary WebSocket's own: a WebRTC session is started by its create, and sends its audio
# on the media track.
WEBSOCKET_ONLY = frozenset({"session.start", "session.input_audio.append"})
SIDEBAND_EVENTS = frozenset(CLIENT_EVENTS) - WEBSOCKET_ONLY  # the sideband's 14
CHANNEL_EVENTS = SIDEBAND_EVENTS - {"transport.dtmf.send"}  # DTMF is the sideband's (SIP)
SERVER_EVENTS = (
    "session.started",
    "session.updated",
    "session.input_audio.muted",
    "session.input_audio.unmuted",
    "session.output_audio.fixture.playing",
    "session.output_audio.fixture.played",
    "session.instructions.appended",
    "session.thinking.appended",
    "session.commentary.appended",
    "session.input_audio.append",
    "session.output_audio.delta",
    "session.input_transcript.delta",
    "session.output_transcript.delta",
    "session.delegation.created",
    "decision.event",
    "decision.item.created",
    "decision.item.deleted",
    "response.event",
    "session.usage.updated",
    "session.paused",
    "session.resumed",
    "session.closed",
    "error",
    "info",
    "transport.dtmf.received",
    "transport.dtmf.sent",
    "transport.ringing",
    "transport.answered",
    "transport.failed",
)

CONFIG_FIELDS = frozenset(
    {
        "model",
        "instructions",
        "input",
        "audio",
        "delegation",
        "client",
        "triggers",
        "store",
        "safety_identifier",
        # Standby (WebRTC and SIP): documented by OpenAI, newer than the SDK the tests pin.
        "wake_policy",
        "idle_timeout_s",
    }
)
UPDATABLE = frozenset({"delegation", "triggers"})  # the rest is fixed at start
RESPONSES_FIELDS = frozenset(
    {
        "model",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "reasoning",
        "text",
        "service_tier",
    }
)
TOOL_TYPES = (
    "function", "web_search", "file_search", "code_interpreter", "shell", "image_generation",
    "mcp", "custom", "namespace", "tool_search", "programmatic_tool_calling", "computer",
    "apply_patch",
)  # fmt: skip
TOOL_CHOICE_TYPES = (
    "function", "mcp", "file_search", "web_search", "web_search_preview", "image_generation",
    "computer", "code_interpreter", "programmatic_tool_calling", "shell", "custom",
    "apply_patch", "allowed_tools",
)  # fmt: skip
SERVICE_TIERS = ("auto", "default", "fast_tier_temp_pilot", "flex", "priority", "ultrafast")
TRANSCRIPT_EVENTS = ("session.input_transcript.delta", "session.output_transcript.delta")
QUESTION_TYPES = ("choice", "predicate", "score")


# --- POST /v1/live/sessions ----------------------------------------------------------------


def check_create(body: Any) -> tuple[dict[str, Any], str]:
    """The session request and the SDP offer of a create, or the ApiError OpenAI answers."""
    if body is None:
        raise missing_parameter("session")
    if not isinstance(body, dict):
        raise invalid_type("body", body, "an object")
    _object(body, "", frozenset({"session", "transport"}))
    for name in ("session", "transport"):
        if name not in body:
            raise missing_parameter(name)
    transport = _object(body["transport"], "transport", frozenset({"type", "sdp"}))
    if "type" not in transport:
        raise missing_parameter("transport.type")
    # The emulator serves WebRTC; SIP needs an enabled organisation and a trunk.
    _enum(transport["type"], "transport.type", ("webrtc",))
    if "sdp" not in transport:
        raise missing_parameter("transport.sdp")
    sdp = _string(transport["sdp"], "transport.sdp")
    if not sdp.strip():
        raise invalid_value("transport.sdp", "", "Expected the browser's SDP offer.")
    return check_config(body["session"], "session"), sdp


def check_config(value: Any, path: str) -> dict[str, Any]:
    """A session config as the create and `session.start` take it."""
    session = _object(value, path, CONFIG_FIELDS)
    if "model" not in session:
        raise missing_parameter(f"{path}.model")
    for key, item in session.items():
        _CONFIG_CHECKS[key](item, f"{path}.{key}")
    if ("wake_policy" in session) != ("idle_timeout_s" in session):
        # Standby takes both: what wakes the model, and how long idle before it pauses.
        missing = "idle_timeout_s" if "wake_policy" in session else "wake_policy"
        raise missing_parameter(f"{path}.{missing}")
    return session


def _check_model(value: Any, path: str) -> None:
    # A Realtime model here is refused like any unknown value (OpenAI's exact code: unverified).
    _enum(value, path, MODELS)


def _check_instructions(value: Any, path: str) -> None:
    if value is None:
        return
    if text_tokens(_string(value, path)) > INSTRUCTIONS_TOKENS:
        raise invalid_value(path, "...", f"Expected at most {INSTRUCTIONS_TOKENS} tokens.")


def _check_optional_string(value: Any, path: str) -> None:
    if value is not None:
        _string(value, path)


def _check_audio(value: Any, path: str) -> None:
    # No `format`: a WebRTC session negotiates its audio on the media transport.
    _object(value, path, frozenset({"output"}))
    if "output" in value:
        output = _object(value["output"], f"{path}.output", frozenset({"voice"}))
        if "voice" in output:
            _check_voice(output["voice"], f"{path}.output.voice")


def _check_voice(value: Any, path: str) -> None:
    if isinstance(value, dict):
        _object(value, path, frozenset({"id"}))
        if "id" not in value:
            raise missing_parameter(f"{path}.id")
        if not _string(value["id"], f"{path}.id").startswith("voice_"):
            raise invalid_value(
                f"{path}.id", value["id"], "Expected a custom voice id 'voice_...'."
            )
        return
    _enum(value, path, VOICES)


def _check_input(value: Any, path: str) -> None:
    items = _list(value, path)
    if len(items) > INPUT_ITEMS:
        raise invalid_value(path, f"{len(items)} items", f"Expected at most {INPUT_ITEMS} items.")
    tokens = 0
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        _object(item, where, frozenset({"role", "content", "id", "status", "type"}))
        role = _enum(item.get("role"), f"{where}.role", ("developer", "user", "assistant"))
        if "type" in item:
            _enum(item["type"], f"{where}.type", ("message",))
        if "status" in item:
            _enum(item["status"], f"{where}.status", ("incomplete", "completed"))
        if "id" in item:
            _string(item["id"], f"{where}.id")
        if "content" not in item:
            raise missing_parameter(f"{where}.content")
        parts = _list(item["content"], f"{where}.content")
        if len(parts) != 1:
            raise invalid_value(f"{where}.content", parts, "Expected exactly one text part.")
        part = _object(parts[0], f"{where}.content[0]", frozenset({"type", "text"}))
        kinds = ("text", "output_text") if role == "assistant" else ("input_text",)
        if "type" in part:
            _enum(part["type"], f"{where}.content[0].type", kinds)
        if "text" not in part:
            raise missing_parameter(f"{where}.content[0].text")
        tokens += text_tokens(_string(part["text"], f"{where}.content[0].text"))
    if tokens > INPUT_TOKENS:
        raise invalid_value(path, f"{tokens} tokens", f"Expected at most {INPUT_TOKENS} tokens.")


def _check_delegation(value: Any, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid_type(path, value, "an object or null")
    if "type" not in value:
        raise missing_parameter(f"{path}.type")
    kind = _enum(value["type"], f"{path}.type", ("client", "responses", "decisions"))
    fields = {"type", "acknowledgement_delay_ms"} | ({kind} if kind != "client" else set())
    _object(value, path, frozenset(fields))
    if "acknowledgement_delay_ms" in value:
        _non_negative(value["acknowledgement_delay_ms"], f"{path}.acknowledgement_delay_ms")
    if kind == "client":
        return
    if kind not in value:
        raise missing_parameter(f"{path}.{kind}")
    if kind == "responses":
        _check_responses(value["responses"], f"{path}.responses", update=False)
    else:
        _check_decisions(value["decisions"], f"{path}.decisions", update=False)


def _check_responses(value: Any, path: str, *, update: bool) -> None:
    _object(value, path, RESPONSES_FIELDS)
    if not update and "model" not in value:
        raise missing_parameter(f"{path}.model")
    for key, item in value.items():
        _RESPONSES_CHECKS[key](item, f"{path}.{key}")


def _check_backend_tokens(value: Any, path: str) -> None:
    if value is not None and _integer(value, path) < MIN_BACKEND_OUTPUT_TOKENS:
        raise invalid_value(path, value, f"Expected at least {MIN_BACKEND_OUTPUT_TOKENS}.")


def _check_tools(value: Any, path: str) -> None:
    for index, tool in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, tool, "an object")
        if "type" not in tool:
            raise missing_parameter(f"{where}.type")
        if _enum(tool["type"], f"{where}.type", TOOL_TYPES) == "function":
            fields = frozenset({"type", "name", "description", "parameters", "strict"})
            _object(tool, where, fields)
            if "name" not in tool:
                raise missing_parameter(f"{where}.name")
            _string(tool["name"], f"{where}.name")


def _check_tool_choice(value: Any, path: str) -> None:
    if isinstance(value, dict):
        if "type" not in value:
            raise missing_parameter(f"{path}.type")
        _enum(value["type"], f"{path}.type", TOOL_CHOICE_TYPES)
        return
    _enum(value, path, ("auto", "none", "required"))


def _check_optional_boolean(value: Any, path: str) -> None:
    if value is not None:
        _boolean(value, path)


def _check_reasoning(value: Any, path: str) -> None:
    if value is None:
        return
    _object(value, path, frozenset({"effort", "summary"}))
    if value.get("effort") is not None:
        efforts = ("none", "minimal", "low", "medium", "high", "xhigh")
        _enum(value["effort"], f"{path}.effort", efforts)
    if value.get("summary") is not None:
        _enum(value["summary"], f"{path}.summary", ("concise", "detailed", "auto"))


def _check_text(value: Any, path: str) -> None:
    if value is None:
        return
    _object(value, path, frozenset({"verbosity"}))
    if value.get("verbosity") is not None:
        _enum(value["verbosity"], f"{path}.verbosity", ("low", "medium", "high"))


def _check_service_tier(value: Any, path: str) -> None:
    if value is not None:
        _enum(value, path, SERVICE_TIERS)


def _check_decisions(value: Any, path: str, *, update: bool) -> None:
    # The Decisions API is checked only to its outline: the emulator never runs it.
    _object(value, path, frozenset({"model", "questions"}))
    for key in ("model", "questions"):
        if not update and key not in value:
            raise missing_parameter(f"{path}.{key}")
    if "model" in value:
        _string(value["model"], f"{path}.model")
    if "questions" in value:
        _check_questions(value["questions"], f"{path}.questions")


def _check_questions(value: Any, path: str) -> None:
    for index, question in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        if not isinstance(question, dict):
            raise invalid_type(where, question, "an object")
        _enum(question.get("type"), f"{where}.type", QUESTION_TYPES)


def _check_triggers(value: Any, path: str) -> None:
    seen: set[str] = set()
    for index, trigger in enumerate(_list(value, path)):
        where = f"{path}[{index}]"
        _object(trigger, where, frozenset({"type", "event_type", "decisions"}))
        for key in ("type", "event_type", "decisions"):
            if key not in trigger:
                raise missing_parameter(f"{where}.{key}")
        _enum(trigger["type"], f"{where}.type", ("decisions",))
        event_type = _enum(trigger["event_type"], f"{where}.event_type", TRANSCRIPT_EVENTS)
        if event_type in seen:
            raise invalid_value(
                f"{where}.event_type", event_type, "At most one trigger per transcript event."
            )
        seen.add(event_type)
        decisions = _object(trigger["decisions"], f"{where}.decisions", frozenset({"questions"}))
        if "questions" not in decisions:
            raise missing_parameter(f"{where}.decisions.questions")
        _check_questions(decisions["questions"], f"{where}.decisions.questions")


def _check_client(value: Any, path: str) -> None:
    _object(value, path, frozenset({"data_channel"}))
    if "data_channel" not in value:
        raise missing_parameter(f"{path}.data_channel")
    where = f"{path}.data_channel"
    channel = _object(
        value["data_channel"], where, frozenset({"allowed_client_events", "allowed_server_events"})
    )
    if "allowed_client_events" in channel:
        _check_allowed_client_events(
            channel["allowed_client_events"], f"{where}.allowed_client_events"
        )
    if "allowed_server_events" in channel:
        _check_allowed_server_events(
            channel["allowed_server_events"], f"{where}.allowed_server_events"
        )


def _check_allowed_client_events(value: Any, path: str) -> None:
    if value == "all":
        return
    if not isinstance(value, list):
        raise invalid_type(path, value, "'all' or an array of client event types")
    # A name that is no client event is refused (a typo would otherwise silently allow
    # nothing): the emulator's choice, OpenAI's answer is unverified.
    for index, name in enumerate(value):
        _enum(name, f"{path}[{index}]", CLIENT_EVENTS)


def _check_allowed_server_events(value: Any, path: str) -> None:
    if value == "all":
        return
    if not isinstance(value, list):
        raise invalid_type(path, value, "'all' or an array of server event selectors")
    for index, selector in enumerate(value):
        where = f"{path}[{index}]"
        _object(selector, where, frozenset({"type", "response_event"}))
        if "type" not in selector:
            raise missing_parameter(f"{where}.type")
        kind = _enum(selector["type"], f"{where}.type", SERVER_EVENTS)
        # The nested Responses event is named for `response.event`, and only for it.
        if kind == "response.event":
            if "response_event" not in selector:
                raise missing_parameter(f"{where}.response_event")
            _string(selector["response_event"], f"{where}.response_event")
        elif "response_event" in selector:
            raise unknown_parameter(f"{where}.response_event")


def _check_wake_policy(value: Any, path: str) -> None:
    _object(value, path, frozenset({"type", "vad_threshold"}))
    if "type" not in value:
        raise missing_parameter(f"{path}.type")
    _enum(value["type"], f"{path}.type", ("speech",))
    if "vad_threshold" in value:
        _number(value["vad_threshold"], f"{path}.vad_threshold", 0.0, 1.0)


def _check_idle_timeout(value: Any, path: str) -> None:
    if _integer(value, path) < 1:
        raise invalid_value(path, value, "Expected a whole number of seconds, at least 1.")


def _non_negative(value: Any, path: str) -> None:
    if _integer(value, path) < 0:
        raise invalid_value(path, value, "Expected a non-negative integer.")


Check = Callable[[Any, str], object]
_CONFIG_CHECKS: dict[str, Check] = {
    "model": _check_model,
    "instructions": _check_instructions,
    "input": _check_input,
    "audio": _check_audio,
    "delegation": _check_delegation,
    "client": _check_client,
    "triggers": _check_triggers,
    "store": _boolean,
    "safety_identifier": _check_optional_string,
    "wake_policy": _check_wake_policy,
    "idle_timeout_s": _check_idle_timeout,
}
_RESPONSES_CHECKS: dict[str, Check] = {
    "model": _string,
    "instructions": _check_optional_string,
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "parallel_tool_calls": _check_optional_boolean,
    "max_output_tokens": _check_backend_tokens,
    "reasoning": _check_reasoning,
    "text": _check_text,
    "service_tier": _check_service_tier,
}


# --- the resolved session --------------------------------------------------------------------


def resolve_session(request: Mapping[str, Any], session_id: str, expires_at: int) -> dict[str, Any]:
    """The session as `session.started` shows it: the request over the server's defaults,
    with the id, the end of its life (`expires_at`) and a status that is always `active`."""
    request = copy.deepcopy(dict(request))
    instructions = request.get("instructions")
    voice = (request.get("audio") or {}).get("output", {}).get("voice", DEFAULT_VOICE)
    channel = (request.get("client") or {}).get("data_channel") or {}
    session: dict[str, Any] = {
        "id": session_id,
        "status": "active",
        "expires_at": expires_at,
        "model": request["model"],
        # Omitted or blank instructions get the server's own.
        "instructions": instructions
        if instructions and instructions.strip()
        else DEFAULT_INSTRUCTIONS,
        "input": request.get("input", []),
        "audio": {"output": {"voice": voice}},
        "delegation": _resolve_delegation(request.get("delegation")),
        "client": {
            "data_channel": {
                "allowed_client_events": channel.get("allowed_client_events", "all"),
                "allowed_server_events": channel.get("allowed_server_events", "all"),
            }
        },
        "triggers": request.get("triggers", []),
        "store": request.get("store", False),
        "safety_identifier": request.get("safety_identifier"),
    }
    if "wake_policy" in request:
        session["wake_policy"] = {"vad_threshold": 0.5} | request["wake_policy"]
        session["idle_timeout_s"] = request["idle_timeout_s"]
    return session


def _resolve_delegation(value: Mapping[str, Any] | None) -> dict[str, Any]:
    delegation = dict(value or {"type": "client"})
    kind = delegation["type"]
    return {"type": kind, "acknowledgement_delay_ms": ACK_DELAY_MS[kind]} | delegation


# --- session.update ------------------------------------------------------------------------


def apply_update(current: Mapping[str, Any], update: Any) -> dict[str, Any]:
    """The session after a `session.update`: only the backend's settings (a Responses
    backend's model, prompt and tools, or a Decisions backend's questions), the delegation's
    acknowledgement delay and the triggers change; the rest was fixed at start."""
    path = "session"
    if not isinstance(update, dict):
        raise invalid_type(path, update, "an object")
    for key in update:
        if key not in CONFIG_FIELDS:
            raise unknown_parameter(f"{path}.{key}")
        if key not in UPDATABLE:
            raise immutable(f"{path}.{key}")
    session = copy.deepcopy(dict(current))
    if "triggers" in update:
        _check_triggers(update["triggers"], f"{path}.triggers")
        session["triggers"] = copy.deepcopy(update["triggers"])
    if "delegation" in update:
        session["delegation"] = _update_delegation(session["delegation"], update["delegation"])
    return session


def _update_delegation(current: dict[str, Any], update: Any) -> dict[str, Any]:
    path = "session.delegation"
    if not isinstance(update, dict) or update.get("type") != current["type"]:
        # null, or another owner: the delegation's type is fixed at start.
        raise immutable(f"{path}.type")
    kind = current["type"]
    fields = {"type", "acknowledgement_delay_ms"} | ({kind} if kind != "client" else set())
    _object(update, path, frozenset(fields))
    delegation = copy.deepcopy(current)
    if "acknowledgement_delay_ms" in update:
        delay = update["acknowledgement_delay_ms"]
        _non_negative(delay, f"{path}.acknowledgement_delay_ms")
        delegation["acknowledgement_delay_ms"] = delay
    if kind in update:
        settings = update[kind]
        if kind == "responses":
            _check_responses(settings, f"{path}.responses", update=True)
        else:
            _check_decisions(settings, f"{path}.decisions", update=True)
        delegation[kind] = delegation[kind] | copy.deepcopy(settings)  # sparse: the rest stays
    return delegation


def immutable(param: str) -> ApiError:
    return ApiError(
        400,
        f"'{param}' was fixed when the session started and cannot be updated.",
        code="immutable_field_update",
        param=param,
    )


# --- client events -------------------------------------------------------------------------

# The keys each client event may carry besides `type` and `event_id`, and those it must.
EVENT_FIELDS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "session.start": (frozenset({"session"}), ("session",)),
    "session.update": (frozenset({"session"}), ("session",)),
    "session.input_audio.append": (frozenset({"audio"}), ("audio",)),
    "session.input_audio.mute": (frozenset(), ()),
    "session.input_audio.unmute": (frozenset(), ()),
    "session.output_audio.fixture.play": (frozenset({"audio"}), ("audio",)),
    "session.instructions.append": (
        frozenset({"content", "delegation_id"}),
        ("content", "delegation_id"),
    ),
    "session.thinking.append": (
        frozenset({"content", "delegation_id"}),
        ("content", "delegation_id"),
    ),
    "session.commentary.append": (
        frozenset({"content", "delegation_id"}),
        ("content", "delegation_id"),
    ),
    "decision.create": (frozenset(), ()),
    "decision.item.create": (frozenset({"item"}), ("item",)),
    "decision.item.delete": (frozenset({"item_id"}), ("item_id",)),
    "response.item.create": (frozenset({"item"}), ("item",)),
    "response.create": (frozenset(), ()),
    "session.close": (frozenset(), ()),
    "transport.dtmf.send": (frozenset({"event"}), ("event",)),
}


def check_type(event: Mapping[str, Any]) -> str:
    """The client event's type, one of the Live API's."""
    if "type" not in event:
        raise missing_parameter("type")
    return _enum(event["type"], "type", CLIENT_EVENTS)


def check_fields(kind: str, event: Mapping[str, Any]) -> str | None:
    """The event's `event_id`, once the keys its type allows and needs are right."""
    event_id = event.get("event_id")
    if event_id is not None:
        _string(event_id, "event_id")
    allowed, required = EVENT_FIELDS[kind]
    _object(dict(event), "", allowed | {"type", "event_id"})
    for name in required:
        if name not in event:
            raise missing_parameter(name)
    return event_id


def check_append(event: Mapping[str, Any]) -> str:
    """The content of an instructions, thinking or commentary append."""
    content = _string(event["content"], "content")
    if not content.strip():
        raise invalid_value("content", content, "Expected some text.")
    if text_tokens(content) > APPEND_TOKENS:
        raise invalid_value("content", "...", f"Expected at most {APPEND_TOKENS} tokens.")
    delegation_id = event["delegation_id"]
    if delegation_id is not None:
        _string(delegation_id, "delegation_id")
    return content
