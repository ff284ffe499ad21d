"""The GA request shapes of OpenAI's Realtime API (the contract OpenAI documents):
how the emulator rejects a request the way OpenAI does, and completes a session with defaults."""

from __future__ import annotations

import copy
import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from devstack.wire import is_int, is_number

DEFAULT_MODEL = "gpt-realtime-2.1"  # the SDK default
MODELS = (
    "gpt-realtime-2.1",
    "gpt-realtime-2.1-mini",
    "gpt-realtime-2",
    "gpt-realtime-1.5",
    "gpt-realtime",
    "gpt-realtime-mini",
)
SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
DEFAULT_VOICE = "alloy"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful, witty, and friendly AI. This is the local Realtime emulator: "
    "it answers with a scripted reply."
)
DEFAULT_TTL = 600
TTL_RANGE = (10, 7200)

PCM = {"type": "audio/pcm", "rate": 24000}
SERVER_VAD = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
TRANSCRIPTION_VAD = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
}

REALTIME_FIELDS = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "max_output_tokens",
        "truncation",
        "tracing",
        "prompt",
        "include",
    }
)
TRANSCRIPTION_FIELDS = frozenset({"type", "audio", "include"})
# Fields of the retired beta shape: OpenAI answers them like any other unknown field, the
# emulator only names them so that the message helps whoever sent one.
BETA_FIELDS = frozenset(
    {
        "modalities",
        "temperature",
        "input_audio_format",
        "output_audio_format",
        "voice",
        "turn_detection",
        "input_audio_transcription",
        "input_audio_noise_reduction",
        "speed",
        "max_response_output_tokens",
        "client_secret",
    }
)
AUDIO_INPUT_FIELDS = frozenset({"format", "transcription", "noise_reduction", "turn_detection"})
AUDIO_OUTPUT_FIELDS = frozenset({"format", "voice", "speed"})
TRANSCRIPTION_CONFIG_FIELDS = frozenset(
    {"model", "language", "languages", "prompt", "keywords", "delay"}
)
SERVER_VAD_FIELDS = frozenset(SERVER_VAD)
SEMANTIC_VAD_FIELDS = frozenset(SEMANTIC_VAD)
INCLUDE_VALUES = ("item.input_audio_transcription.logprobs",)

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 21) -> str:
    """An id in OpenAI's style: `sess_C9CiUVUzUzYIssh3ELY1d`."""
    return prefix + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class ApiError(Exception):
    """An OpenAI error: the HTTP status plus the one envelope every endpoint uses."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def error(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def envelope(self) -> dict[str, Any]:
        return {"error": self.error()}


def refuse_beta_shape(headers: Mapping[str, str]) -> None:
    """The beta shape (`OpenAI-Beta: realtime=v1`) is gone: GA clients send no such header."""
    if "realtime=v1" in headers.get("OpenAI-Beta", "").replace(" ", ""):
        raise ApiError(
            400,
            "The beta Realtime API shape (OpenAI-Beta: realtime=v1) is disabled; "
            "use the GA shape without that header.",
            code="beta_api_shape_disabled",
            param="OpenAI-Beta",
        )


def unknown_parameter(param: str) -> ApiError:
    hint = ""
    if param.startswith("session.") and param.removeprefix("session.") in BETA_FIELDS:
        hint = " (a field of the retired beta shape; see the GA session object)"
    return ApiError(
        400, f"Unknown parameter: '{param}'.{hint}", code="unknown_parameter", param=param
    )


def invalid_value(param: str, value: Any, supported: Iterable[Any] | str | None = None) -> ApiError:
    message = f"Invalid value: {_show(value)}."
    if isinstance(supported, str):
        message += f" {supported}"
    elif supported is not None:
        message += " Supported values are: " + ", ".join(_show(v) for v in supported) + "."
    return ApiError(400, message, code="invalid_value", param=param)


def invalid_type(param: str, value: Any, expected: str) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        code="invalid_type",
        param=param,
    )


def missing_parameter(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        code="missing_required_parameter",
        param=param,
    )


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return names.get(type(value), type(value).__name__)


# --- primitive checks ------------------------------------------------------------------------


def _object(value: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_type(path, value, "an object")
    for key in value:
        if key not in allowed:
            raise unknown_parameter(f"{path}.{key}" if path else key)
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise invalid_type(path, value, "a string")
    return value


def _integer(value: Any, path: str) -> int:
    if not is_int(value):
        raise invalid_type(path, value, "an integer")
    return value


def _number(value: Any, path: str, low: float, high: float) -> float:
    if not is_number(value):
        raise invalid_type(path, value, "a number")
    if not low <= value <= high:
        raise invalid_value(path, value, f"Expected a value between {low} and {high}.")
    return float(value)


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(path, value, "a boolean")
    return value


def _enum(value: Any, path: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise invalid_value(path, value, allowed)
    return str(value)


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_type(path, value, "an array")
    return value


# --- POST /v1/realtime/client_secrets ------------------------------------------------------


def check_client_secret_request(body: Any) -> tuple[int, dict[str, Any] | None]:
    """The secret's lifetime in seconds and the session request, or an ApiError."""
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise invalid_type("body", body, "an object")
    _object(body, "", frozenset({"expires_after", "session"}))
    seconds = _check_expires_after(body.get("expires_after"))
    session = body.get("session")
    if session is not None:
        check_session(session, "session")
    return seconds, session


def _check_expires_after(value: Any) -> int:
    if value is None:
        return DEFAULT_TTL
    _object(value, "expires_after", frozenset({"anchor", "seconds"}))
    if "anchor" in value:
        _enum(value["anchor"], "expires_after.anchor", ("created_at",))
    if "seconds" not in value:
        return DEFAULT_TTL
    seconds = value["seconds"]
    low, high = TTL_RANGE
    if not is_int(seconds) or not low <= seconds <= high:
        raise invalid_value(
            "expires_after.seconds", seconds, f"Expected an integer between {low} and {high}."
        )
    return seconds


def known_model(model: str) -> bool:
    if model in MODELS:
        return True
    match = SNAPSHOT.match(model)
    return bool(match and match.group("base") in MODELS)


def check_session(session: Any, path: str = "session") -> dict[str, Any]:
    """Rejects what OpenAI rejects in a GA session object (create or update)."""
    if not isinstance(session, dict):
        raise invalid_type(path, session, "an object")
    if "type" not in session:
        raise missing_parameter(f"{path}.type")
    kind = _enum(session["type"], f"{path}.type", ("realtime", "transcription"))
    if kind == "transcription":
        _object(session, path, TRANSCRIPTION_FIELDS)
        for key, value in session.items():
            _TRANSCRIPTION_CHECKS.get(key, _anything)(value, f"{path}.{key}")
        return session
    _object(session, path, REALTIME_FIELDS)
    for key, value in session.items():
        _REALTIME_CHECKS.get(key, _anything)(value, f"{path}.{key}")
    return session


def _anything(value: Any, path: str) -> None:
    return None


def _check_model(value: Any, path: str) -> None:
    if not known_model(_string(value, path)):
        raise invalid_value(path, value, MODELS)


def _check_output_modalities(value: Any, path: str) -> None:
    if _list(value, path) not in (["audio"], ["text"]):
        raise invalid_value(
            path, value, "Supported values are: ['audio'] or ['text'] (not both at once)."
        )


def _check_max_output_tokens(value: Any, path: str) -> None:
    if value == "inf":
        return
    if _integer(value, path) < 1 or value > 4096:
        raise invalid_value(path, value, "Expected an integer between 1 and 4096, or 'inf'.")


def _check_tools(value: Any, path: str) -> None:
    for index, tool in enumerate(_list(value, path)):
        if not isinstance(tool, dict):
            raise invalid_type(f"{path}[{index}]", tool, "an object")
        _enum(tool.get("type"), f"{path}[{index}].type", ("function", "mcp"))


def _check_tool_choice(value: Any, path: str) -> None:
    if isinstance(value, dict):
        return
    _enum(value, path, ("auto", "none", "required"))


def _check_truncation(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        _enum(value, path, ("auto", "disabled"))


def _check_tracing(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, dict):
        _enum(value, path, ("auto",))


def _check_optional_object(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise invalid_type(path, value, "an object")


def _check_include(value: Any, path: str) -> None:
    if value is None:
        return
    for index, item in enumerate(_list(value, path)):
        _enum(item, f"{path}[{index}]", INCLUDE_VALUES)


def _check_audio(value: Any, path: str) -> None:
    _object(value, path, frozenset({"input", "output"}))
    if "input" in value:
        _check_audio_input(value["input"], f"{path}.input", realtime=True)
    if "output" in value:
        _check_audio_output(value["output"], f"{path}.output")


def _check_transcription_audio(value: Any, path: str) -> None:
    _object(value, path, frozenset({"input"}))
    if "input" in value:
        _check_audio_input(value["input"], f"{path}.input", realtime=False)


def _check_audio_input(value: Any, path: str, *, realtime: bool) -> None:
    _object(value, path, AUDIO_INPUT_FIELDS)
    if "format" in value:
        _check_format(value["format"], f"{path}.format")
    if value.get("transcription") is not None:
        _object(value["transcription"], f"{path}.transcription", TRANSCRIPTION_CONFIG_FIELDS)
    if value.get("noise_reduction") is not None:
        reduction = _object(
            value["noise_reduction"], f"{path}.noise_reduction", frozenset({"type", "strength"})
        )
        if "type" in reduction:
            _enum(reduction["type"], f"{path}.noise_reduction.type", ("near_field", "far_field"))
    if value.get("turn_detection") is not None:
        _check_turn_detection(value["turn_detection"], f"{path}.turn_detection", realtime)


def _check_format(value: Any, path: str) -> None:
    _object(value, path, frozenset({"type", "rate"}))
    kind = _enum(value.get("type"), f"{path}.type", ("audio/pcm", "audio/pcmu", "audio/pcma"))
    if "rate" in value and (kind != "audio/pcm" or value["rate"] != 24000):
        raise invalid_value(f"{path}.rate", value["rate"], [24000])


def _check_turn_detection(value: Any, path: str, realtime: bool) -> None:
    if not isinstance(value, dict):
        raise invalid_type(path, value, "an object or null")
    kinds = ("server_vad", "semantic_vad") if realtime else ("server_vad",)
    kind = _enum(value.get("type"), f"{path}.type", kinds)
    if not realtime:
        _object(value, path, frozenset(TRANSCRIPTION_VAD))
    elif kind == "server_vad":
        _object(value, path, SERVER_VAD_FIELDS)
    else:
        _object(value, path, SEMANTIC_VAD_FIELDS)
        if "eagerness" in value:
            _enum(value["eagerness"], f"{path}.eagerness", ("low", "medium", "high", "auto"))
    if "threshold" in value:
        _number(value["threshold"], f"{path}.threshold", 0.0, 1.0)
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if key in value:
            _integer(value[key], f"{path}.{key}")
    for key in ("create_response", "interrupt_response"):
        if key in value:
            _boolean(value[key], f"{path}.{key}")


def _check_audio_output(value: Any, path: str) -> None:
    _object(value, path, AUDIO_OUTPUT_FIELDS)
    if "format" in value:
        _check_format(value["format"], f"{path}.format")
    if "voice" in value:
        _check_voice(value["voice"], f"{path}.voice")
    if "speed" in value:
        _number(value["speed"], f"{path}.speed", 0.25, 1.5)


def _check_voice(value: Any, path: str) -> None:
    if isinstance(value, dict):
        _object(value, path, frozenset({"id"}))
        if not str(value.get("id", "")).startswith("voice_"):
            raise invalid_value(
                f"{path}.id", value.get("id"), "Expected a custom voice id 'voice_...'."
            )
        return
    _enum(value, path, VOICES)


Check = Callable[[Any, str], object]
_REALTIME_CHECKS: dict[str, Check] = {
    "model": _check_model,
    "instructions": _string,
    "output_modalities": _check_output_modalities,
    "audio": _check_audio,
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "parallel_tool_calls": _boolean,
    "reasoning": _check_optional_object,
    "max_output_tokens": _check_max_output_tokens,
    "truncation": _check_truncation,
    "tracing": _check_tracing,
    "prompt": _check_optional_object,
    "include": _check_include,
}
_TRANSCRIPTION_CHECKS: dict[str, Check] = {
    "audio": _check_transcription_audio,
    "include": _check_include,
}


# --- the effective session ---------------------------------------------------------------


def default_session(kind: str) -> dict[str, Any]:
    if kind == "transcription":
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": new_id("sess"),
            "expires_at": 0,
            "include": None,
            "audio": {
                "input": {
                    "format": dict(PCM),
                    "transcription": {"model": "gpt-4o-mini-transcribe", "language": None},
                    "noise_reduction": None,
                    "turn_detection": dict(TRANSCRIPTION_VAD),
                }
            },
        }
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": DEFAULT_MODEL,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
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
                "format": dict(PCM),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD),
            },
            "output": {"format": dict(PCM), "voice": DEFAULT_VOICE, "speed": 1.0},
        },
    }


def build_session(request: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full session object OpenAI answers with: the request over the defaults."""
    kind = (request or {}).get("type", "realtime")
    return apply_session(default_session(kind), request or {})


def apply_session(current: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """A checked session request laid over an existing session (create or session.update)."""
    session = copy.deepcopy(dict(current))
    for key, value in request.items():
        if key == "audio":
            session["audio"] = _apply_audio(session.get("audio") or {}, value, session["type"])
        else:
            session[key] = copy.deepcopy(value)
    return session


def _apply_audio(current: dict[str, Any], request: Mapping[str, Any], kind: str) -> dict[str, Any]:
    for direction, fields in request.items():
        target = current.setdefault(direction, {})
        for key, value in fields.items():
            target[key] = _complete(key, value, kind)
    return current


def _complete(key: str, value: Any, kind: str) -> Any:
    """Fills what OpenAI fills in a sub-object the request gave only in part."""
    if key == "voice" and isinstance(value, dict):
        # The SDK's response models type the voice as a string only: a custom voice comes
        # back as its id.
        return value["id"]
    if key == "format" and isinstance(value, dict):
        return dict(PCM) | value if value.get("type") == "audio/pcm" else dict(value)
    if key == "turn_detection" and isinstance(value, dict):
        if kind == "transcription":
            defaults = TRANSCRIPTION_VAD
        elif value.get("type") == "semantic_vad":
            defaults = SEMANTIC_VAD
        else:
            defaults = SERVER_VAD
        return dict(defaults) | value
    return copy.deepcopy(value)
