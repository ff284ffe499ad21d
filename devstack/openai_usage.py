"""What the Realtime emulator reports a call costs (docs/openai-contract.md §8): the `usage` of each
`response.done` and of each input transcription, the `rate_limits.updated` of each response,
and the usages a test may script through `/__emulator/calls/{call_id}/script`.

Token counts are shaped like OpenAI's, not measured by a real tokenizer: about 4 tokens per 3
words of text, 8 audio tokens per spoken word of a reply (20 a second at 2.5 words a second),
10 audio tokens per second of the caller's audio."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

from devstack.openai_schema import ApiError
from devstack.wire import is_int, is_number

AUDIO_TOKENS_PER_WORD = 8
AUDIO_TOKENS_PER_SECOND = 10
# Transcription models OpenAI bills by the minute (prices.json): their usage is a duration.
DURATION_BILLED = frozenset({"whisper-1", "gpt-realtime-whisper"})
DEFAULT_TRANSCRIPT = "Hello from the caller's microphone."
# A modest tier's limits: what each rate_limits.updated counts down from.
REQUESTS_PER_MINUTE = 5_000
TOKENS_PER_MINUTE = 800_000
WINDOW_S = 60.0


def text_tokens(text: str) -> int:
    return (len(text.split()) * 4 + 2) // 3


def response_usage(
    prompt: str, heard_seconds: float, reply: str, text_only: bool, cached: tuple[int, int]
) -> dict[str, Any]:
    """A `response.done` usage: the whole conversation as input, its text read and the
    caller's turns heard (`cached`: the text and audio tokens of the previous response's input,
    a prefix found in the cache), the reply as output."""
    input_text = text_tokens(prompt)
    input_audio = math.ceil(heard_seconds * AUDIO_TOKENS_PER_SECOND)
    cached_text, cached_audio = min(cached[0], input_text), min(cached[1], input_audio)
    output_text = text_tokens(reply)
    output_audio = 0 if text_only else len(reply.split()) * AUDIO_TOKENS_PER_WORD
    output_tokens = output_text + output_audio
    return {
        "total_tokens": input_text + input_audio + output_tokens,
        "input_tokens": input_text + input_audio,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text,
            "audio_tokens": input_audio,
            "image_tokens": 0,
            "cached_tokens": cached_text + cached_audio,
            "cached_tokens_details": {
                "text_tokens": cached_text,
                "audio_tokens": cached_audio,
                "image_tokens": 0,
            },
        },
        "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
    }


def transcription_usage(model: str, seconds: float, transcript: str, prompt: str) -> dict[str, Any]:
    """The usage of one `conversation.item.input_audio_transcription.completed`: a duration
    for the models billed by the minute, tokens (the audio in, the prompt in, the transcript
    out) for the others."""
    if model in DURATION_BILLED:
        return {"type": "duration", "seconds": max(round(seconds, 1), 0.1)}
    audio = max(math.ceil(seconds * AUDIO_TOKENS_PER_SECOND), 1)
    prompt_tokens = text_tokens(prompt)
    output = text_tokens(transcript)
    return {
        "type": "tokens",
        "total_tokens": audio + prompt_tokens + output,
        "input_tokens": audio + prompt_tokens,
        "input_token_details": {"text_tokens": prompt_tokens, "audio_tokens": audio},
        "output_tokens": output,
    }


class RateLimits:
    """A call's view of the organisation's per-minute limits, as `rate_limits.updated` shows
    it at the start of each response: this response reserves its most output tokens."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._used: deque[tuple[float, int]] = deque()  # (when, tokens) within the window

    def record(self, tokens: int) -> None:
        self._used.append((self._clock(), tokens))

    def event(self, reserved: int) -> dict[str, Any]:
        now = self._clock()
        while self._used and self._used[0][0] <= now - WINDOW_S:
            self._used.popleft()
        reset = round(self._used[0][0] + WINDOW_S - now, 3) if self._used else 0.0
        tokens = sum(t for _, t in self._used) + reserved
        return {
            "type": "rate_limits.updated",
            "rate_limits": [
                {
                    "name": "requests",
                    "limit": REQUESTS_PER_MINUTE,
                    "remaining": max(REQUESTS_PER_MINUTE - len(self._used) - 1, 0),
                    "reset_seconds": reset,
                },
                {
                    "name": "tokens",
                    "limit": TOKENS_PER_MINUTE,
                    "remaining": max(TOKENS_PER_MINUTE - tokens, 0),
                    "reset_seconds": reset,
                },
            ],
        }


# --- scripted usages -------------------------------------------------------------------------

Shape = dict[str, Any]  # field -> "count", "seconds", a literal string, or a nested Shape
RESPONSE_USAGE: Shape = {
    "total_tokens": "count",
    "input_tokens": "count",
    "output_tokens": "count",
    "input_token_details": {
        "text_tokens": "count",
        "audio_tokens": "count",
        "image_tokens": "count",
        "cached_tokens": "count",
        "cached_tokens_details": {
            "text_tokens": "count",
            "audio_tokens": "count",
            "image_tokens": "count",
        },
    },
    "output_token_details": {"text_tokens": "count", "audio_tokens": "count"},
}
TOKENS_USAGE: Shape = {
    "type": "=tokens",
    "total_tokens": "count",
    "input_tokens": "count",
    "output_tokens": "count",
    "input_token_details": {"text_tokens": "count", "audio_tokens": "count"},
}
DURATION_USAGE: Shape = {"type": "=duration", "seconds": "seconds"}
TOKENS_REQUIRED = ("total_tokens", "input_tokens", "output_tokens")


def check_script(body: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`{"responses": [usage, ...], "transcriptions": [{"usage", "transcript"?}, ...]}`:
    what the call's next responses and transcriptions report instead of their own counts, in
    order. Usages are checked against the shapes OpenAI's typed models give them."""
    if not isinstance(body, dict):
        raise _bad("body", "Expected a JSON object.")
    for key in body:
        if key not in ("responses", "transcriptions"):
            raise ApiError(400, f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key)
    responses = _list(body.get("responses", []), "responses")
    for index, usage in enumerate(responses):
        _shape(usage, RESPONSE_USAGE, f"responses[{index}]")
    transcriptions = _list(body.get("transcriptions", []), "transcriptions")
    for index, entry in enumerate(transcriptions):
        path = f"transcriptions[{index}]"
        _shape(entry, {"usage": {}, "transcript": "text"}, path)
        usage = entry.get("usage")
        if not isinstance(usage, dict):
            raise _bad(f"{path}.usage", "Missing required parameter.")
        if usage.get("type") == "duration":
            _shape(usage, DURATION_USAGE, f"{path}.usage", required=("type", "seconds"))
        else:
            _shape(usage, TOKENS_USAGE, f"{path}.usage", required=("type", *TOKENS_REQUIRED))
    return responses, transcriptions


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(path, "Expected an array.")
    return value


def _shape(value: Any, shape: Shape, path: str, required: tuple[str, ...] = ()) -> None:
    if not isinstance(value, dict):
        raise _bad(path, "Expected an object.")
    for name in required:
        if name not in value:
            raise _bad(f"{path}.{name}", "Missing required parameter.")
    for key, item in value.items():
        where = f"{path}.{key}"
        kind = shape.get(key)
        if kind is None:
            raise ApiError(400, f"Unknown parameter: '{where}'.", code="unknown_parameter")
        if isinstance(kind, dict):
            if kind:  # an empty shape is checked by the caller
                _shape(item, kind, where)
        elif kind == "count" and not (is_int(item) and item >= 0):
            raise _bad(where, "Expected a non-negative integer.")
        elif kind == "seconds" and not (is_number(item) and 0 < item < math.inf):
            raise _bad(where, "Expected a positive number of seconds.")
        elif kind == "text" and not isinstance(item, str):
            raise _bad(where, "Expected a string.")
        elif kind.startswith("=") and item != kind[1:]:
            raise _bad(where, f"Expected '{kind[1:]}'.")


def _bad(param: str, message: str) -> ApiError:
    return ApiError(
        400, f"Invalid value for '{param}': {message}", code="invalid_value", param=param
    )
