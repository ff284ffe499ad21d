"""The session a profile fixes, and how a live session deviates from it (openai-realtime.md 3d).

OpenAI cannot lock a session: the browser may `session.update` any field but the model and
the voice. The watcher compares every `session.updated` with what the profile fixes and puts
it back (or hangs up). Pure: sessions in, paths out; no text of a session is ever returned.
"""

from __future__ import annotations

import copy
from typing import Any

# Fixed whatever the profile says: what the model is told and may do, and what it may cost.
# A field the profile leaves out is held at OpenAI's default, so the browser cannot add it.
ALWAYS_FIXED: dict[str, Any] = {
    "instructions": "",
    "tools": [],
    "tool_choice": "auto",
    "output_modalities": ["audio"],
    "max_output_tokens": "inf",
    "prompt": None,
}
# Fixed when the profile sets them (turn detection and transcription change what a call costs).
FIXED_IF_SET = (
    ("truncation",),
    ("reasoning",),
    ("audio", "input", "turn_detection"),
    ("audio", "input", "transcription"),
    ("audio", "input", "noise_reduction"),
    ("audio", "output", "speed"),
)
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
    """The partial session to hold, from the session the call was created with."""
    expected: dict[str, Any] = {"type": "realtime"}
    for name, default in ALWAYS_FIXED.items():
        expected[name] = copy.deepcopy(session.get(name, default))
    for path in FIXED_IF_SET:
        found, value = _get(session, path)
        if found:
            _set(expected, path, copy.deepcopy(value))
    return expected


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


def _get(session: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = session
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _set(session: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = session
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
