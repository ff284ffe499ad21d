"""The session a profile fixes, and how a live session deviates from it
(docs/openai-contract.md §6).

OpenAI cannot lock a session: the browser may `session.update` any field but the model and
the voice. The watcher compares every `session.updated` with what the profile fixes and puts
it back (or hangs up). Pure: sessions in, paths out; no text of a session is ever returned.
"""

from __future__ import annotations

import copy
from typing import Any

PCM = {"type": "audio/pcm", "rate": 24000}
# What OpenAI fills in a turn detection the profile gives in part, by its type.
TURN_DETECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "server_vad": {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    },
}
# Every field of the session a browser can change (the `openai` package's typed session,
# tests/unit/test_guard_defaults.py), at what OpenAI reports when nobody set it. A field the
# profile names is held at the profile's value; any other at this default, so a browser can
# neither add what the profile left out (tools, a prompt, traces into the operator's OpenAI
# dashboard, logprobs) nor change what it costs (turn detection, transcription, output).
OPENAI_DEFAULTS: dict[str, Any] = {
    "instructions": "",
    "output_modalities": ["audio"],
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "prompt": None,
    "tracing": None,
    "include": None,
    "truncation": "auto",
    "audio": {
        "input": {
            "format": PCM,
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": TURN_DETECTION_DEFAULTS["server_vad"],
        },
        "output": {"format": PCM, "speed": 1.0},
    },
}
# Fields OpenAI documents no default for: held, unless the profile names them, at what OpenAI
# first reports for the call (its answer to the watcher's first restore, sent before the
# browser had the call's answer).
FIRST_REPORTED = ("reasoning", "parallel_tool_calls")
# What no browser can change: OpenAI fixes them when the call is created.
IMMUTABLE = ("type", "model", "audio.output.voice")
# A tool is compared whole: a description or a parameter the browser adds is a deviation.
# These are the only keys OpenAI may add to a tool the profile gave without them, with the
# value it adds: the optional fields of the `openai` package's typed session tools
# (RealtimeFunctionTool, Mcp), all null by default. tests/unit/test_guard.py holds this list
# to those models.
TOOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "function": dict.fromkeys(("description", "name", "parameters")),
    "mcp": dict.fromkeys(
        (
            "allowed_callers",
            "allowed_tools",
            "authorization",
            "connector_id",
            "defer_loading",
            "headers",
            "require_approval",
            "server_description",
            "server_url",
            "tunnel_id",
        )
    ),
}


def expected_session(session: dict[str, Any]) -> dict[str, Any]:
    """The partial session to hold, from the session the call was created with: the profile's
    fields over OpenAI's defaults, without what no browser can change."""
    expected: dict[str, Any] = {"type": "realtime"} | copy.deepcopy(OPENAI_DEFAULTS)
    for name, value in session.items():
        if name == "audio" and isinstance(value, dict):
            for direction, fields in value.items():
                if isinstance(fields, dict):
                    expected["audio"].setdefault(direction, {}).update(copy.deepcopy(fields))
        elif name not in IMMUTABLE:
            expected[name] = copy.deepcopy(value)
    expected["audio"].get("output", {}).pop("voice", None)
    turn = expected["audio"]["input"].get("turn_detection")
    if isinstance(turn, dict) and turn.get("type") in TURN_DETECTION_DEFAULTS:
        expected["audio"]["input"]["turn_detection"] = TURN_DETECTION_DEFAULTS[turn["type"]] | turn
    return expected


def hold_first_reported(expected: dict[str, Any], reported: Any) -> dict[str, Any]:
    """`expected`, holding too the FIRST_REPORTED fields the profile left to OpenAI, as the
    session OpenAI `reported` has them."""
    held = copy.deepcopy(expected)
    if isinstance(reported, dict):
        for name in FIRST_REPORTED:
            if name not in held and name in reported:
                held[name] = copy.deepcopy(reported[name])
    return held


def deviations(expected: dict[str, Any], actual: Any) -> list[str]:
    """Dotted paths of the fixed fields `actual` no longer holds. OpenAI fills in defaults of
    its own and may leave out what is unset, so an object in `expected` matches when every
    key it names matches, and a key absent from `actual` matches when the expected value is
    empty (null, "", [], {}). A list (the tools) must hold exactly what the profile set, in
    order; a tool may differ only by the keys of TOOL_DEFAULTS, at their defaults."""
    found: list[str] = []
    _compare(expected, actual if isinstance(actual, dict) else {}, "", found)
    return [path for path in found if path != "type"]


def restore_event(expected: dict[str, Any]) -> dict[str, Any]:
    return {"type": "session.update", "session": copy.deepcopy(expected)}


def _compare(expected: Any, actual: Any, path: str, found: list[str]) -> None:
    if isinstance(expected, dict) and expected:
        if not isinstance(actual, dict):
            found.append(path)
            return
        for key, value in expected.items():
            child = f"{path}.{key}" if path else key
            if key not in actual:
                if not _empty(value):
                    found.append(child)
                continue
            _compare(value, actual[key], child, found)
        return
    if isinstance(expected, list) and isinstance(actual, list) and expected:
        if len(expected) != len(actual) or not all(
            _equal(_tool_filled(want), _tool_filled(got))
            for want, got in zip(expected, actual, strict=True)
        ):
            found.append(path)
        return
    if not _same(expected, actual):
        found.append(path)


def _tool_filled(tool: Any) -> Any:
    """A tool with the defaults OpenAI adds filled in (anything else is left as it is)."""
    if not isinstance(tool, dict):
        return tool
    return TOOL_DEFAULTS.get(str(tool.get("type")), {}) | tool


def _equal(expected: Any, actual: Any) -> bool:
    """Exactly equal, all the way down (a bool is still not a number)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            _equal(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            _equal(want, got) for want, got in zip(expected, actual, strict=True)
        )
    return _same(expected, actual)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)
    return bool(expected == actual)
