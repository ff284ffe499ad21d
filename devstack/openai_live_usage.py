"""What a Live session costs, as the Live emulator reports it: the session's seconds (active
and paused) in `session.usage.updated` and `session.closed`, and the token usage of each
delegated Responses backend response; plus the backend usages a test may script through
`POST /__emulator/live/sessions/{session_id}/script`.

OpenAI bills Live voice per second, from the create: each WebRTC create bills 15 s up front,
which count toward the session rather than on top of it, so a session's `active_seconds` never
falls below 15. Standby time (`wake_policy` + `idle_timeout_s`, the caller idle) bills at the
standby rate as `paused_seconds`. Every report is cumulative: `seconds` = `active_seconds` +
`paused_seconds`, each a whole number that never goes down."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from devstack.openai_schema import ApiError
from devstack.openai_usage import _bad, _list, _shape
from devstack.wire import is_int

PREPAID_S = 15
RESPONSE_STATUSES = ("completed", "incomplete", "failed")

Clock = Callable[[], float]


class Meter:
    """A session's billable time on the emulator's clock, which tests may move forward.

    Standby inside the first 15 s saves nothing here: those seconds were billed as active up
    front. (Whether OpenAI's standby changes the up-front charge is unverified.)"""

    def __init__(self, started: float) -> None:
        self.started = started
        self._paused: list[tuple[float, float]] = []  # closed standby intervals
        self._paused_since: float | None = None
        self._last = (PREPAID_S, 0)

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def pause(self, now: float) -> None:
        if self._paused_since is None:
            self._paused_since = now

    def resume(self, now: float) -> None:
        if self._paused_since is not None:
            self._paused.append((self._paused_since, now))
            self._paused_since = None

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.started)

    def usage(self, now: float) -> dict[str, int]:
        """The cumulative usage at `now`: the first 15 s active whatever happened in them, then
        each second as active or paused, counted in whole seconds."""
        prepaid_end = self.started + PREPAID_S
        intervals = [*self._paused]
        if self._paused_since is not None:
            intervals.append((self._paused_since, now))
        paused = sum(max(0.0, min(end, now) - max(start, prepaid_end)) for start, end in intervals)
        after = max(0.0, now - prepaid_end)
        active = PREPAID_S + math.floor(max(0.0, after - paused) + 1e-9)
        whole_paused = math.floor(paused + 1e-9)
        # Each total only ever grows: a report is a running total, never a correction.
        active, whole_paused = max(active, self._last[0]), max(whole_paused, self._last[1])
        self._last = (active, whole_paused)
        return {
            "seconds": active + whole_paused,
            "active_seconds": active,
            "paused_seconds": whole_paused,
        }


# --- the Responses backend's usages ----------------------------------------------------------


def backend_usage(
    input_tokens: int, output_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> dict[str, Any]:
    """A Responses API `usage` (what a delegated backend response reports in its terminal
    event); cache writes are not modelled."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


BACKEND_USAGE = {
    "input_tokens": "count",
    "output_tokens": "count",
    "total_tokens": "count",
    "input_tokens_details": {"cached_tokens": "count", "cache_write_tokens": "count"},
    "output_tokens_details": {"reasoning_tokens": "count"},
}


def check_live_script(body: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """`{"caller_says": "...", "responses": [{"usage": {...}, "status": "completed"}, ...]}`:
    what the caller says next, and the usages the session's next backend responses report,
    each with its terminal status (`completed` by default). A usage gives input_tokens and
    output_tokens, and may give input_tokens_details.cached_tokens and
    output_tokens_details.reasoning_tokens (0 otherwise); total_tokens is their sum."""
    if not isinstance(body, dict):
        raise _bad("body", "Expected a JSON object.")
    for key in body:
        if key not in ("caller_says", "responses"):
            raise ApiError(400, f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key)
    says = body.get("caller_says", [])
    says = [says] if isinstance(says, str) else _list(says, "caller_says")
    for index, text in enumerate(says):
        if not isinstance(text, str) or not text.strip():
            raise _bad(f"caller_says[{index}]", "Expected some words.")
    responses = []
    for index, entry in enumerate(_list(body.get("responses", []), "responses")):
        path = f"responses[{index}]"
        _shape(entry, {"usage": {}, "status": "text"}, path, required=("usage",))
        status = entry.get("status", "completed")
        if status not in RESPONSE_STATUSES:
            raise _bad(f"{path}.status", f"Expected one of {', '.join(RESPONSE_STATUSES)}.")
        given = entry["usage"]
        _shape(given, BACKEND_USAGE, f"{path}.usage", required=("input_tokens", "output_tokens"))
        usage = backend_usage(
            given["input_tokens"],
            given["output_tokens"],
            given.get("input_tokens_details", {}).get("cached_tokens", 0),
            given.get("output_tokens_details", {}).get("reasoning_tokens", 0),
        )
        if given["input_tokens"] < usage["input_tokens_details"]["cached_tokens"]:
            raise _bad(f"{path}.usage.input_tokens_details.cached_tokens", "More than the input.")
        if "total_tokens" in given and given["total_tokens"] != usage["total_tokens"]:
            raise _bad(f"{path}.usage.total_tokens", "Expected input_tokens + output_tokens.")
        if is_int(w := given.get("input_tokens_details", {}).get("cache_write_tokens")):
            usage["input_tokens_details"]["cache_write_tokens"] = w
        responses.append({"status": status, "usage": usage})
    return says, responses
